//! Lianqiao (连桥): one API over the region's party-link system, the city's
//! integrated platform and every district's own database.
//!
//! A request flows `api` (parse, validate) → `federation` (plan, fan out
//! to source plugins, merge) → `api` (envelope). `sources` loads each
//! source's plugin through `lianqiao-host`; `config` reads the files.

pub mod api;
pub mod audit;
pub mod config;
pub mod federation;
pub mod health;
pub mod model;
pub mod registry;
pub mod server;
pub mod sources;
pub mod telemetry;
pub mod tls;
