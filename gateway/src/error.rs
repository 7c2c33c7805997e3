//! API errors: an HTTP status, a stable machine code and a message that
//! says what to fix. Clients key on the code, people read the message.
//!
//! Every code the gateway emits is one variant of [`ErrorCode`], with its
//! status, whether retrying the same request can help, and a doc line; the
//! OpenAPI document and `docs/errors.md` are generated from it (a test
//! fails when they disagree).
//!
//! Errors never carry data: messages are written by the gateway and may
//! quote only what the caller itself sent (its own parameter values) and
//! names from the model. A source's failure is said in the gateway's words
//! ([`public_message`]); the source's or plugin's own go to the operator's
//! log, masked (`crate::redact`), never into a response.
//!
//! Below everything that answers requests: it imports the sources' reports
//! and the policy's refusals, nothing that serves.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lianqiao_host::PluginError;
use lianqiao_host::contract::{CommandError, SourceError};
use serde_json::json;

use crate::sources::report::SourceReport;

/// Every error code the API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    MissingParameter,
    InvalidParameter,
    UnknownField,
    UnsupportedQuery,
    BadCursor,
    Unauthenticated,
    Forbidden,
    PurposeRequired,
    UnknownPurpose,
    InvalidSource,
    InvalidPolicy,
    PolicyChanged,
    NotFound,
    InvalidTransition,
    CaseChanged,
    IdempotencyKeyReused,
    WriteInProgress,
    SourceRejected,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    Overloaded,
    AuditUnavailable,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
    PluginTrap,
    PluginLimit,
    CircuitOpen,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::BadRequest,
        ErrorCode::MissingParameter,
        ErrorCode::InvalidParameter,
        ErrorCode::UnknownField,
        ErrorCode::UnsupportedQuery,
        ErrorCode::BadCursor,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::PurposeRequired,
        ErrorCode::UnknownPurpose,
        ErrorCode::InvalidSource,
        ErrorCode::InvalidPolicy,
        ErrorCode::PolicyChanged,
        ErrorCode::NotFound,
        ErrorCode::InvalidTransition,
        ErrorCode::CaseChanged,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::WriteInProgress,
        ErrorCode::SourceRejected,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::AuditUnavailable,
        ErrorCode::SourceError,
        ErrorCode::SourceTimeout,
        ErrorCode::SourceUnavailable,
        ErrorCode::PluginTrap,
        ErrorCode::PluginLimit,
        ErrorCode::CircuitOpen,
        ErrorCode::Internal,
    ];

    /// The machine code clients key on (stable once released).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MissingParameter => "missing_parameter",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::UnsupportedQuery => "unsupported_query",
            ErrorCode::BadCursor => "bad_cursor",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PurposeRequired => "purpose_required",
            ErrorCode::UnknownPurpose => "unknown_purpose",
            ErrorCode::InvalidSource => "invalid_source",
            ErrorCode::InvalidPolicy => "invalid_policy",
            ErrorCode::PolicyChanged => "policy_changed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidTransition => "invalid_transition",
            ErrorCode::CaseChanged => "case_changed",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::WriteInProgress => "write_in_progress",
            ErrorCode::SourceRejected => "source_rejected",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::SourceError => "source_error",
            ErrorCode::SourceTimeout => "source_timeout",
            ErrorCode::SourceUnavailable => "source_unavailable",
            ErrorCode::PluginTrap => "plugin_trap",
            ErrorCode::PluginLimit => "plugin_limit",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status a response with this code carries when the code
    /// decides it (a federation failure decides by all its sources).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::MissingParameter
            | ErrorCode::InvalidParameter
            | ErrorCode::UnknownField
            | ErrorCode::UnsupportedQuery
            | ErrorCode::BadCursor
            | ErrorCode::PurposeRequired
            | ErrorCode::UnknownPurpose => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidSource
            | ErrorCode::InvalidPolicy
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::SourceRejected => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidTransition
            | ErrorCode::CaseChanged
            | ErrorCode::PolicyChanged
            | ErrorCode::WriteInProgress => StatusCode::CONFLICT,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded
            | ErrorCode::AuditUnavailable
            | ErrorCode::SourceUnavailable
            | ErrorCode::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::SourceError | ErrorCode::PluginTrap | ErrorCode::PluginLimit => {
                StatusCode::BAD_GATEWAY
            }
            ErrorCode::SourceTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether sending the same request again (after `Retry-After`, when
    /// given) can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Overloaded
                | ErrorCode::AuditUnavailable
                | ErrorCode::SourceTimeout
                | ErrorCode::SourceUnavailable
                | ErrorCode::CircuitOpen
                | ErrorCode::WriteInProgress
                | ErrorCode::Internal
        )
    }

    /// One line for the documentation.
    pub fn doc(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => {
                "The request as a whole is refused: a query string that is not URL-encoded or past a size or count limit, a parameter given twice, parameters that contradict each other."
            }
            ErrorCode::MissingParameter => {
                "A required parameter is missing; the message names it with an example."
            }
            ErrorCode::InvalidParameter => {
                "A parameter's value is malformed or out of range; the message names it and what is allowed."
            }
            ErrorCode::UnknownField => {
                "A filter, projection or grouping names a field the resource does not have; the message lists the fields."
            }
            ErrorCode::UnsupportedQuery => {
                "The sources that hold the records cannot answer this query (a grouping or filter they do not support); change the query, a retry gets the same answer."
            }
            ErrorCode::BadCursor => {
                "The cursor was altered, belongs to another query or another caller, or comes from another gateway key."
            }
            ErrorCode::Unauthenticated => {
                "No valid credential; `reason` says why (credential_missing, token_expired, …)."
            }
            ErrorCode::Forbidden => {
                "The policy does not let this caller do this; `reason` says why and `policies` names the rules that decided it."
            }
            ErrorCode::PurposeRequired => {
                "Header `X-Purpose` is missing; every `/v1` request declares why it asks."
            }
            ErrorCode::UnknownPurpose => {
                "Header `X-Purpose` is not one of the purposes the gateway declares; the message lists them."
            }
            ErrorCode::InvalidSource => {
                "Admin listener: the source file does not load or fails its probe; the message lists every problem, and nothing was changed."
            }
            ErrorCode::InvalidPolicy => {
                "Console: a proposed policy change does not validate against the schema or the model, or the policy's test tables fail with it; the message lists every problem, and nothing was changed."
            }
            ErrorCode::PolicyChanged => {
                "Console: the policy files changed since the draft was made (another operator applied a change); preview the draft again and apply it if it still says what you mean."
            }
            ErrorCode::NotFound => {
                "No such route, resource, division, serving source, or case the caller may see."
            }
            ErrorCode::InvalidTransition => {
                "The case cannot move there from its current state; `allowed` lists the moves this caller may make now."
            }
            ErrorCode::CaseChanged => {
                "The case changed at its source while the move was made; read it again and decide anew."
            }
            ErrorCode::IdempotencyKeyReused => {
                "This `Idempotency-Key` was used for a different request body; a retry must send the same body, a new write a new key."
            }
            ErrorCode::WriteInProgress => {
                "A write with this `Idempotency-Key` is still being applied; retry after `Retry-After` seconds to get its result."
            }
            ErrorCode::SourceRejected => {
                "The source refused the write as invalid (`source` names it); retrying is useless."
            }
            ErrorCode::MethodNotAllowed => {
                "The route does not take this method (header `Allow`); only case writes take POST."
            }
            ErrorCode::PayloadTooLarge => {
                "A request body past the limit (64 KiB for case writes); reads take their parameters in the query string."
            }
            ErrorCode::RateLimited => {
                "The caller's statistics budget is spent; retry after `Retry-After` seconds."
            }
            ErrorCode::Overloaded => {
                "The gateway is serving its limit of requests; retry after `Retry-After` seconds."
            }
            ErrorCode::AuditUnavailable => {
                "The audit trail cannot record the access, so nothing is released."
            }
            ErrorCode::SourceError => {
                "A source failed or answered outside its contract (`sources[]` names it)."
            }
            ErrorCode::SourceTimeout => "A source did not answer within its deadline.",
            ErrorCode::SourceUnavailable => "A source or its upstream is down or busy for now.",
            ErrorCode::PluginTrap => "A source's plugin crashed on this request.",
            ErrorCode::PluginLimit => "A source's plugin hit its memory cap on this request.",
            ErrorCode::CircuitOpen => {
                "A source failed repeatedly and is not called until its cool-down ends."
            }
            ErrorCode::Internal => {
                "A gateway bug; the request id in `X-Request-Id` finds it in the log."
            }
        }
    }

    /// The code a failed source call answers with.
    pub fn of(error: &PluginError) -> ErrorCode {
        match error {
            PluginError::Source(e) => match e {
                SourceError::UpstreamTimeout(_) => ErrorCode::SourceTimeout,
                SourceError::UpstreamUnavailable(_) => ErrorCode::SourceUnavailable,
                SourceError::Unsupported(_) => ErrorCode::UnsupportedQuery,
                _ => ErrorCode::SourceError,
            },
            PluginError::Command(e) => match e {
                CommandError::UpstreamTimeout(_) => ErrorCode::SourceTimeout,
                CommandError::UpstreamUnavailable(_) => ErrorCode::SourceUnavailable,
                CommandError::Conflict(_) => ErrorCode::CaseChanged,
                CommandError::NotFound(_) => ErrorCode::NotFound,
                CommandError::Rejected(_) => ErrorCode::SourceRejected,
                _ => ErrorCode::SourceError,
            },
            PluginError::Trap(_) => ErrorCode::PluginTrap,
            PluginError::Deadline { .. } => ErrorCode::SourceTimeout,
            PluginError::MemoryLimit { .. } => ErrorCode::PluginLimit,
            PluginError::Busy(_) => ErrorCode::SourceUnavailable,
            PluginError::Contract(_) => ErrorCode::SourceError,
            PluginError::CircuitOpen { .. } => ErrorCode::CircuitOpen,
        }
    }
}

/// Every `reason` an error body may carry: why a credential (401) or an
/// access (403) was refused.
pub const REASONS: &[(&str, &str)] = &[
    (
        "credential_missing",
        "401: no `Authorization` or `X-Api-Key` header.",
    ),
    (
        "credential_malformed",
        "401: the credential is not a well-formed token or key.",
    ),
    (
        "token_expired",
        "401: the token's `exp` has passed; get a new token.",
    ),
    (
        "token_not_yet_valid",
        "401: the token's `nbf` is in the future (check the clocks).",
    ),
    (
        "token_signature_invalid",
        "401: the token's signature does not verify.",
    ),
    (
        "token_issuer_unknown",
        "401: the token's issuer is not configured.",
    ),
    (
        "token_audience_invalid",
        "401: the token is for another audience.",
    ),
    (
        "token_claims_invalid",
        "401: a claim (level, division, roles) is missing or malformed.",
    ),
    ("api_key_unknown", "401: no such API key."),
    (
        "outside_jurisdiction",
        "403: the division asked for is outside the caller's jurisdiction.",
    ),
    (
        "no_policy_permits",
        "403: no policy permits this caller, action, resource and purpose.",
    ),
    (
        "forbidden_by_policy",
        "403: a policy forbids it (`policies` names it).",
    ),
    (
        "field_not_visible",
        "403: a filter or grouping on a field the caller does not see in clear.",
    ),
    (
        "role_required",
        "403: the request needs a role the caller lacks.",
    ),
    (
        "cross_site",
        "403: a console change that did not come from the console's own pages (its form token is missing or not the session's, or the browser says another site sent it).",
    ),
];

/// The `reason` values as a Markdown table (docs/errors.md).
pub fn reasons_table() -> String {
    let mut out = String::from("| reason | meaning |\n|---|---|\n");
    for (reason, doc) in REASONS {
        out.push_str(&format!("| `{reason}` | {doc} |\n"));
    }
    out
}

/// The table of every code, as docs/errors.md carries it.
pub fn codes_table() -> String {
    let mut out = String::from("| code | status | retry can help | meaning |\n|---|---|---|---|\n");
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            code.as_str(),
            code.status().as_u16(),
            if code.retryable() { "yes" } else { "no" },
            code.doc()
        ));
    }
    out
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A source's failure in the gateway's words: the kind of problem and the
/// gateway's own figures (deadline, memory cap), never a word of the
/// plugin's, which may quote a cell of a record the caller may not see.
pub fn public_message(e: &PluginError) -> String {
    match e {
        PluginError::Source(s) => match s {
            SourceError::Unsupported(_) => "the source cannot answer this query".into(),
            SourceError::BadCursor(_) => "the source refused its position in the cursor".into(),
            SourceError::BadConfig(_) => "the source's settings are invalid".into(),
            SourceError::UpstreamUnavailable(_) => "the upstream system is unavailable".into(),
            SourceError::UpstreamTimeout(_) => "the upstream system timed out".into(),
            SourceError::UpstreamError(_) => "the upstream system answered with an error".into(),
            SourceError::Denied(_) => "the host denied the plugin a capability".into(),
            SourceError::Internal(_) => "the plugin reported an internal error".into(),
        },
        PluginError::Command(c) => match c {
            CommandError::Unsupported(_) => "the source takes no such write".into(),
            CommandError::Conflict(_) => "the record changed at the source".into(),
            CommandError::NotFound(_) => "the source has no such record".into(),
            CommandError::Rejected(_) => "the source refused the write as invalid".into(),
            CommandError::BadConfig(_) => "the source's settings are invalid".into(),
            CommandError::UpstreamUnavailable(_) => "the upstream system is unavailable".into(),
            CommandError::UpstreamTimeout(_) => "the upstream system timed out".into(),
            CommandError::UpstreamError(_) => "the upstream system answered with an error".into(),
            CommandError::Denied(_) => "the host denied the plugin a capability".into(),
            CommandError::Internal(_) => "the plugin reported an internal error".into(),
        },
        PluginError::Trap(_) => "the plugin trapped".into(),
        PluginError::Busy(_) => {
            "every instance of the source's plugin stayed busy for its deadline (the gateway is overloaded; the source is not down)".into()
        }
        // Built by the host from names and counts only (`Violation`).
        PluginError::Contract(v) => format!("the plugin broke the contract: {v}"),
        // The gateway's own figures.
        PluginError::Deadline { .. }
        | PluginError::MemoryLimit { .. }
        | PluginError::CircuitOpen { .. } => e.to_string(),
    }
}

/// Each source's outcome for a body: name, status, latency, rows, and for
/// a failure its code and the gateway's words about it.
pub fn source_reports(reports: &[SourceReport]) -> serde_json::Value {
    serde_json::Value::Array(
        reports
            .iter()
            .map(|r| {
                let mut report = json!({
                    "name": r.name,
                    "status": r.status.as_str(),
                    "latency_ms": (r.latency.as_secs_f64() * 10_000.0).round() / 10.0,
                    "rows": r.rows,
                });
                if let Some(e) = &r.error {
                    report["error"] = json!({
                        "code": ErrorCode::of(e).as_str(),
                        "message": public_message(e),
                    });
                }
                report
            })
            .collect(),
    )
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
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
    /// Seconds before a retry can succeed (`Retry-After`).
    pub retry_after_s: Option<u64>,
    /// For `invalid_transition`: the moves the caller may make now.
    pub allowed: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
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
            ..Self::new(ErrorCode::Unauthenticated, e.to_string())
        }
    }

    /// 403 with its `reason` (one of [`REASONS`]) and the policies that
    /// decided it (always present, empty when none did).
    pub fn forbidden(
        reason: &'static str,
        message: impl Into<String>,
        policies: Vec<String>,
    ) -> Self {
        ApiError {
            detail: Some(Box::new(Detail {
                reason: Some(reason),
                policies,
                ..Detail::default()
            })),
            ..Self::new(ErrorCode::Forbidden, message)
        }
    }

    pub fn denied(d: lianqiao_policy::Denied) -> Self {
        Self::forbidden(d.reason, d.message, d.policies)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn missing(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MissingParameter, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameter, message)
    }

    /// A query the serving sources cannot answer, known before calling them.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedQuery, message)
    }

    pub fn unknown_field(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownField, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 429 or 503 with `Retry-After`.
    pub fn retry_after(code: ErrorCode, message: impl Into<String>, seconds: u64) -> Self {
        ApiError {
            detail: Some(Box::new(Detail {
                retry_after_s: Some(seconds.max(1)),
                ..Detail::default()
            })),
            ..Self::new(code, message)
        }
    }

    /// The sources failed: 503 if one was merely busy, 504 if all timed
    /// out, 502 otherwise; the code and source are the first failure's.
    /// Messages are the gateway's own words about each failure (never a
    /// source's text or a value from its data).
    pub fn sources_failed(reports: Vec<SourceReport>) -> Self {
        let failures: Vec<&SourceReport> = reports.iter().filter(|r| r.error.is_some()).collect();
        let codes: Vec<ErrorCode> = failures
            .iter()
            .filter_map(|r| r.error.as_ref().map(ErrorCode::of))
            .collect();
        // A query no failing source can answer is the caller's to change
        // (4xx: clients do not retry it); otherwise the sources' state.
        let status = if !codes.is_empty() && codes.iter().all(|c| *c == ErrorCode::UnsupportedQuery)
        {
            StatusCode::BAD_REQUEST
        } else if codes.contains(&ErrorCode::SourceUnavailable)
            || codes.contains(&ErrorCode::CircuitOpen)
        {
            StatusCode::SERVICE_UNAVAILABLE
        } else if !codes.is_empty() && codes.iter().all(|c| *c == ErrorCode::SourceTimeout) {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        let message = failures
            .iter()
            .filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("source `{}`: {}", r.name, public_message(e)))
            })
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status,
            code: codes.first().copied().unwrap_or(ErrorCode::SourceError),
            message,
            source: failures.first().map(|r| r.name.clone()),
            sources: reports,
            detail: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "code": self.code.as_str(),
            "message": self.message,
            "retryable": self.code.retryable(),
        });
        if let Some(source) = &self.source {
            error["source"] = json!(source);
        }
        let mut retry_after = None;
        if let Some(detail) = &self.detail {
            if let Some(reason) = detail.reason {
                error["reason"] = json!(reason);
            }
            if self.code == ErrorCode::Forbidden || !detail.policies.is_empty() {
                error["policies"] = json!(detail.policies);
            }
            retry_after = detail.retry_after_s;
            if let Some(allowed) = &detail.allowed {
                error["allowed"] = json!(allowed);
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
        if let Some(seconds) = retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&seconds.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lianqiao_host::Violation;

    #[test]
    fn the_public_text_never_carries_the_plugins_words() {
        let secret = "15010319850312123X 张三 13812345678";
        for e in [
            PluginError::Source(SourceError::UpstreamError(secret.into())),
            PluginError::Source(SourceError::Internal(secret.into())),
            PluginError::Source(SourceError::Unsupported(secret.into())),
            PluginError::Trap(secret.into()),
            PluginError::Busy(secret.into()),
        ] {
            let text = public_message(&e);
            assert!(
                !text.contains("1501031985") && !text.contains("张三"),
                "{text}"
            );
        }
        let v = public_message(&PluginError::Contract(Violation::WrongKind {
            field: "id",
            expected: "text",
        }));
        assert_eq!(v, "the plugin broke the contract: `id` must be text");
    }

    #[test]
    fn every_reason_the_gateway_gives_is_documented() {
        use lianqiao_policy::AuthError;
        let doc = include_str!("../../docs/errors.md");
        assert!(
            doc.contains(&reasons_table()),
            "docs/errors.md is out of date; its reasons table must be:\n{}",
            reasons_table()
        );
        let listed = |r: &str| REASONS.iter().any(|(x, _)| *x == r);
        for e in [
            AuthError::Missing,
            AuthError::Malformed,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::BadSignature,
            AuthError::UnknownIssuer(String::new()),
            AuthError::WrongAudience,
            AuthError::BadClaims(String::new()),
            AuthError::UnknownApiKey,
        ] {
            assert!(listed(e.reason()), "{} is not in REASONS", e.reason());
        }
        for r in [
            "outside_jurisdiction",
            "no_policy_permits",
            "forbidden_by_policy",
        ] {
            assert!(listed(r), "{r} is not in REASONS");
        }
    }

    #[test]
    fn docs_errors_md_lists_every_code_as_the_enum_says() {
        let doc = include_str!("../../docs/errors.md");
        assert!(
            doc.contains(&codes_table()),
            "docs/errors.md is out of date; its table must be:\n{}",
            codes_table()
        );
    }

    #[test]
    fn codes_are_unique_and_client_mistakes_are_4xx() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            let client = matches!(
                code,
                ErrorCode::BadRequest
                    | ErrorCode::MissingParameter
                    | ErrorCode::InvalidParameter
                    | ErrorCode::UnknownField
                    | ErrorCode::UnsupportedQuery
                    | ErrorCode::BadCursor
                    | ErrorCode::PurposeRequired
                    | ErrorCode::UnknownPurpose
                    | ErrorCode::InvalidSource
                    | ErrorCode::NotFound
                    | ErrorCode::MethodNotAllowed
                    | ErrorCode::PayloadTooLarge
            );
            if client {
                assert!(
                    code.status().is_client_error() && !code.retryable(),
                    "{code}"
                );
            }
            assert!(!code.doc().is_empty());
        }
    }
}
