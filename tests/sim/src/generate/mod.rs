//! District data generation: a plan (real codes and counts) → a district
//! model and its people → a district database in that district's schema.

mod bulk;
pub mod cases;
pub mod city;
mod district;
pub mod idcard;
mod names;
pub mod people;
pub mod plans;
pub mod region;
pub mod region_config;
pub mod schema_jining;
pub mod schema_saihan;
pub mod sqlite_huimin;

use std::path::Path;

use sqlx::{AnyConnection, Connection};

pub use district::{Building, Compound, District, Division, Grid, GridTier, Level, Unit};
pub use people::People;

/// The seed the demo and the tests use unless told otherwise.
pub const DEFAULT_SEED: u64 = 20_230_701;

/// A district and its people, generated together.
pub fn district_with_people(plan: &plans::DistrictPlan, seed: u64) -> (District, People) {
    let district = District::generate(plan, seed);
    let people = People::generate(plan, &district, seed);
    (district, people)
}

/// Open `url` (sqlite:, postgres:, mysql:) for writing through `sqlx::Any`.
pub async fn connect_any(url: &str) -> anyhow::Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    Ok(AnyConnection::connect(url).await?)
}

/// A fresh SQLite file URL at `path` (removing an old file).
pub fn fresh_sqlite_url(path: &Path) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    Ok(format!("sqlite://{}?mode=rwc", path.display()))
}
