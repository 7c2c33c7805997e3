//! The admin listener: `/metrics` (scraped as configured, without a
//! credential) and `PUT /admin/sources/{name}`, which adds or replaces a
//! source in the running gateway through the same path as `lianqiao
//! source add` (`kit::install`: load with the file, probe, install
//! atomically, reload). Changing sources needs a credential with the
//! `source-admin` role, and every attempt is audited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};
use serde_json::json;

use crate::audit::{AuditRecord, now_rfc3339};
use crate::error::{ApiError, ErrorCode};
use crate::kit::install;
use crate::state::Live;

/// The role a principal needs to add or replace sources.
pub const SOURCE_ADMIN_ROLE: &str = "source-admin";

/// Largest source file the admin listener takes.
const MAX_SOURCE_BYTES: usize = 256 * 1024;

/// Rows sampled per entity before a source is installed.
const PROBE_SAMPLE: u32 = 200;

pub fn admin_router(gateway: Arc<Live>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/sources/{name}", put(put_source))
        .merge(crate::console::router())
        .layer(DefaultBodyLimit::max(MAX_SOURCE_BYTES))
        .with_state(gateway)
}

async fn metrics(State(live): State<Arc<Live>>) -> Response {
    let gateway = live.current();
    if !gateway.metrics.enabled() {
        return ApiError::not_found(
            "metrics are off (telemetry.metrics = false); turn them on to scrape /metrics",
        )
        .into_response();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::metrics::prometheus_text(&crate::observe::families(&gateway)),
    )
        .into_response()
}

async fn put_source(
    State(live): State<Arc<Live>>,
    Path(name): Path<String>,
    client_cert: Option<Extension<crate::tls::ClientCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gateway = live.current();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let mut record = AuditRecord {
        at: now_rfc3339(),
        request_id: crate::audit::request_id(),
        principal: "anonymous".into(),
        method: "PUT".into(),
        route: "/admin/sources/{name}".into(),
        query: format!("name={name}"),
        policy_version: gateway.config.enforcer.engine.version().to_string(),
        ..AuditRecord::default()
    };
    let outcome = async {
        // A token or key wins; else a client certificate that maps to a
        // principal (with `telemetry.admin_tls`), as on the API.
        let certified = client_cert.and_then(|Extension(c)| c.0);
        let identity = match certified {
            Some(identity)
                if header("authorization").is_none() && header("x-api-key").is_none() =>
            {
                identity
            }
            _ => gateway
                .config
                .auth
                .authenticate(header("authorization"), header("x-api-key"))
                .map_err(|e| ApiError::unauthenticated(&e))?,
        };
        record.principal = identity.id.clone();
        record.level = identity.level.to_string();
        record.division = identity.division.clone();
        record.via = identity.via.clone();
        if !identity.roles.iter().any(|r| r == SOURCE_ADMIN_ROLE) {
            return Err(ApiError::forbidden(
                "role_required",
                format!("adding or replacing a source needs the `{SOURCE_ADMIN_ROLE}` role"),
                Vec::new(),
            ));
        }
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("the body must be a source file: TOML in UTF-8"))?;
        let declared = install::name_in(text).map_err(|e| {
            ApiError::new(ErrorCode::InvalidSource, format!("not a source file: {e}"))
        })?;
        if declared != name {
            return Err(ApiError::new(
                ErrorCode::InvalidSource,
                format!("the file declares name = \"{declared}\", the path names `{name}`"),
            ));
        }
        if !crate::config::is_source_name(&name) {
            return Err(ApiError::invalid(format!(
                "`{name}` is not a source name: 1–64 of a-z, 0-9, - and _"
            )));
        }
        let _one_at_a_time = crate::state::CONFIG_CHANGE.lock().await;
        let checked = install::check_text(live.config_path(), &name, text, PROBE_SAMPLE)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidSource, e))?;
        if !checked.probe.ok() {
            return Err(ApiError::new(
                ErrorCode::InvalidSource,
                format!(
                    "the probe of `{name}` failed; nothing was changed: {}",
                    checked.probe.problems.join("; ")
                ),
            ));
        }
        drop(checked);
        // The change is audited before it is made: a store that is down
        // refuses the change rather than let it go unrecorded.
        gateway.audit.allowed(record.clone(), "the change").await?;
        let path = install::install(live.config_path(), text.as_bytes(), &name)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
        live.reload().await.map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidSource,
                format!(
                    "installed as {}, but the reload was refused (the running configuration keeps serving): {e}",
                    path.display()
                ),
            )
        })?;
        Ok(json!({ "source": name, "installed": path.display().to_string() }))
    }
    .await;
    match outcome {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => {
            // Refusals are audited too (the permitted change already was).
            gateway.audit.refused(record, &error).await;
            error.into_response()
        }
    }
}
