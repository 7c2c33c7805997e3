//! Serving the gateway: the listeners and what runs beside them.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api;
pub use crate::state::{Gateway, Live};

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
        // TLS on the admin listener only when asked: scrapers stay as
        // configured.
        let admin_tls = gateway
            .current()
            .config
            .telemetry
            .admin_tls
            .then(|| tls.clone());
        tokio::spawn(accept_loop(admin, admin_tls, app, limits, stopped.clone()));
    }
    background(&gateway);
    tokio::spawn(crate::tls::watch(tls.clone()));
    let app = api::router(gateway).layer(TraceLayer::new_for_http());
    accept_loop(listener, Some(tls), app, limits, stopped).await;
    Ok(())
}

/// What runs beside the listeners: the division registry's refresh,
/// sources' health checks, the metric export and the escalation saga's
/// worker (each off when its setting says so, each reading the
/// configuration serving now).
fn background(live: &Arc<Live>) {
    tokio::spawn(crate::registry::refresh(live.clone()));
    tokio::spawn(crate::health::run(live.clone()));
    tokio::spawn(crate::observe::export_metrics(live.clone()));
    tokio::spawn(crate::escalation::saga::run(live.clone()));
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
