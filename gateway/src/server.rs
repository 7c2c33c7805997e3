//! Building the gateway from a config and serving it.

use std::future::Future;
use std::sync::Arc;

use lianqiao_host::{EngineSettings, PluginEngine};
use rand::RngCore;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::federation::cursor::CursorCodec;
use crate::sources::SourceSet;

/// Everything a request needs, built once per configuration.
#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub sources: SourceSet,
    pub cursors: CursorCodec,
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
        let person_key = secret_key(
            &config.server.person_key_env,
            "person keys differ between replicas (they never leave a gateway, so joins still work)",
        );
        Ok(Gateway {
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_concurrent_requests as usize,
            )),
            sources,
            cursors: CursorCodec::new(&key),
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
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    if let Some(plain) = plain {
        let mut stopped = stopped.clone();
        let live = gateway.clone();
        tokio::spawn(async move {
            let app = api::router(live).layer(TraceLayer::new_for_http());
            let _ = axum::serve(plain, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    if let Some(admin) = admin {
        let app = api::admin_router(gateway.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, app).await {
                tracing::error!(error = %e, "the admin listener stopped");
            }
        });
    }
    background(&gateway);
    tokio::spawn(crate::tls::watch(tls.clone()));
    let app = api::router(gateway).layer(TraceLayer::new_for_http());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut stopped = stopped;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                let (app, tls, builder, watcher) =
                    (app.clone(), tls.clone(), builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    // A client that never finishes its handshake holds nothing for long.
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    );
                    let Ok(Ok(stream)) = handshake.await else { return };
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
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), graceful.shutdown()).await;
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
    if let Some(admin) = admin {
        let app = api::admin_router(gateway.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, app).await {
                tracing::error!(error = %e, "the admin listener stopped");
            }
        });
    }
    background(&gateway);
    let app = api::router(gateway).layer(TraceLayer::new_for_http());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
