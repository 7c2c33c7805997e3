//! Fan a list query out to its sources and merge the answers, asking each
//! source for what the merge needs.
//!
//! A region page over a hundred districts needs the rows of the one or
//! two districts whose codes sort first: the merge starts sources in the
//! order of their floor and reads one only when its rows could come next
//! (`merge.rs`). Sources are read in waves (1, 2, 4 … at most
//! `fan_out_at_once` calls at once), a new one asked for its share of the
//! rows still missing, a drained one refilled for what is missing; so a
//! page reads about what it returns, plus a row per source to see past
//! it. The whole request answers by `request_deadline_ms`: a source still
//! out then is reported as timed out and its place kept in the cursor.
//! Requests over more than a few sources take a slot of
//! `max_wide_source_calls` per call, so region queries together cannot
//! take every instance a district user needs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lianqiao_host::PluginError;
use lianqiao_host::contract::Query;

use super::ListRequest;
use super::cursor::{CursorState, SourcePosition};
use super::merge::{Buffer, Lane, LaneState, MergedRow, Stop, merge};
use super::planner::plan;
use crate::error::ErrorCode;
use crate::redact;
pub use crate::sources::report::{SourceReport, SourceStatus};
use crate::sources::{CallOptions, SourceSet, WIDE};

#[derive(Debug)]
pub struct ListOutcome {
    pub rows: Vec<MergedRow>,
    /// Where the next page starts; `None` when every source is exhausted.
    /// Leaves the gateway only sealed (`disclosure::seal`).
    pub next: Option<CursorState>,
    /// The sources asked for this page (one that was not needed is not
    /// named), and any that failed.
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

/// Reads one request may make in all (waves and refills), and of one
/// source: a bound on work for pages the gateway filters itself (a source
/// that cannot push a filter down and holds long runs of rows it rejects).
const MAX_STEPS: usize = 64;
const MAX_CALLS_PER_SOURCE: u32 = 16;

/// Answer a list request: start the sources its page needs, merge, and
/// read on until the page is full, every source is done, or the request's
/// deadline passes.
pub async fn execute(sources: &SourceSet, request: &ListRequest) -> Result<ListOutcome, ListError> {
    let widened = super::codes::widen_filters(request);
    let request = widened.as_ref().unwrap_or(request);
    let calls = tracing::info_span!("plan", entity = request.entity.name)
        .in_scope(|| plan(sources, request));
    if calls.is_empty() {
        return Err(ListError::NoSource);
    }
    let fan_out = &sources.fan_out;
    let deadline = fan_out.deadline();
    let wide = calls.len() > WIDE;
    let _narrow = (!wide).then(|| fan_out.narrow());
    let mut lanes = resume(calls, request.cursor.as_ref());
    let limit = request.limit as usize;
    let mut rows: Vec<MergedRow> = Vec::with_capacity(limit.min(1024));
    let mut wave = 1usize;
    let mut steps = 0;
    loop {
        let stop = tracing::info_span!("merge").in_scope(|| merge(&mut lanes, &mut rows, limit));
        if stop != Stop::Read || steps >= MAX_STEPS {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let picked = pick(&lanes, wave, fan_out.at_once);
        if picked.is_empty() {
            break;
        }
        steps += 1;
        wave = (wave * 2).min(fan_out.at_once);
        let missing = limit.saturating_sub(rows.len()) as u32;
        let new = picked
            .iter()
            .filter(|i| matches!(lanes[**i].state, LaneState::Waiting))
            .count()
            .max(1) as u32;
        let reads = picked.iter().map(|&i| {
            let lane = &lanes[i];
            let (start, wanted) = match &lane.state {
                // A new source's share of what is missing.
                LaneState::Waiting => (
                    SourcePosition {
                        cursor: None,
                        skip: 0,
                    },
                    missing.div_ceil(new),
                ),
                LaneState::At(p) => (p.clone(), missing),
                _ => (
                    SourcePosition {
                        cursor: None,
                        skip: 0,
                    },
                    missing,
                ),
            };
            read(lane, start, wanted, request, deadline, fan_out, wide)
        });
        let answers = futures::future::join_all(reads).await;
        for (i, (start, answer, latency)) in picked.into_iter().zip(answers) {
            let lane = &mut lanes[i];
            lane.calls += 1;
            lane.latency += latency;
            match answer {
                Ok(page) => {
                    lane.rows += page.rows.len();
                    lane.error = None;
                    lane.state = LaneState::Reading(Buffer::new(start, page));
                }
                Err(error) => {
                    tracing::warn!(
                        source = lane.call.source.name(),
                        code = ErrorCode::of(&error).as_str(),
                        detail = %redact::operator(&error),
                        "source failed"
                    );
                    lane.error = Some(error);
                    // Keep its place: a later page asks it again from there.
                    lane.state = LaneState::Failed(start);
                }
            }
        }
    }

    let reports: Vec<SourceReport> = lanes
        .iter()
        .filter(|l| l.calls > 0)
        .map(|l| SourceReport {
            name: l.call.source.name().to_string(),
            status: l.error.as_ref().map_or(SourceStatus::Ok, SourceStatus::of),
            latency: l.latency,
            rows: l.rows,
            error: l.error.clone(),
        })
        .collect();
    let any_failed = reports.iter().any(|r| r.status.failed());
    let any_answered = reports.iter().any(|r| !r.status.failed());
    if any_failed && (request.strict || !any_answered) {
        return Err(ListError::Failed(reports));
    }
    let mut next = cursor(&lanes, request);
    if rows.is_empty() && any_failed {
        // Nothing was consumed: the same request (same cursor) is the retry.
        next = None;
    }
    super::codes::present(request, &mut rows);
    Ok(ListOutcome {
        rows,
        next,
        reports,
    })
}

/// The lanes of `calls` in the order they start, where `cursor` left them.
fn resume(calls: Vec<super::planner::SourceCall>, cursor: Option<&CursorState>) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = calls
        .into_iter()
        .map(|c| Lane::new(c, LaneState::Waiting))
        .collect();
    lanes.sort_by(|a, b| a.order().cmp(&b.order()));
    if let Some(cursor) = cursor {
        for lane in &mut lanes {
            let started = cursor
                .started
                .as_ref()
                .is_none_or(|(floor, name)| lane.order() <= (floor.as_str(), name.as_str()));
            lane.state = match cursor.positions.get(lane.call.source.name()) {
                Some(p) => LaneState::At(p.clone()),
                None if started => LaneState::Done,
                None => LaneState::Waiting,
            };
        }
    }
    lanes
}

/// The lanes to read now: every one waiting for its next page (within
/// `at_once`); then, of those not started, in order: every one whose rows
/// could come before the next buffered row, or — with no row buffered —
/// the next `wave` of them (waves double while sources run dry fast).
fn pick(lanes: &[Lane], wave: usize, at_once: usize) -> Vec<usize> {
    let mut picked: Vec<usize> = lanes
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.state, LaneState::At(_)) && l.calls < MAX_CALLS_PER_SOURCE)
        .map(|(i, _)| i)
        .take(at_once)
        .collect();
    let next_row = lanes
        .iter()
        .filter_map(|l| match &l.state {
            LaneState::Reading(b) => b.key().map(|(division, _)| division),
            _ => None,
        })
        .min();
    let room = at_once.saturating_sub(picked.len());
    let waiting = lanes
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.state, LaneState::Waiting));
    match next_row {
        Some(next) => picked.extend(
            waiting
                .take_while(|(_, l)| l.floor.as_str() <= next)
                .take(room)
                .map(|(i, _)| i),
        ),
        None if picked.is_empty() => picked.extend(waiting.take(room.min(wave)).map(|(i, _)| i)),
        None => {}
    }
    picked
}

/// One read of a source: `wanted` rows from `start` (more when the gateway
/// filters its rows itself), by the request's deadline, in a wide-request
/// slot when the request is wide.
async fn read(
    lane: &Lane,
    start: SourcePosition,
    wanted: u32,
    request: &ListRequest,
    deadline: Option<Instant>,
    fan_out: &crate::sources::FanOut,
    wide: bool,
) -> (
    SourcePosition,
    Result<lianqiao_host::contract::Page, PluginError>,
    Duration,
) {
    let call = &lane.call;
    let wanted = if call.residual.is_empty() {
        wanted.max(1)
    } else {
        wanted.max(1).saturating_mul(4)
    };
    let query = Query {
        entity: request.entity.name.to_string(),
        scope: call.scope.clone(),
        filters: call.pushed.clone(),
        projection: call.projection.clone(),
        // Exactly what is missing: a row read ahead would be read again by
        // the next page (it resumes from this page's start and skips).
        limit: wanted.saturating_add(start.skip),
        cursor: start.cursor.clone(),
    };
    let span = tracing::info_span!(
        "source",
        source = call.source.name(),
        entity = request.entity.name,
        rows = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let began = Instant::now();
    let answer = fan_out
        .call(wide, deadline, call.source.query(query, CallOptions::READ))
        .await;
    match &answer {
        Ok(page) => span.record("rows", page.rows.len()),
        Err(e) => span.record("error", ErrorCode::of(e).as_str()),
    };
    (start, answer, began.elapsed())
}

/// Where the next page starts: the sources mid-way, and the last one
/// started; `None` when every source is done.
fn cursor(lanes: &[Lane], request: &ListRequest) -> Option<CursorState> {
    let positions: BTreeMap<String, SourcePosition> = lanes
        .iter()
        .filter_map(|l| l.position().map(|p| (l.call.source.name().to_string(), p)))
        .collect();
    let waiting = lanes.iter().any(|l| matches!(l.state, LaneState::Waiting));
    if positions.is_empty() && !waiting {
        return None;
    }
    let started = lanes
        .iter()
        .rev()
        .find(|l| !matches!(l.state, LaneState::Waiting))
        .map(|l| (l.floor.clone(), l.call.source.name().to_string()))
        // Nothing started yet: a cursor that starts from the first.
        .or_else(|| Some((String::new(), String::new())));
    Some(CursorState {
        fingerprint: request.fingerprint(),
        positions,
        started,
    })
}
