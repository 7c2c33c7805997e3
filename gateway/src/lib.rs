//! Lianqiao (连桥): one API over the region's party-link system, the city's
//! integrated platform and every district's own database.
//!
//! A request flows `api` (parse, validate) → `disclosure` phase 1 (the
//! caller's grant shapes the query) → `federation` (plan, fan out to source
//! plugins, merge) → `disclosure` phase 2 (every value that leaves is
//! checked, masked, protected; the body is built there and only there).
//! `sources` loads each source's plugin through `lianqiao-host`; `config`
//! reads the files.

pub mod api;
pub mod audit;
pub mod config;
pub mod disclosure;
pub mod federation;
pub mod health;
pub mod model;
pub mod registry;
pub mod server;
pub mod sources;
pub mod telemetry;
pub mod tls;
