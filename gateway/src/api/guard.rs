//! Every `/v1` request: authenticate, require a declared purpose, run the
//! handler, and write the audit record before the response may leave.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::audit::{AuditRecord, now_rfc3339};
use crate::disclosure::Facts;
use crate::error::{ApiError, ErrorCode};
use crate::state::Live;

fn header<'a>(request: &'a axum::extract::Request, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The resource a `/v1` request is about: the path's first segment, or
/// for statistics the metric's resource (`metric=members.count`). Only
/// names of the model are kept: the trail records no free text here.
fn resource_of(path: &str, query: Option<&str>) -> String {
    let first = path
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    let name = if first == "stats" {
        query
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("metric="))
            .and_then(|metric| metric.split('.').next())
            .unwrap_or("")
    } else {
        first
    };
    match crate::model::entity(name) {
        Some(entity) => entity.name.to_string(),
        None => String::new(),
    }
}

pub async fn guard(
    State(live): State<Arc<Live>>,
    route: axum::extract::MatchedPath,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let gateway = super::snapshot(&live, &request);
    let id = crate::audit::request_id();
    let mut record = AuditRecord {
        at: now_rfc3339(),
        request_id: id.clone(),
        principal: "anonymous".into(),
        method: request.method().to_string(),
        route: route.as_str().to_string(),
        query: request.uri().query().unwrap_or("").to_string(),
        resource: resource_of(request.uri().path(), request.uri().query()),
        policy_version: gateway.config.enforcer.engine.version().to_string(),
        ..AuditRecord::default()
    };
    let (authorization, api_key) = (
        header(&request, "authorization"),
        header(&request, "x-api-key"),
    );
    // A token or key in the request wins; else a client certificate that
    // maps to a configured principal (mTLS system callers).
    let client_cert = request
        .extensions()
        .get::<crate::tls::ClientCert>()
        .and_then(|c| c.0.clone());
    let authenticating = tracing::info_span!("authenticate").entered();
    let identity = match client_cert {
        Some(identity) if authorization.is_none() && api_key.is_none() => Ok(identity),
        _ => gateway.config.auth.authenticate(authorization, api_key),
    };
    drop(authenticating);
    let mut response = match identity {
        Err(e) => {
            record.decision = "unauthenticated".into();
            gateway.metrics.record_denial("unauthenticated");
            ApiError::unauthenticated(&e).into_response()
        }
        Ok(identity) => {
            record.principal = identity.id.clone();
            record.level = identity.level.to_string();
            record.division = identity.division.clone();
            record.via = identity.via.clone();
            let purposes = &gateway.config.policy.purposes;
            match header(&request, "x-purpose").map(str::trim) {
                None | Some("") => {
                    record.decision = "invalid".into();
                    ApiError::new(
                        ErrorCode::PurposeRequired,
                        format!(
                            "declare why you ask: header `X-Purpose` with one of {}",
                            purposes.join(", ")
                        ),
                    )
                    .into_response()
                }
                Some(p) if !purposes.iter().any(|x| x == p) => {
                    record.decision = "invalid".into();
                    ApiError::new(
                        ErrorCode::UnknownPurpose,
                        format!(
                            "`{p}` is not a declared purpose; use one of {}",
                            purposes.join(", ")
                        ),
                    )
                    .into_response()
                }
                Some(p) => {
                    record.purpose = p.to_string();
                    let principal = identity.with_purpose(p);
                    request.extensions_mut().insert(principal);
                    next.run(request).await
                }
            }
        }
    };
    let facts = response.extensions_mut().remove::<Facts>();
    let statistics = facts.as_ref().is_some_and(|f| f.statistics);
    if let Some(f) = facts {
        record.scope = f.scope;
        record.sources = f.sources;
        record.rows = f.rows;
        record.fields = f.fields;
        record.masked = f.masked;
        record.withheld = f.withheld;
        record.dropped = f.dropped;
        record.policies = f.policies;
        record.write = f.write;
        if let Some(d) = f.decision {
            record.decision = d.to_string();
        }
        if record.decision == "deny" {
            gateway.metrics.record_denial("forbidden");
        }
        gateway
            .metrics
            .record_masked(record.masked, record.withheld.len() as u64);
    }
    if record.decision.is_empty() {
        record.decision = if response.status().is_success() {
            "allow"
        } else {
            "error"
        }
        .into();
    }
    record.status = response.status().as_u16();
    // The request span (the guard runs inside it) carries what operators
    // filter traces on.
    let span = tracing::Span::current();
    span.record("lianqiao.level", record.level.as_str());
    span.record("lianqiao.division", record.division.as_str());
    span.record("lianqiao.decision", record.decision.as_str());
    span.record("lianqiao.rows", record.rows);
    span.record("lianqiao.masked_cells", record.masked);
    span.record("lianqiao.withheld_fields", record.withheld.len());
    let carries_data = response.status().is_success() && (record.carries_records() || statistics);
    let fail_open = statistics && gateway.config.audit.statistics_fail_open;
    let written = tracing::Instrument::instrument(
        gateway.audit.write(record, fail_open),
        tracing::info_span!("audit"),
    )
    .await;
    if let Err(e) = written
        && carries_data
        && !fail_open
    {
        response = ApiError::new(
            ErrorCode::AuditUnavailable,
            format!(
                "the audit trail cannot record this access, so nothing is released ({e}); retry when the audit store is back"
            ),
        )
        .into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
