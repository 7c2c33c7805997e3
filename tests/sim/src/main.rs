//! `lianqiao-sim`: generate district databases (later: run the upstream
//! simulators).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use lianqiao_sim::generate::{self, District, plans};

#[derive(Parser)]
#[command(name = "lianqiao-sim", about = "Data and upstream simulators for Lianqiao's demo and tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the demo district databases (SQLite) into a directory.
    Generate {
        /// Where to write `huimin.sqlite`.
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
        /// Seed of the deterministic generator.
        #[arg(long, default_value_t = generate::DEFAULT_SEED)]
        seed: u64,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate { out, seed } => {
            let huimin = District::generate(&plans::HUIMIN, seed);
            let path = out.join("huimin.sqlite");
            generate::sqlite_huimin::write(&huimin, &path).await?;
            println!(
                "wrote {} ({} divisions, {} grids, {} compounds, {} buildings, {} units)",
                path.display(),
                huimin.divisions.len(),
                huimin.grids.len(),
                huimin.compounds.len(),
                huimin.buildings.len(),
                huimin.units.len()
            );
        }
    }
    Ok(())
}
