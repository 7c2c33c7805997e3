//! Fan a list query out to its sources in parallel and merge the answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lianqiao_host::PluginError;
use lianqiao_host::contract::Query;

use super::ListRequest;
use super::cursor::{CursorState, SourcePosition};
use super::merge::{Buffer, MergedRow, merge};
use super::planner::{SourceCall, plan};
use crate::error::ErrorCode;
use crate::redact;
pub use crate::sources::report::{SourceReport, SourceStatus};
use crate::sources::{CallOptions, SourceSet};

#[derive(Debug)]
pub struct ListOutcome {
    pub rows: Vec<MergedRow>,
    /// Where the next page starts; `None` when every source is exhausted.
    /// Leaves the gateway only sealed (`disclosure::seal`).
    pub next: Option<CursorState>,
    pub reports: Vec<SourceReport>,
}

impl ListOutcome {
    pub fn partial(&self) -> bool {
        self.reports.iter().any(|r| r.status.failed())
    }
}

#[derive(Debug)]
pub enum ListError {
    /// No source serves this entity in this scope.
    NoSource,
    /// Every source failed, or one did under `strict=true`.
    Failed(Vec<SourceReport>),
}

/// Rounds a request may take to fill its page when the gateway filters
/// rows itself (a source cannot push a filter down) and pages come back short.
const MAX_ROUNDS: usize = 8;

/// Rounds an empty page may take before it is answered with a cursor
/// anyway (sources that cannot push a filter down and hold long runs of
/// rows it rejects).
const MAX_EMPTY_ROUNDS: usize = 64;

/// Answer a list request: fan out, merge, and when gateway-side filters
/// left the page short, continue from the new position for a few rounds
/// so callers rarely see short pages.
pub async fn execute(sources: &SourceSet, request: &ListRequest) -> Result<ListOutcome, ListError> {
    let widened = super::codes::widen_filters(request);
    let request = widened.as_ref().unwrap_or(request);
    let mut outcome = execute_round(sources, request).await?;
    let mut rounds = 1;
    // An empty page keeps going longer: it must not hand out a cursor
    // (a client would read "nothing here, but more" as a fault).
    while !outcome.partial()
        && ((rounds < MAX_ROUNDS && (outcome.rows.len() as u32) < request.limit)
            || (rounds < MAX_EMPTY_ROUNDS && outcome.rows.is_empty()))
    {
        let Some(cursor) = outcome.next.take() else {
            break;
        };
        let mut next = request.clone();
        next.cursor = Some(cursor);
        next.limit = request.limit - outcome.rows.len() as u32;
        let more = execute_round(sources, &next).await?;
        let more_partial = more.partial();
        outcome.rows.extend(more.rows);
        outcome.next = more.next;
        for (total, round) in outcome.reports.iter_mut().zip(&more.reports) {
            if total.name == round.name {
                total.latency += round.latency;
                total.rows += round.rows;
            }
        }
        if more_partial {
            outcome.reports = more.reports;
        }
        rounds += 1;
    }
    if outcome.rows.is_empty() && outcome.partial() {
        // Nothing was consumed: the same request (same cursor) is the retry.
        outcome.next = None;
    }
    super::codes::present(request, &mut outcome.rows);
    Ok(outcome)
}

async fn execute_round(
    sources: &SourceSet,
    request: &ListRequest,
) -> Result<ListOutcome, ListError> {
    let planning = tracing::info_span!(
        "plan",
        entity = request.entity.name,
        sources = tracing::field::Empty
    );
    let mut calls = planning.in_scope(|| plan(sources, request));
    planning.record("sources", calls.len());
    if calls.is_empty() {
        return Err(ListError::NoSource);
    }
    let fingerprint = request.fingerprint();
    let mut starts: BTreeMap<String, SourcePosition> = match &request.cursor {
        Some(state) => state.positions.clone(),
        None => calls
            .iter()
            .map(|c| {
                (
                    c.source.name().to_string(),
                    SourcePosition {
                        cursor: None,
                        skip: 0,
                    },
                )
            })
            .collect(),
    };
    // Sources absent from a cursor were exhausted on an earlier page.
    let mut reports: Vec<SourceReport> = calls
        .iter()
        .filter(|c| !starts.contains_key(c.source.name()))
        .map(|c| SourceReport {
            name: c.source.name().to_string(),
            status: SourceStatus::Skipped,
            latency: Duration::ZERO,
            rows: 0,
            error: None,
        })
        .collect();
    calls.retain(|c| starts.contains_key(c.source.name()));

    let limit = request.limit;
    let mut spans = Vec::with_capacity(calls.len());
    let answers = futures::future::join_all(calls.iter().map(|call| {
        let start = starts
            .get(call.source.name())
            .cloned()
            .unwrap_or(SourcePosition {
                cursor: None,
                skip: 0,
            });
        let span = tracing::info_span!(
            "source",
            source = call.source.name(),
            entity = request.entity.name,
            rows = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        spans.push(span.clone());
        tracing::Instrument::instrument(call_source(call, start, request, limit), span)
    }))
    .await;
    for (span, (_, answer, _)) in spans.iter().zip(&answers) {
        match answer {
            Ok(page) => span.record("rows", page.rows.len()),
            Err(e) => span.record("error", ErrorCode::of(e).as_str()),
        };
    }

    let mut buffers = Vec::new();
    let mut failed_positions = BTreeMap::new();
    for (call, (start, answer, latency)) in calls.iter().zip(answers) {
        let name = call.source.name().to_string();
        match answer {
            Ok(page) => {
                reports.push(SourceReport {
                    name: name.clone(),
                    status: SourceStatus::Ok,
                    latency,
                    rows: page.rows.len(),
                    error: None,
                });
                buffers.push(Buffer::new(call, start.clone(), page));
            }
            Err(error) => {
                let status = SourceStatus::of(&error);
                tracing::warn!(
                    source = %name,
                    code = ErrorCode::of(&error).as_str(),
                    detail = %redact::operator(&error),
                    "source failed"
                );
                reports.push(SourceReport {
                    name: name.clone(),
                    status,
                    latency,
                    rows: 0,
                    error: Some(error),
                });
                // Keep its place: a later page asks it again from there.
                failed_positions.insert(name, start);
            }
        }
    }
    let any_failed = reports.iter().any(|r| r.status.failed());
    if any_failed && (request.strict || (buffers.is_empty() && !calls.is_empty())) {
        return Err(ListError::Failed(reports));
    }

    let rows = tracing::info_span!("merge").in_scope(|| merge(&mut buffers, limit as usize));
    starts.clear();
    for buffer in &buffers {
        if let Some(position) = buffer.position() {
            starts.insert(buffer.call.source.name().to_string(), position);
        }
    }
    starts.extend(failed_positions);
    let next = (!starts.is_empty()).then_some(CursorState {
        fingerprint,
        positions: starts,
    });
    Ok(ListOutcome {
        rows,
        next,
        reports,
    })
}

async fn call_source(
    call: &SourceCall,
    start: SourcePosition,
    request: &ListRequest,
    limit: u32,
) -> (
    SourcePosition,
    Result<lianqiao_host::contract::Page, PluginError>,
    Duration,
) {
    // Rows the gateway filters itself are partly thrown away: ask for more.
    // One row past the limit lets the merge see whether the next row of
    // this source is the same record another source just returned.
    let wanted = if call.residual.is_empty() {
        limit.saturating_add(1)
    } else {
        limit.saturating_mul(4)
    };
    let query = Query {
        entity: request.entity.name.to_string(),
        scope: call.scope.clone(),
        filters: call.pushed.clone(),
        projection: call.projection.clone(),
        limit: wanted.saturating_add(start.skip),
        cursor: start.cursor.clone(),
    };
    let began = Instant::now();
    let answer = call.source.query(query, CallOptions::READ).await;
    (start, answer, began.elapsed())
}
