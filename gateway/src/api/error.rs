//! API errors: an HTTP status, a stable machine code and a message that
//! says what to fix. Clients key on the code, people read the message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::federation::{SourceReport, cursor::CursorError};

use super::envelope::source_reports;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The source the error came from, if one did.
    pub source: Option<String>,
    /// Every source's outcome, when sources were called.
    pub sources: Vec<SourceReport>,
    /// Why a credential was refused, or which policies denied (boxed: most
    /// errors have neither, and errors travel by value).
    pub detail: Option<Box<Detail>>,
}

#[derive(Debug, Default)]
pub struct Detail {
    /// Why a credential was refused (`token_expired`, …), for 401s.
    pub reason: Option<&'static str>,
    /// The policies that denied a request, for 403s.
    pub policies: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            source: None,
            sources: vec![],
            detail: None,
        }
    }

    /// 401 with the reason the credential was refused.
    pub fn unauthenticated(e: &lianqiao_policy::AuthError) -> Self {
        ApiError {
            detail: Some(Box::new(Detail {
                reason: Some(e.reason()),
                ..Detail::default()
            })),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
        }
    }

    /// 403 naming the policies that denied it.
    pub fn forbidden(message: impl Into<String>, policies: Vec<String>) -> Self {
        ApiError {
            detail: (!policies.is_empty()).then(|| {
                Box::new(Detail {
                    policies,
                    ..Detail::default()
                })
            }),
            ..Self::new(StatusCode::FORBIDDEN, "forbidden", message)
        }
    }

    pub fn denied(d: lianqiao_policy::Denied) -> Self {
        Self::forbidden(d.message, d.policies)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unknown_field(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unknown_field", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn cursor(e: CursorError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_cursor", e.to_string())
    }

    /// The sources failed: 503 if one was merely busy, 504 if all timed
    /// out, 502 otherwise; the code and source are the first failure's.
    pub fn sources_failed(reports: Vec<SourceReport>) -> Self {
        let failures: Vec<&SourceReport> = reports.iter().filter(|r| r.error.is_some()).collect();
        let codes: Vec<&str> = failures
            .iter()
            .filter_map(|r| r.error.as_ref().map(|e| e.code()))
            .collect();
        let status = if codes.contains(&"source_unavailable") || codes.contains(&"circuit_open") {
            StatusCode::SERVICE_UNAVAILABLE
        } else if !codes.is_empty() && codes.iter().all(|c| *c == "source_timeout") {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        let message = failures
            .iter()
            .filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("source `{}`: {e}", r.name))
            })
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status,
            code: codes.first().copied().unwrap_or("source_error"),
            message,
            source: failures.first().map(|r| r.name.clone()),
            sources: reports,
            detail: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(source) = &self.source {
            error["source"] = json!(source);
        }
        if let Some(detail) = &self.detail {
            if let Some(reason) = detail.reason {
                error["reason"] = json!(reason);
            }
            if !detail.policies.is_empty() {
                error["policies"] = json!(detail.policies);
            }
        }
        let mut body = json!({ "error": error });
        if !self.sources.is_empty() {
            body["sources"] = source_reports(&self.sources);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"lianqiao\""),
            );
        }
        response
    }
}
