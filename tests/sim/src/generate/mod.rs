//! District data generation: a plan (real codes and counts) → a district
//! model → a district database in its own schema.

mod district;
mod names;
pub mod plans;
pub mod sqlite_huimin;

pub use district::{Building, Compound, District, Division, Grid, GridTier, Level, Unit};

/// The seed the demo and the tests use unless told otherwise.
pub const DEFAULT_SEED: u64 = 20_230_701;
