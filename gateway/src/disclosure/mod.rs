//! The disclosure gate: every value that leaves the gateway passes here.
//!
//! One component holds the caller's grant and builds every response body
//! of the `/v1` API: row cells (admitted, masked or withheld), statistics
//! (grouped only as the policy lets this caller group, counts exact only
//! where the caller could list the records, protected otherwise), page
//! cursors (sealed), source reports and error messages (the gateway's own
//! words, never a source's), explanations. A handler cannot answer with a
//! body of its own making: [`Released`] can only be built in this module,
//! so a new endpoint that forgets the gate does not compile.
//!
//! - [`rows`]: lists — phase 1 (scope, attribute, filters, fields) and
//!   phase 2 (every row checked again, fields masked), the envelope.
//! - [`counts`]: statistics — grouping as a decision of its own, counts
//!   protected by [`protect`] (cell-key perturbation, small cells
//!   suppressed, zeros never told apart from them), per-caller budgets
//!   ([`budget`]).
//! - [`seal`]: cursors, encrypted and bound to their caller and query.
//! - `crate::error::public_message` / `source_reports`: what a failure may
//!   say to callers (shared with error bodies); `crate::redact`: to the log.

pub mod budget;
pub mod counts;
pub mod protect;
pub mod rows;
pub mod seal;

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use crate::config::StatisticsSection;
use crate::sources::SourceSet;

/// What the gate works with, borrowed from the gateway serving the request
/// (`state::Gateway::gate`): the policy, the sources (for coverage), the
/// cursor seal, the counting protection and budgets.
#[derive(Debug, Clone, Copy)]
pub struct Context<'g> {
    pub enforcer: &'g lianqiao_policy::Enforcer,
    pub sources: &'g SourceSet,
    pub cursors: &'g seal::CursorSeal,
    pub protection: &'g protect::Protection,
    pub budgets: &'g budget::Budgets,
    pub statistics: &'g StatisticsSection,
}

/// A response body the gate built, as the JSON bytes that will leave.
/// Only this module can make one.
#[derive(Debug)]
pub struct Released(Vec<u8>);

impl Released {
    /// Serialise a body the gate assembled.
    fn of(body: &impl serde::Serialize) -> Released {
        // Serialising our own types and `serde_json::Value` cannot fail
        // (string keys only); an empty object is the safe fallback.
        Released(serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec()))
    }

    /// What was released, parsed back: for tests and tools.
    pub fn body(&self) -> Json {
        serde_json::from_slice(&self.0).unwrap_or(Json::Null)
    }

    /// The bytes that leave (kept under a write's idempotency key).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A write's first response, replayed for a retry with the same
/// idempotency key. Keys are per principal, so this is a body the gate
/// released to this very caller before.
pub fn replayed(body: String) -> Released {
    Released(body.into_bytes())
}

/// `GET /v1/cases/{id}`: a case (released as one record) and its steps
/// (released as a list), as one body with the steps in time order.
pub fn case_with_timeline(case: Released, steps: Released) -> Released {
    let (mut case, steps) = (case.body(), steps.body());
    let mut timeline = steps["data"].as_array().cloned().unwrap_or_default();
    timeline.sort_by(|a, b| {
        a["at"]
            .as_str()
            .cmp(&b["at"].as_str())
            .then(a["id"].as_str().cmp(&b["id"].as_str()))
    });
    case["timeline"] = Json::Array(timeline);
    case["partial"] = Json::Bool(
        case["partial"].as_bool().unwrap_or(false) || steps["partial"].as_bool().unwrap_or(false),
    );
    if let (Some(a), Some(b)) = (case["sources"].as_array_mut(), steps["sources"].as_array()) {
        a.extend(b.iter().cloned());
    }
    Released::of(&case)
}

impl IntoResponse for Released {
    fn into_response(self) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

/// What the policy decides for a principal (`GET /v1/_explain`): the
/// decisions and the policies that made them, no record data.
pub fn explained(explanation: Json) -> Released {
    Released::of(&explanation)
}

/// What the handler tells the audit record (a response extension).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub scope: String,
    pub sources: Vec<String>,
    pub rows: u64,
    pub fields: BTreeMap<String, Vec<String>>,
    pub masked: u64,
    pub withheld: Vec<String>,
    pub dropped: u64,
    pub decision: Option<&'static str>,
    pub policies: Vec<String>,
    /// A statistics response (counts only).
    pub statistics: bool,
    /// A case write: what was asked and applied.
    pub write: Option<WriteFacts>,
}

/// What a case write did, for its audit record.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteFacts {
    pub case: String,
    pub source: String,
    pub from: String,
    pub to: String,
    pub idempotency_key: String,
    /// Answered from the key's first result; nothing was applied again.
    pub replayed: bool,
}

/// Phase 1's span, for lists and statistics alike.
fn phase_one(principal: &lianqiao_policy::Principal, resource: &str) -> tracing::span::EnteredSpan {
    tracing::info_span!(
        "policy",
        phase = 1,
        level = %principal.level,
        division = %principal.division,
        resource,
    )
    .entered()
}

/// A denial: recorded in the audit facts, answered 403 naming the policies.
fn refused(facts: &mut Facts, denied: lianqiao_policy::Denied) -> crate::error::ApiError {
    facts.decision = Some("deny");
    facts.policies = denied.policies.clone();
    crate::error::ApiError::denied(denied)
}
