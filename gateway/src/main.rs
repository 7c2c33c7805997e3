//! `lianqiao`: serve the API, or check a configuration without serving.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use lianqiao_gateway::config;
use lianqiao_gateway::server::{Gateway, Live, serve, serve_tls};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's allocator: a request allocates thousands of
/// small blocks (rows, cells, JSON), and glibc's malloc/free took ~30% of a
/// request's instructions (BENCHMARKS.md, "the allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc asks for them on
/// its 1 GiB arenas, and the gateway's heap is small, long-lived objects
/// (the registry, caches) among short-lived ones (rows): every 2 MiB page
/// touched then stays resident whole. Measured on the generated region
/// (108 sources, 275,501 divisions, idle): 324 MiB resident with them,
/// 195 MiB without (BENCHMARKS.md, "The whole region").
/// `LIANQIAO_ALLOW_HUGE_PAGES=1` keeps them (to measure the difference).
fn no_huge_pages() {
    if std::env::var_os("LIANQIAO_ALLOW_HUGE_PAGES").is_some_and(|v| v == "1") {
        return;
    }
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1) takes no pointers and only sets
    // a flag of this process; an error (an old kernel) leaves things as
    // they were.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[derive(Parser)]
#[command(
    name = "lianqiao",
    version,
    about = "Lianqiao (连桥): one API over municipal governance data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        /// Listen here instead of `server.listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve `/metrics` here instead of `telemetry.metrics_listen`.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Serve plain HTTP here instead of `server.plaintext_listen`.
        #[arg(long)]
        plaintext_listen: Option<std::net::SocketAddr>,
    },
    /// Print a running gateway's sources: state, breaker, recent latency.
    Status {
        /// The gateway's API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
    /// Validate the configuration, load every plugin, and exit.
    Check {
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        /// Also ask every source for a sample of each entity it serves and
        /// check it against the unified model (kinds, allowed values,
        /// unique ids, division codes): catches broken mappings.
        #[arg(long)]
        probe: bool,
        /// Probe only this source.
        #[arg(long)]
        source: Option<String>,
        /// Rows sampled per entity.
        #[arg(long, default_value_t = 500)]
        sample: u32,
    },
    /// A source file: load the configuration with it and probe it.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Plugins: the contract's conformance kit.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Access policies: validate, test, explain.
    #[command(subcommand)]
    Policy(cli::PolicyCommand),
    /// The audit trail: verify the chain, query records.
    #[command(subcommand)]
    Audit(cli::AuditCommand),
    /// Credentials: issuer keys, tokens, API key hashes.
    #[command(subcommand)]
    Auth(cli::AuthCommand),
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Load the configuration with this source file in its sources
    /// directory (wherever the file is; its relative paths resolve against
    /// that directory) and probe the file's source.
    Check {
        file: PathBuf,
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        /// Rows sampled per entity.
        #[arg(long, default_value_t = 500)]
        sample: u32,
    },
    /// Check a source file as `source check` does, then install it into
    /// the configuration's sources directory (replacing the file that
    /// declares the same name): a running gateway reloads it by itself.
    Add {
        file: PathBuf,
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        /// Rows sampled per entity.
        #[arg(long, default_value_t = 500)]
        sample: u32,
        /// A running gateway's plain-HTTP API address: wait until it serves
        /// the source.
        #[arg(long)]
        wait: Option<std::net::SocketAddr>,
    },
    /// Print a source's effective configuration: its file laid over its
    /// template (`template = "…"`), as the gateway reads it.
    Show {
        /// The source's name.
        name: String,
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
    },
    /// Propose a `district-sql` source file from a district database's
    /// catalog: one mapping per unified resource a table looks like, gaps
    /// marked `GAP` (then edit it and run `source check`).
    New {
        /// The database: sqlite://<file>, postgres://…, mysql://…
        #[arg(long)]
        sql: String,
        /// The source's name.
        #[arg(long)]
        name: String,
        /// The unified code of the district it covers (guessed from its
        /// divisions table when left out).
        #[arg(long)]
        coverage: Option<String>,
        /// Write the file here (refuses to overwrite) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The configuration the source is for: paths in the file are
        /// written relative to its sources directory, where `source add`
        /// installs it (and against which `source check` resolves them).
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        /// The district-sql plugin component.
        #[arg(long, default_value = "target/plugins/district_sql.wasm")]
        plugin: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate (`--kind http`: an HTTP system, credentials
    /// held by the host, URLs allowlisted, cursor paging) that builds with
    /// `cargo build --release --target wasm32-wasip2`, with an example
    /// source file.
    New {
        name: String,
        #[arg(long, default_value = "http")]
        kind: String,
        /// Create `<dir>/<name>/`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Lianqiao SDK the crate depends on (a path; the SDK is not
        /// published on crates.io).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk"))]
        sdk: PathBuf,
        /// The configuration whose sources directory the example source
        /// file's paths are written against.
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
    },
    /// Run the plugin contract's MUSTs (docs/plugin-contract.md) against
    /// the real source a source file describes, with this plugin in place
    /// of the one the file names: paging complete, ordered and stable,
    /// scope and declared filters applied, projections, kinds, counts,
    /// error variants. Exits non-zero with what to fix.
    Test {
        plugin: PathBuf,
        /// The source file (anywhere; resolved as if in the sources directory).
        #[arg(long)]
        source: PathBuf,
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
    },
}

/// `lianqiao plugin test`.
async fn plugin_test(
    plugin: &std::path::Path,
    source_file: &std::path::Path,
    config_file: &std::path::Path,
) -> ExitCode {
    let name = match lianqiao_gateway::kit::install::source_name(source_file) {
        Ok(name) => name,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = match config::load_with_candidate(config_file, Some(source_file)) {
        Ok(config) => config,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let plugin = std::path::absolute(plugin).unwrap_or_else(|_| plugin.to_path_buf());
    if !plugin.is_file() {
        eprintln!("{}: no such plugin component", plugin.display());
        return ExitCode::FAILURE;
    }
    // Only the source under test: others need not load (nor be up).
    config.sources.retain(|s| s.name == name);
    for source in &mut config.sources {
        source.plugin = plugin.clone();
        source.sha256 = None;
    }
    init_logging(&config.telemetry);
    let gateway = match Gateway::build(config).await {
        Ok(g) => g,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(source) = gateway.sources.get(&name) else {
        eprintln!("no source named `{name}`");
        return ExitCode::FAILURE;
    };
    let report = lianqiao_gateway::kit::conformance::run(&source).await;
    for line in &report.passed {
        println!("  ok    {line}");
    }
    for line in &report.failed {
        println!("  FAIL  {line}");
    }
    println!(
        "plugin test {name} ({}): {} passed, {} failed",
        plugin.display(),
        report.passed.len(),
        report.failed.len()
    );
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `lianqiao source new`: introspect, propose, print or write.
async fn source_new(
    sql: &str,
    name: &str,
    coverage: Option<&str>,
    out: Option<&std::path::Path>,
    config: &std::path::Path,
    plugin: &std::path::Path,
) -> Result<(), String> {
    use lianqiao_gateway::kit::{relative_path, scaffold};
    use lianqiao_host::capability::sql::{PoolSettings, SqlPool};
    if let Some(code) = coverage
        && lianqiao_policy::division::level_of(code).is_none()
    {
        return Err(format!(
            "--coverage {code}: not a unified division code ({})",
            lianqiao_policy::division::CONVENTION
        ));
    }
    let pool = SqlPool::connect_lazy(
        sql,
        &PoolSettings {
            max_connections: 1,
            acquire_timeout: std::time::Duration::from_secs(10),
        },
    )?;
    // Paths in a source file resolve against the sources directory.
    let dir = config::sources_dir(config).map_err(|e| e.to_string())?;
    let url = match sql.strip_prefix("sqlite://") {
        Some(rest) => {
            let (file, query) = rest
                .split_once('?')
                .map_or((rest, None), |(f, q)| (f, Some(q)));
            let file = relative_path(&dir, std::path::Path::new(file));
            match query {
                Some(q) => format!("sqlite://{}?{q}", file.display()),
                None => format!("sqlite://{}", file.display()),
            }
        }
        None => sql.to_string(),
    };
    let plugin_path = relative_path(&dir, plugin);
    let text = scaffold::propose(
        &pool,
        &scaffold::Request {
            name,
            url: &url,
            coverage,
            plugin_path: &plugin_path.display().to_string(),
        },
    )
    .await?;
    match out {
        None => print!("{text}"),
        Some(out) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            std::io::Write::write_all(&mut file, text.as_bytes())
                .map_err(|e| format!("{}: {e}", out.display()))?;
            eprintln!(
                "wrote {}: fill every GAP, then `lianqiao source check {}`",
                out.display(),
                out.display()
            );
        }
    }
    Ok(())
}

/// Logs as the config says (`RUST_LOG` overrides the level), and spans to
/// OTLP when `telemetry.otlp_endpoint` is set.
fn init_logging(telemetry: &config::TelemetrySection) {
    use tracing_subscriber::prelude::*;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&telemetry.log_level));
    let exported_spans = !telemetry.otlp_endpoint.is_empty();
    let otel = match telemetry.otlp_endpoint.as_str() {
        "" => None,
        endpoint => match lianqiao_gateway::telemetry::otel::Traces::start(
            endpoint,
            &telemetry.service_name,
            telemetry.trace_sample_ratio,
        ) {
            Ok((traces, recorder)) => {
                let _ = TRACES.set(traces);
                Some(recorder)
            }
            Err(e) => {
                eprintln!("telemetry.otlp_endpoint: {e}; serving without trace export");
                None
            }
        },
    };
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // Lines collect in memory and a thread of their own writes them in
    // batches, so a request never waits on (or wakes anything for) stdout;
    // the guard writes what is left at exit.
    let (stdout, guard) =
        lianqiao_gateway::telemetry::logwriter::BatchedWriter::start(std::io::stdout());
    if let Ok(mut slot) = LOG_WRITER.lock() {
        *slot = Some(guard);
    }
    if telemetry.log_format == config::LogFormat::Json {
        registry
            .with(lianqiao_gateway::telemetry::logline::JsonLines::new(
                stdout,
                exported_spans,
            ))
            .init();
    } else {
        // Colours only for a person at a terminal: escape codes in a log
        // file are noise to grep, and formatting them is work on every
        // request's access line.
        use std::io::IsTerminal;
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_writer(stdout),
            )
            .init();
    }
}

/// The log writer's guard: dropping it writes the last lines.
static LOG_WRITER: std::sync::Mutex<Option<lianqiao_gateway::telemetry::logwriter::FlushGuard>> =
    std::sync::Mutex::new(None);

/// The trace exporter, flushed at shutdown.
static TRACES: std::sync::OnceLock<lianqiao_gateway::telemetry::otel::Traces> =
    std::sync::OnceLock::new();

/// `check --probe`: every source (or the one named), sampled and held
/// against the model; a failure for any problem.
async fn probe_sources(
    gateway: &lianqiao_gateway::state::Gateway,
    only: Option<&str>,
    sample: u32,
) -> ExitCode {
    let mut failed = false;
    let mut probed = 0;
    for source in &gateway.sources.sources {
        if only.is_some_and(|name| name != source.name()) {
            continue;
        }
        probed += 1;
        let report = lianqiao_gateway::sources::probe::probe(source, sample).await;
        print_probe(source.name(), &report);
        let file = &source.config.file;
        for problem in &report.problems {
            println!(
                "  {}",
                lianqiao_gateway::sources::probe::located(file, problem)
            );
        }
        for warning in &report.warnings {
            println!(
                "  warning: {}",
                lianqiao_gateway::sources::probe::located(file, warning)
            );
        }
        failed |= !report.ok();
    }
    if probed == 0 {
        eprintln!("no source named `{}`", only.unwrap_or_default());
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        println!("probe: every sampled row fits the unified model");
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(Cli::parse().command));
    // Write the log lines still in memory.
    if let Ok(mut slot) = LOG_WRITER.lock() {
        slot.take();
    }
    code
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Policy(c) => cli::policy(c),
        Command::Audit(c) => cli::audit(c).await,
        Command::Auth(c) => cli::auth(c),
        Command::Status { addr } => match status(addr).await {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot read http://{addr}/readyz: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check {
            config,
            probe,
            source,
            sample,
        } => match load(&config).await {
            Ok(gateway) => {
                println!(
                    "{}: OK, {} source(s): {}",
                    config.display(),
                    gateway.sources.sources.len(),
                    gateway.coverage_summary()
                );
                if !probe {
                    return ExitCode::SUCCESS;
                }
                probe_sources(&gateway, source.as_deref(), sample).await
            }
            Err(()) => ExitCode::FAILURE,
        },
        Command::Source(SourceCommand::Check {
            file,
            config,
            sample,
        }) => match check_candidate(&config, &file, sample).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(()) => ExitCode::FAILURE,
        },
        Command::Source(SourceCommand::Add {
            file,
            config,
            sample,
            wait,
        }) => {
            let Ok(name) = check_candidate(&config, &file, sample).await else {
                eprintln!("{}: not added (nothing was changed)", file.display());
                return ExitCode::FAILURE;
            };
            let installed = std::fs::read(&file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|text| lianqiao_gateway::kit::install::install(&config, &text, &name));
            match installed {
                Ok(target) => println!(
                    "source {name}: installed as {} (a running gateway reloads it by itself, or on SIGHUP)",
                    target.display()
                ),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
            if let Some(addr) = wait {
                match wait_serving(addr, &name).await {
                    Ok(()) => println!("source {name}: served by the gateway at {addr}"),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Plugin(PluginCommand::New {
            name,
            kind,
            dir,
            sdk,
            config,
        }) => {
            let sources = config::sources_dir(&config).unwrap_or_else(|_| dir.clone());
            match lianqiao_gateway::kit::plugin_new::create(&dir, &name, &kind, &sdk, &sources) {
                Ok(created) => {
                    println!(
                        "created {dir}\n  build:  cd {dir} && cargo build --release --target wasm32-wasip2\n  test:   lianqiao plugin test {wasm} --source {source}\n  serve:  lianqiao source add {source}",
                        dir = created.dir.display(),
                        wasm = created.component.display(),
                        source = created.source_file.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Plugin(PluginCommand::Test {
            plugin,
            source,
            config,
        }) => plugin_test(&plugin, &source, &config).await,
        Command::Source(SourceCommand::Show { name, config }) => {
            match source_show(&config, &name) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Source(SourceCommand::New {
            sql,
            name,
            coverage,
            out,
            config,
            plugin,
        }) => match source_new(
            &sql,
            &name,
            coverage.as_deref(),
            out.as_deref(),
            &config,
            &plugin,
        )
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve {
            config,
            listen,
            metrics_listen,
            plaintext_listen,
        } => {
            let Ok(gateway) = load(&config).await else {
                return ExitCode::FAILURE;
            };
            let addr = listen.unwrap_or(gateway.config.listen);
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let admin = match metrics_listen.or(gateway.config.metrics_listen) {
                Some(admin_addr) => match tokio::net::TcpListener::bind(admin_addr).await {
                    Ok(l) => {
                        tracing::info!(%admin_addr, "metrics on http://{admin_addr}/metrics");
                        Some(l)
                    }
                    Err(e) => {
                        eprintln!("cannot listen on {admin_addr} (telemetry.metrics_listen): {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => None,
            };
            let tls = match gateway
                .config
                .tls
                .clone()
                .map(lianqiao_gateway::tls::TlsState::load)
            {
                None => None,
                Some(Ok(state)) => Some(Arc::new(state)),
                Some(Err(e)) => {
                    eprintln!("server.tls: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let plain = match (&tls, plaintext_listen.or(gateway.config.plaintext_listen)) {
                (Some(_), Some(plain_addr)) => {
                    match tokio::net::TcpListener::bind(plain_addr).await {
                        Ok(l) => {
                            tracing::warn!(%plain_addr, "also serving plain HTTP (server.plaintext_listen): keep it local");
                            Some(l)
                        }
                        Err(e) => {
                            eprintln!(
                                "cannot listen on {plain_addr} (server.plaintext_listen): {e}"
                            );
                            return ExitCode::FAILURE;
                        }
                    }
                }
                _ => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%addr, scheme, sources = gateway.sources.sources.len(), "lianqiao serving");
            let live = Arc::new(Live::new(gateway, config.clone()));
            tokio::spawn(reload_on_change(live.clone(), config.clone()));
            let served = match tls {
                Some(tls) => serve_tls(live, listener, tls, plain, admin, shutdown_signal()).await,
                None => serve(live, listener, admin, shutdown_signal()).await,
            };
            if let Some(traces) = TRACES.get() {
                let _ = tokio::task::spawn_blocking(|| traces.shutdown()).await;
            }
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("server error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn load(path: &std::path::Path) -> Result<Gateway, ()> {
    load_candidate(path, None).await
}

/// `load`, with a source file taken as if it were in the sources directory
/// (`config::load_with_candidate`).
async fn load_candidate(
    path: &std::path::Path,
    candidate: Option<&std::path::Path>,
) -> Result<Gateway, ()> {
    let config = config::load_with_candidate(path, candidate).map_err(|e| eprint!("{e}"))?;
    init_logging(&config.telemetry);
    Gateway::build(config).await.map_err(|e| eprint!("{e}"))
}

/// `source check` and the check before `source add`: the configuration
/// loads with `file` in the sources directory (replacing the file that
/// declares its name), and a probe of its source passes. The source's name.
async fn check_candidate(
    config: &std::path::Path,
    file: &std::path::Path,
    sample: u32,
) -> Result<String, ()> {
    let checked = lianqiao_gateway::kit::install::check(config, file, sample)
        .await
        .map_err(|e| eprint!("{e}"))?;
    init_logging(&checked.gateway.config.telemetry);
    print_probe(&checked.name, &checked.probe);
    for problem in checked.problems(file) {
        println!("  {problem}");
    }
    for warning in checked.warnings(file) {
        println!("  warning: {warning}");
    }
    if checked.probe.ok() {
        println!("probe: every sampled row fits the unified model");
        Ok(checked.name)
    } else {
        Err(())
    }
}

/// "probe <name>: sampled divisions 200, grids 200".
fn print_probe(name: &str, report: &lianqiao_gateway::sources::probe::Report) {
    let sampled: Vec<String> = report
        .sampled
        .iter()
        .map(|(entity, rows)| format!("{entity} {rows}"))
        .collect();
    println!(
        "probe {name}: sampled {}",
        if sampled.is_empty() {
            "nothing".to_string()
        } else {
            sampled.join(", ")
        }
    );
}

/// Polls a running gateway's `/readyz` until it lists `name` (30 s).
async fn wait_serving(addr: std::net::SocketAddr, name: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let needle = format!("\"name\":\"{name}\"");
    loop {
        if let Ok(body) = readyz(addr).await
            && body.contains(&needle)
        {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "the gateway at {addr} did not serve `{name}` within 30 s: see its log (a refused reload names the problem)"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Ctrl-C or SIGTERM: stop accepting, finish what is in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining in-flight requests");
}

/// `GET /readyz` of a running gateway, as a table.
async fn status(addr: std::net::SocketAddr) -> Result<String, String> {
    let body = readyz(addr).await?;
    let ready: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(lianqiao_gateway::telemetry::status_table(&ready))
}

/// The body of a running gateway's `GET /readyz` (plain HTTP).
async fn readyz(addr: std::net::SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .ok_or_else(|| "no HTTP body".to_string())
}

/// Reload on SIGHUP, and when a config file changes (polled every 2 s:
/// the main file, the fields file and every source file). A broken change
/// is reported and the running configuration keeps serving.
async fn reload_on_change(live: Arc<Live>, path: PathBuf) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = fingerprint(&path);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let reason = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = tick.tick() => {
                let now = fingerprint(&path);
                if now == seen { continue; }
                seen = now;
                "a config file changed"
            }
        };
        // A console apply writes several files, then reloads itself: wait
        // for it rather than build a half-written set.
        let _one_change = lianqiao_gateway::state::CONFIG_CHANGE.lock().await;
        match live.reload().await {
            Ok(()) => tracing::info!(reason, "reloaded"),
            Err(errors) => {
                tracing::error!(reason, %errors, "reload refused; the running configuration keeps serving")
            }
        }
    }
}

/// `lianqiao source show`: the effective configuration of one source.
fn source_show(config_path: &std::path::Path, name: &str) -> Result<String, String> {
    let config = config::load(config_path).map_err(|e| e.to_string())?;
    let source = config
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            format!(
                "no source `{name}` in {} (sources: {})",
                config_path.display(),
                names.join(", ")
            )
        })?;
    let dir = config::sources_dir(config_path).map_err(|e| e.to_string())?;
    let layered = config::template::read(&source.file, &dir).map_err(|e| e.to_string())?;
    let mut out = format!("# source `{name}`: {}", source.file.display());
    if let Some(t) = &layered.template {
        out.push_str(&format!(" laid over {}", t.display()));
    }
    out.push_str(
        "
# (relative paths resolve against the source file's folder)

",
    );
    out.push_str(&layered.show());
    Ok(out)
}

/// Modification times of every file the configuration is made of.
fn fingerprint(path: &std::path::Path) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut files = Vec::new();
    for watched in config::watched_paths(path) {
        match std::fs::read_dir(&watched) {
            // Not dotfiles: `source add` and the admin API stage candidates
            // there (`.name.toml.pending`, `.tmp`) that no reload reads.
            Ok(entries) => files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(
                |p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                },
            )),
            Err(_) => files.push(watched),
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let t = mtime(&f);
            (f, t)
        })
        .collect()
}
