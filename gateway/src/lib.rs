//! Lianqiao (连桥): one API over the region's party-link system, the city's
//! integrated platform and every district's own database.
//!
//! A request flows `api` (parse, validate) → `disclosure` phase 1 (the
//! caller's grant shapes the query) → `federation` (plan, fan out to source
//! plugins, merge) → `disclosure` phase 2 (every value that leaves is
//! checked, masked, protected; the body is built there and only there).
//! `sources` loads each source's plugin through `lianqiao-host`, and every
//! call to a plugin goes through its one call stack (`sources::call`);
//! `config` reads the files.
//!
//! The modules are layered, each importing only those above it in this
//! list (`tests/layers.rs` fails on any `crate::` import cycle):
//! `model`, `tls`, `config` → `sources` → `error` → `redact` →
//! `federation` → `disclosure` → `telemetry`, `audit`, `store` → `cases`
//! (the closed loop: transitions, idempotency keys, the outbox) → `state`
//! (the gateway built from a configuration, and the one serving now) →
//! `registry`, `health`, `observe`, `escalation` (the saga to the city and
//! the mirror back), `console` (the operators' pages, on the admin
//! listener) → `api` → `server`.

pub mod api;
pub mod audit;
pub mod cases;
pub mod config;
pub mod console;
pub mod disclosure;
pub mod error;
pub mod escalation;
pub mod federation;
pub mod health;
pub mod kit;
pub mod model;
pub mod observe;
pub mod redact;
pub mod registry;
pub mod server;
pub mod sources;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
