//! Building the gateway from a config and serving it.

use std::future::Future;
use std::sync::Arc;

use lianqiao_host::{EngineSettings, PluginEngine};
use rand::RngCore;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::disclosure::seal::CursorSeal;
use crate::sources::SourceSet;

/// Everything a request needs, built once per configuration.
#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub sources: SourceSet,
    /// Seals page cursors (encrypted, bound to caller and query).
    pub cursors: CursorSeal,
    /// Protects counts for callers who may not list the records.
    pub protection: crate::disclosure::protect::Protection,
    /// Statistics budgets per principal; one per process, kept across
    /// reloads.
    pub budgets: Arc<crate::disclosure::budget::Budgets>,
    /// Key of the person hash that joins one person's records across
    /// sources; never given to a plugin.
    pub person_key: Vec<u8>,
    /// Shared by every generation of the gateway (see `Live`).
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// Permits for requests in flight (`server.max_concurrent_requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The audit trail's writer; one per process, kept across reloads.
    pub audit: Arc<crate::audit::AuditLog>,
}

/// A key from the environment variable `env`, or a random one with a
/// warning saying what that costs.
fn secret_key(env: &str, without_it: &str) -> Vec<u8> {
    match std::env::var(env) {
        Ok(key) if !key.is_empty() => key.into_bytes(),
        _ => {
            tracing::warn!(env, "no key configured: using a random one; {without_it}");
            let mut key = vec![0u8; 32];
            rand::rng().fill_bytes(&mut key);
            key
        }
    }
}

impl Gateway {
    /// Start the plugin engine and load every source; report every failure.
    pub async fn build(config: Config) -> Result<Self, ConfigErrors> {
        let engine = PluginEngine::new(EngineSettings {
            allocator: config.plugins.allocator,
            pool_instances: config.plugins.pool_instances,
            max_memory_mib: config.plugins.max_memory_mib,
            cache_dir: config.plugins.cache_dir.clone(),
        })
        .map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                &config.file,
                "plugins",
                format!("cannot start the plugin engine: {e:#}"),
            )])
        })?;
        let sources = SourceSet::load(&config.sources, &engine).await?;
        let key = secret_key(
            &config.server.cursor_key_env,
            "cursors will not survive a restart or work across replicas",
        );
        let stats_key = match config
            .statistics
            .key_file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
        {
            Some(key) => key,
            None => secret_key(
                &config.statistics.key_env,
                "the noise on protected counts changes at every restart, so a caller can average it away by asking again after each one",
            ),
        };
        let person_key = secret_key(
            &config.server.person_key_env,
            "person keys differ between replicas (they never leave a gateway, so joins still work)",
        );
        Ok(Gateway {
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_concurrent_requests as usize,
            )),
            sources,
            cursors: CursorSeal::new(&key),
            protection: crate::disclosure::protect::Protection::new(
                config.statistics.suppress_below,
                config.statistics.max_noise,
                &stats_key,
            ),
            budgets: Arc::new(crate::disclosure::budget::Budgets::new(
                config.statistics.burst,
                config.statistics.queries_per_hour,
            )),
            person_key,
            metrics: Arc::new(crate::telemetry::metrics::Metrics::new(
                config.telemetry.metrics,
            )),
            audit: crate::audit::AuditLog::start(
                config.audit_url.clone(),
                config.audit.chain.clone(),
                config.audit.batch_max,
            ),
            config,
        })
    }

    /// "150103 (huimin), …" for messages.
    pub fn coverage_summary(&self) -> String {
        self.sources
            .sources
            .iter()
            .map(|s| format!("{} ({})", s.config.coverage.join(", "), s.name()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The gateway serving now. A reload builds and checks a whole new
/// gateway aside and swaps it in; requests in flight finish on the one they
/// started with (they hold its `Arc`), and a broken configuration changes
/// nothing.
pub struct Live {
    current: std::sync::RwLock<Arc<Gateway>>,
    config_path: std::path::PathBuf,
}

impl Live {
    pub fn new(gateway: Gateway, config_path: std::path::PathBuf) -> Self {
        Live {
            current: std::sync::RwLock::new(Arc::new(gateway)),
            config_path,
        }
    }

    /// The gateway to serve a request with.
    pub fn current(&self) -> Arc<Gateway> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Load the configuration again, build a new gateway (every plugin
    /// loaded and checked) and swap it in; on any error keep the old one.
    pub async fn reload(&self) -> Result<(), ConfigErrors> {
        let config = crate::config::load(&self.config_path)?;
        let mut next = Gateway::build(config).await?;
        let old = self.current();
        // Counters and the request limit belong to the process, not to
        // one generation of the configuration.
        next.metrics = old.metrics.clone();
        next.in_flight = old.in_flight.clone();
        // A reload must not hand every caller a fresh statistics budget.
        if next.config.statistics.burst == old.config.statistics.burst
            && next.config.statistics.queries_per_hour == old.config.statistics.queries_per_hour
        {
            next.budgets = old.budgets.clone();
        }
        // One audit chain per process: its writer survives reloads (a
        // changed [audit] section takes effect at the next start).
        if next.config.audit_url != old.config.audit_url
            || next.config.audit.chain != old.config.audit.chain
        {
            tracing::warn!("[audit] changed: the new store is used after a restart");
        }
        next.audit = old.audit.clone();
        // The registry carries over until the next refresh.
        next.config
            .enforcer
            .engine
            .set_registry(old.config.enforcer.engine.registry());
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        tracing::info!(
            sources = self.current().sources.sources.len(),
            "configuration reloaded"
        );
        Ok(())
    }
}

/// How every listener treats its connections (`[server]`).
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_connections: usize,
    header_read_timeout: std::time::Duration,
}

impl ConnectionLimits {
    fn of(live: &Live) -> Self {
        let server = &live.current().config.server;
        ConnectionLimits {
            max_connections: server.max_connections as usize,
            header_read_timeout: std::time::Duration::from_millis(server.header_read_timeout_ms),
        }
    }
}

/// Accept connections on `listener` and serve `app` on each (over TLS when
/// `tls` is given) until `stopped`, then let the connections' requests in
/// flight finish (at most 30 s). Hostile clients hold little: a client
/// must finish its TLS handshake and each request's headers within
/// `header_read_timeout` (which also closes idle kept-alive connections),
/// connections past `max_connections` are closed at once, and a failing
/// `accept` (out of file descriptors) backs off instead of spinning.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<crate::tls::TlsState>>,
    app: axum::Router,
    limits: ConnectionLimits,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // EMFILE and friends: retrying at once would spin a core.
                tracing::warn!(error = %e, "accepting a connection failed; pausing 100 ms");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(
                limit = limits.max_connections,
                "connection refused: server.max_connections are open"
            );
            drop(tcp);
            continue;
        };
        let (app, tls, builder, watcher) = (
            app.clone(),
            tls.clone(),
            builder.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    // A client that never finishes its handshake holds nothing for long.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
                    let Ok(Ok(stream)) = handshake.await else {
                        return;
                    };
                    let client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| crate::tls::ClientCert(tls.client(c)));
                    tracing::debug!(client = ?client, "TLS connection");
                    let service = hyper::service::service_fn(
                        move |mut request: hyper::Request<hyper::body::Incoming>| {
                            if let Some(c) = &client {
                                request.extensions_mut().insert(c.clone());
                            }
                            app.clone().oneshot(request.map(axum::body::Body::new))
                        },
                    );
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            app.clone().oneshot(request.map(axum::body::Body::new))
                        },
                    );
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await;
}

/// A watch that turns true when `shutdown` resolves.
fn stop_on(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    stopped
}

/// Serve the API over TLS on `listener` (plus plain HTTP on `plain` and
/// `/metrics` on `admin`, if given) until `shutdown` resolves, then let
/// in-flight requests finish (at most 30 s).
pub async fn serve_tls(
    gateway: Arc<Live>,
    listener: TcpListener,
    tls: Arc<crate::tls::TlsState>,
    plain: Option<TcpListener>,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopped = stop_on(shutdown);
    let limits = ConnectionLimits::of(&gateway);
    if let Some(plain) = plain {
        let app = api::router(gateway.clone()).layer(TraceLayer::new_for_http());
        tokio::spawn(accept_loop(plain, None, app, limits, stopped.clone()));
    }
    if let Some(admin) = admin {
        let app = api::admin_router(gateway.clone());
        tokio::spawn(accept_loop(admin, None, app, limits, stopped.clone()));
    }
    background(&gateway);
    tokio::spawn(crate::tls::watch(tls.clone()));
    let app = api::router(gateway).layer(TraceLayer::new_for_http());
    accept_loop(listener, Some(tls), app, limits, stopped).await;
    Ok(())
}

/// What runs beside the listeners: the division registry's refresh,
/// sources' health checks and the metric export (each off when its
/// setting says so, each reading the configuration serving now).
fn background(live: &Arc<Live>) {
    tokio::spawn(crate::registry::refresh(live.clone()));
    tokio::spawn(crate::health::run(live.clone()));
    tokio::spawn(crate::telemetry::otlp_metrics::run(live.clone()));
}

/// Serve the API on `listener` (and `/metrics` on `admin`, if given)
/// until `shutdown` resolves, then let in-flight requests finish.
pub async fn serve(
    gateway: Arc<Live>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopped = stop_on(shutdown);
    let limits = ConnectionLimits::of(&gateway);
    if let Some(admin) = admin {
        let app = api::admin_router(gateway.clone());
        tokio::spawn(accept_loop(admin, None, app, limits, stopped.clone()));
    }
    background(&gateway);
    let app = api::router(gateway).layer(TraceLayer::new_for_http());
    accept_loop(listener, None, app, limits, stopped).await;
    Ok(())
}
