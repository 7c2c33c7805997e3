//! Deterministic data and upstream simulators for Lianqiao's demo and tests.
//!
//! - `generate`: districts (streets, communities, compounds, grids in
//!   big/medium/small/micro tiers, buildings, units) and their people at the
//!   scale the source articles report, written into each district's own
//!   database schema (Huimin: SQLite; Saihan: PostgreSQL; Jining: MariaDB).
//! - `upstream`: the party-link system and the city platform simulators.

pub mod generate;
pub mod upstream;
