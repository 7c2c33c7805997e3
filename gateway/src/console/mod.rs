//! The operator console, served by the admin listener (never the public
//! API): who sees what, as a matrix of levels × resources × fields, each
//! cell decided by the enforcing engine. Operators with the
//! `policy-admin` role sign in once (`POST /console/session` with their
//! token or client certificate) and browse with a session cookie. Every
//! page also answers as JSON (`.json`, or `Accept: application/json`).
//!
//! Built so far: sign-in, the matrix and the sources (docs/console.md).
//! The change preview and the audit pages are still to come.

pub mod matrix;
pub mod page;
pub mod session;

use std::sync::Arc;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::error::ApiError;
use crate::state::Live;

pub fn router() -> Router<Arc<Live>> {
    Router::new()
        .route("/console/session", post(sign_in))
        .route("/console", get(matrix_page))
        .route("/console/matrix", get(matrix_page))
        .route("/console/matrix.json", get(matrix_json))
        .route("/console/sources", get(sources_page))
        .route("/console/sources.json", get(sources_json))
}

async fn sources_json(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    match signed_in(&headers) {
        Ok(_) => Json(crate::health::readiness(&live.current())).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Each source's health, breaker, recent calls, plugin and limits: what
/// `/readyz` and `lianqiao status` report, as a page.
async fn sources_page(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    if wants_json(&headers) {
        return sources_json(State(live), headers).await;
    }
    match signed_in(&headers) {
        Ok(principal) => Html(page::sources(
            &crate::health::readiness(&live.current()),
            &principal.id,
        ))
        .into_response(),
        Err(e) => (StatusCode::UNAUTHORIZED, Html(page::message(&e.message))).into_response(),
    }
}

/// `POST /console/session`: a token (or an API key, or the admin
/// listener's client certificate) of a `policy-admin` for a session cookie.
async fn sign_in(
    State(live): State<Arc<Live>>,
    client_cert: Option<Extension<crate::tls::ClientCert>>,
    headers: HeaderMap,
) -> Response {
    let gateway = live.current();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let certified = client_cert.and_then(|Extension(c)| c.0);
    let identity = match certified {
        Some(identity) if header("authorization").is_none() && header("x-api-key").is_none() => {
            identity
        }
        _ => match gateway
            .config
            .auth
            .authenticate(header("authorization"), header("x-api-key"))
        {
            Ok(identity) => identity,
            Err(e) => return ApiError::unauthenticated(&e).into_response(),
        },
    };
    if !identity.roles.iter().any(|r| r == session::CONSOLE_ROLE) {
        tracing::warn!(principal = %identity.id, "console sign-in refused: no policy-admin role");
        return ApiError::forbidden(
            "role_required",
            format!(
                "the console is for operators: it needs the `{}` role",
                session::CONSOLE_ROLE
            ),
            Vec::new(),
        )
        .into_response();
    }
    tracing::info!(principal = %identity.id, "console sign-in");
    let cookie = session::open(identity.with_purpose("administration"));
    let mut response = (
        StatusCode::OK,
        Json(serde_json::json!({
            "signed_in": identity.id,
            "expires_in": session::TTL.as_secs(),
            "next": "/console/matrix",
        })),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session's principal, or the 401 that says how to sign in.
fn signed_in(headers: &HeaderMap) -> Result<lianqiao_policy::Principal, ApiError> {
    session::current(headers).ok_or_else(|| ApiError {
        status: StatusCode::UNAUTHORIZED,
        ..ApiError::new(
            crate::error::ErrorCode::Unauthenticated,
            "sign in first: POST /console/session with a policy-admin token (Authorization: Bearer …); the session cookie lasts 30 minutes",
        )
    })
}

/// The matrix's parameters: `division` (a division code) and `purpose`.
fn query(gateway: &crate::state::Gateway, raw: Option<&str>) -> Result<(String, String), ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let division = get("division").unwrap_or_else(|| matrix::DEFAULT_DIVISION.to_string());
    if !crate::config::is_division_code(&division) {
        return Err(ApiError::invalid(format!(
            "`division` is a division code ({}), got `{division}`",
            lianqiao_policy::division::CONVENTION
        )));
    }
    let purposes = &gateway.config.policy.purposes;
    let purpose = get("purpose")
        .or_else(|| purposes.first().cloned())
        .unwrap_or_default();
    if !purposes.contains(&purpose) {
        return Err(ApiError::invalid(format!(
            "`purpose` is one of {}",
            purposes.join(", ")
        )));
    }
    Ok((
        lianqiao_policy::division::canonical(&division).to_string(),
        purpose,
    ))
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

async fn matrix_json(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let gateway = live.current();
    match signed_in(&headers).and_then(|_| query(&gateway, raw.as_deref())) {
        Ok((division, purpose)) => Json(matrix::matrix(
            &gateway.config.enforcer,
            &division,
            &purpose,
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn matrix_page(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if wants_json(&headers) {
        return matrix_json(State(live), headers, RawQuery(raw)).await;
    }
    let gateway = live.current();
    let principal = match signed_in(&headers) {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::UNAUTHORIZED, Html(page::message(&e.message))).into_response();
        }
    };
    match query(&gateway, raw.as_deref()) {
        Ok((division, purpose)) => {
            let m = matrix::matrix(&gateway.config.enforcer, &division, &purpose);
            let purposes = &gateway.config.policy.purposes;
            Html(page::matrix(&m, &principal.id, purposes)).into_response()
        }
        Err(e) => (e.status, Html(page::message(&e.message))).into_response(),
    }
}
