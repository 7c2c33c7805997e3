//! `lianqiao-sim`: generate district databases; run the party-link system
//! and city platform simulators.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lianqiao_sim::generate::{self, DEFAULT_SEED, plans, region, region_config};
use lianqiao_sim::upstream::{self, city_platform, faults::Faults, party_link, world::World};

#[derive(Parser)]
#[command(
    name = "lianqiao-sim",
    about = "Data and upstream simulators for Lianqiao's demo and tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the district databases: SQLite files for the demo, and Saihan
    /// into PostgreSQL and Jining into MariaDB when their URLs are given.
    Generate {
        /// Where to write huimin.sqlite, saihan.sqlite and jining.sqlite.
        #[arg(long, default_value = "target/demo")]
        out: PathBuf,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Also write Saihan into this PostgreSQL database.
        #[arg(long)]
        postgres_url: Option<String>,
        /// Also write Jining into this MariaDB/MySQL database.
        #[arg(long)]
        mysql_url: Option<String>,
    },
    /// Write a generated region: a database per district (12 cities, up
    /// to 103 real districts and banners, more made up past that) and a
    /// gateway configuration serving them all (docs/region.md).
    Region {
        #[arg(long, default_value = "target/region")]
        out: PathBuf,
        /// Districts (sources) to generate.
        #[arg(long, default_value_t = 103)]
        districts: usize,
        /// `small` (a few grids each, for tests) or `full` (benchmarks).
        #[arg(long, default_value = "full")]
        scale: String,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// The demo's configuration (mappings, policy and fields come from it).
        #[arg(long, default_value = "config")]
        demo_config: PathBuf,
        #[arg(long, default_value = "target/plugins")]
        plugins: PathBuf,
        /// Put every n-th Saihan-style district into this PostgreSQL server.
        #[arg(long)]
        postgres_url: Option<String>,
        #[arg(long, default_value_t = 5)]
        postgres_every: usize,
        /// Put every n-th Jining-style district into this MariaDB server.
        #[arg(long)]
        mysql_url: Option<String>,
        #[arg(long, default_value_t = 5)]
        mysql_every: usize,
        /// Where the region's party-link simulator listens.
        #[arg(long, default_value = "127.0.0.1:8191")]
        party_link: String,
        /// The first city platform simulator's port (one per platform city, counting up).
        #[arg(long, default_value_t = 8192)]
        city_port: u16,
        #[arg(long, default_value = "127.0.0.1:8180")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9564")]
        metrics_listen: String,
    },
    /// The region's party-link system (党群连心桥).
    PartyLink {
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: SocketAddr,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Serve the generated region's first N districts instead of the demo's.
        #[arg(long)]
        region: Option<usize>,
        #[arg(long, default_value = "full")]
        scale: String,
        /// An app allowed to call, as KEY=SECRET (repeatable).
        #[arg(long = "app", default_value = "demo=demo-secret")]
        apps: Vec<String>,
        /// Inject a fault: PATH:latency_ms=…,error_rate=…,status=…,malformed_rate=…,truncated_rate=…,hang=…
        #[arg(long = "fault")]
        faults: Vec<String>,
    },
    /// Hohhot's integrated platform (一体化信息平台).
    CityPlatform {
        #[arg(long, default_value = "127.0.0.1:8092")]
        listen: SocketAddr,
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Serve this city's districts of the generated region (its first
        /// N districts, `--region N`) instead of the demo's.
        #[arg(long)]
        city: Option<String>,
        #[arg(long)]
        region: Option<usize>,
        #[arg(long, default_value = "full")]
        scale: String,
        /// An OAuth2 client, as ID=SECRET (repeatable).
        #[arg(long = "client", default_value = "demo=demo-secret")]
        clients: Vec<String>,
        /// Lifetime of access tokens, seconds.
        #[arg(long, default_value_t = 300)]
        token_ttl_secs: u64,
        /// Requests per second per client before 429.
        #[arg(long, default_value_t = 200)]
        rate_limit: u32,
        #[arg(long = "fault")]
        faults: Vec<String>,
    },
}

fn parse_scale(scale: &str) -> anyhow::Result<region::Scale> {
    match scale {
        "small" => Ok(region::Scale::Small),
        "full" => Ok(region::Scale::Full),
        other => anyhow::bail!("--scale `{other}`: use small or full"),
    }
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<HashMap<String, String>> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("{what} `{i}`: use KEY=SECRET"))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Generate {
            out,
            seed,
            postgres_url,
            mysql_url,
        } => {
            let (huimin, huimin_people) = generate::district_with_people(&plans::HUIMIN, seed);
            let path = out.join("huimin.sqlite");
            generate::sqlite_huimin::write(&huimin, &huimin_people, &path).await?;
            println!(
                "wrote {} (Huimin: {} grids)",
                path.display(),
                huimin.grids.len()
            );

            let (saihan, saihan_people) = generate::district_with_people(&plans::SAIHAN, seed);
            let (jining, jining_people) = generate::district_with_people(&plans::JINING, seed);
            let path = out.join("saihan.sqlite");
            let mut conn = generate::connect_any(&generate::fresh_sqlite_url(&path)?).await?;
            generate::schema_saihan::write(&mut conn, &saihan, &saihan_people).await?;
            println!(
                "wrote {} (Saihan: {} grids)",
                path.display(),
                saihan.grids.len()
            );
            let path = out.join("jining.sqlite");
            let mut conn = generate::connect_any(&generate::fresh_sqlite_url(&path)?).await?;
            generate::schema_jining::write(&mut conn, &jining, &jining_people).await?;
            println!(
                "wrote {} (Jining: {} grids)",
                path.display(),
                jining.grids.len()
            );
            if let Some(url) = postgres_url {
                let mut conn = generate::connect_any(&url).await?;
                generate::schema_saihan::write(&mut conn, &saihan, &saihan_people).await?;
                println!("wrote Saihan into PostgreSQL");
            }
            if let Some(url) = mysql_url {
                let mut conn = generate::connect_any(&url).await?;
                generate::schema_jining::write(&mut conn, &jining, &jining_people).await?;
                println!("wrote Jining into MariaDB");
            }
        }
        Command::Region {
            out,
            districts,
            scale,
            seed,
            demo_config,
            plugins,
            postgres_url,
            postgres_every,
            mysql_url,
            mysql_every,
            party_link,
            city_port,
            listen,
            metrics_listen,
        } => {
            let city_platforms = region_config::platform_cities()
                .into_iter()
                .enumerate()
                .map(|(i, c)| (c.to_string(), format!("127.0.0.1:{}", city_port + i as u16)))
                .collect();
            let options = region_config::Options {
                out,
                demo_config,
                plugins,
                count: districts,
                scale: parse_scale(&scale)?,
                seed,
                postgres: postgres_url.map(|u| (u, postgres_every)),
                mysql: mysql_url.map(|u| (u, mysql_every)),
                upstreams: region_config::Upstreams {
                    party_link,
                    city_platforms,
                },
                listen,
                metrics_listen,
                reuse_data: false,
            };
            let written = region_config::write(&options).await?;
            println!(
                "wrote {} district sources ({} grids) and {}",
                written.districts.len(),
                written.grids,
                written.config.display()
            );
        }
        Command::PartyLink {
            listen,
            seed,
            region,
            scale,
            apps,
            faults,
        } => {
            let faults = Faults::from_args(seed, &faults).map_err(anyhow::Error::msg)?;
            let world = Arc::new(match region {
                Some(n) => World::region(seed, n, parse_scale(&scale)?, None),
                None => World::generate(seed),
            });
            let router = party_link::router(world, pairs(&apps, "--app")?, faults);
            let (bound, task) = upstream::serve(router, listen).await?;
            println!("party-link simulator listening on http://{bound}");
            task.await?;
        }
        Command::CityPlatform {
            listen,
            seed,
            city,
            region,
            scale,
            clients,
            token_ttl_secs,
            rate_limit,
            faults,
        } => {
            let faults = Faults::from_args(seed, &faults).map_err(anyhow::Error::msg)?;
            let world = Arc::new(match region {
                Some(n) => World::region(seed, n, parse_scale(&scale)?, city.as_deref()),
                None => World::generate(seed),
            });
            let settings = city_platform::Settings {
                clients: pairs(&clients, "--client")?,
                token_ttl: Duration::from_secs(token_ttl_secs),
                rate_limit,
            };
            let router = city_platform::router(world, settings, faults);
            let (bound, task) = upstream::serve(router, listen).await?;
            println!("city platform simulator listening on http://{bound}");
            task.await?;
        }
    }
    Ok(())
}
