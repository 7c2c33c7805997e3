//! Deterministic data for Lianqiao's demo and tests.
//!
//! `generate` builds a district (streets, communities, compounds, grids in
//! big/medium/small/micro tiers, buildings, units) at the scale the source
//! articles report, from a seed, and writes it into the district's own
//! database schema. Later the upstream simulators (party-link system, city
//! platform) live here too, reading the same generated districts.

pub mod generate;
