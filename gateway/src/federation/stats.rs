//! Counts across sources: pushed down as one GROUP BY to every source that
//! can count, computed in the gateway (by paging rows) only for the others.
//!
//! Each cell can also say which records it counts: its record digest, the
//! sum of the records' keys (contract 0.3). Protected counts need it (their
//! noise is drawn from it); a source whose plugin counts without digests
//! (contract 0.1, 0.2) is then counted by paging its records' ids.

use std::collections::BTreeMap;
use std::time::Instant;

use lianqiao_host::PluginError;
use lianqiao_host::contract::{AggregateQuery, Query, Value, record_key};

use super::executor::{ListError, SourceReport, SourceStatus};
use super::planner::{SourceCall, plan};
use super::{FieldFilter, ListRequest, filter};
use crate::model::{Entity, Field};
use crate::sources::{CallOptions, SourceSet};

/// Rows the gateway will page through for one source that cannot count.
const MAX_FALLBACK_ROWS: usize = 2_000_000;

#[derive(Debug, Clone)]
pub struct StatsRequest {
    pub entity: &'static Entity,
    pub scope: Vec<String>,
    pub filters: Vec<FieldFilter>,
    /// Group by this many leading characters of `division`.
    pub division_prefix: Option<u32>,
    pub by: Option<&'static Field>,
    pub strict: bool,
    /// A measure of the cases counted (`metric=cases.<measure>`), or none
    /// for a plain count.
    pub measure: Option<super::measures::Measure>,
    /// Every cell must carry its record digest (protected counts).
    pub records: bool,
}

/// Counts and record digests summed per (division group, key), in a
/// stable order.
#[derive(Default)]
struct Tally(BTreeMap<GroupKey, (Option<Value>, i64, Option<u64>)>);

/// A group: division prefix and the debug text of the `by` value.
type GroupKey = (Option<String>, Option<String>);

impl Tally {
    /// Add a source's cell; the digest is unknown once any part's is.
    fn add(
        &mut self,
        division: Option<String>,
        key: Option<Value>,
        count: i64,
        digest: Option<u64>,
    ) {
        // Values have no total order; their debug text is a faithful key.
        let key_text = key.as_ref().map(|k| format!("{k:?}"));
        let cell = self
            .0
            .entry((division, key_text))
            .or_insert((key, 0, Some(0)));
        cell.1 += count;
        cell.2 = cell.2.zip(digest).map(|(a, b)| a.wrapping_add(b));
    }

    fn into_cells(self) -> Vec<StatsCell> {
        self.0
            .into_iter()
            .map(|((division, _), (key, count, digest))| StatsCell {
                division,
                key,
                count,
                digest,
            })
            .collect()
    }
}

/// One group: its division prefix, its `by` value, the count, and the
/// sum of the counted records' keys when every source said it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsCell {
    pub division: Option<String>,
    pub key: Option<Value>,
    pub count: i64,
    pub digest: Option<u64>,
}

#[derive(Debug)]
pub struct StatsOutcome {
    pub cells: Vec<StatsCell>,
    pub reports: Vec<SourceReport>,
}

pub async fn stats(sources: &SourceSet, request: &StatsRequest) -> Result<StatsOutcome, ListError> {
    let mut projection = vec!["id", "division"];
    if let Some(by) = request.by {
        projection.push(by.name);
    }
    projection.extend(request.filters.iter().map(|f| f.field.name));
    projection.dedup();
    let planned = ListRequest {
        entity: request.entity,
        scope: request.scope.clone(),
        filters: request.filters.clone(),
        projection: projection.clone(),
        output: projection,
        limit: 1,
        cursor: None,
        strict: request.strict,
    };
    let calls = tracing::info_span!("plan", entity = request.entity.name)
        .in_scope(|| plan(sources, &planned));
    if calls.is_empty() {
        return Err(ListError::NoSource);
    }
    // Every source counts at once, but a region's hundred districts take
    // wide-request slots, and the whole count answers by the deadline.
    let fan_out = &sources.fan_out;
    let deadline = fan_out.deadline();
    let wide = calls.len() > crate::sources::WIDE;
    let _narrow = (!wide).then(|| fan_out.narrow());
    let answers = futures::future::join_all(calls.iter().map(|call| async move {
        let began = Instant::now();
        let answer = fan_out
            .call(wide, deadline, count_source(call, request))
            .await;
        (answer, began.elapsed())
    }))
    .await;

    let mut totals = Tally::default();
    let mut reports = Vec::new();
    for (call, (answer, latency)) in calls.iter().zip(answers) {
        let name = call.source.name().to_string();
        match answer {
            Ok(cells) => {
                reports.push(SourceReport {
                    name,
                    status: SourceStatus::Ok,
                    latency,
                    rows: cells.len(),
                    error: None,
                });
                for cell in cells {
                    totals.add(cell.division, cell.key, cell.count, cell.digest);
                }
            }
            Err(error) => {
                let status = SourceStatus::of(&error);
                reports.push(SourceReport {
                    name,
                    status,
                    latency,
                    rows: 0,
                    error: Some(error),
                });
            }
        }
    }
    let failed = reports.iter().any(|r| r.status.failed());
    if failed && (request.strict || reports.iter().all(|r| r.status.failed())) {
        return Err(ListError::Failed(reports));
    }
    let cells = totals.into_cells();
    Ok(StatsOutcome { cells, reports })
}

async fn count_source(
    call: &SourceCall,
    request: &StatsRequest,
) -> Result<Vec<StatsCell>, PluginError> {
    let plugin = &call.source.plugin;
    let can_count = plugin
        .manifest()
        .entities
        .iter()
        .any(|e| e.name == request.entity.name && e.aggregates)
        && (plugin.counts_records() || !request.records);
    if can_count && call.residual.is_empty() {
        let query = AggregateQuery {
            entity: request.entity.name.to_string(),
            scope: call.scope.clone(),
            filters: call.pushed.clone(),
            division_prefix: request.division_prefix,
            by: request.by.map(|f| f.name.to_string()),
        };
        call.source
            .aggregate(query, request.records, CallOptions::READ)
            .await
            .map(|cells| {
                cells
                    .into_iter()
                    .map(|c| StatsCell {
                        division: c.division,
                        key: c.key,
                        count: c.count,
                        digest: c.digest,
                    })
                    .collect()
            })
    } else {
        count_by_paging(call, request).await
    }
}

/// The fallback: page through the source's rows and count them here.
async fn count_by_paging(
    call: &SourceCall,
    request: &StatsRequest,
) -> Result<Vec<StatsCell>, PluginError> {
    let plugin = &call.source.plugin;
    let mut counts = Tally::default();
    let mut cursor = None;
    let mut seen = 0usize;
    loop {
        let query = Query {
            entity: request.entity.name.to_string(),
            scope: call.scope.clone(),
            filters: call.pushed.clone(),
            projection: call.projection.clone(),
            limit: plugin.limits().max_rows,
            cursor: cursor.take(),
        };
        let page = call.source.query(query, CallOptions::READ).await?;
        let col = |name: &str| page.columns.iter().position(|c| c == name);
        let (division_col, by_col) = (col("division"), request.by.and_then(|b| col(b.name)));
        let id_col = col("id");
        for row in &page.rows {
            let cell = |name: &str| col(name).and_then(|i| row.get(i));
            if !call
                .residual
                .iter()
                .all(|f| filter::matches(f, cell(f.field.name)))
            {
                continue;
            }
            let division = match (
                request.division_prefix,
                division_col.and_then(|i| row.get(i)),
            ) {
                (Some(n), Some(Value::Text(d))) => Some(d.chars().take(n as usize).collect()),
                _ => None,
            };
            let key = by_col.and_then(|i| row.get(i)).cloned();
            // The plugin checked every row has a text `id` (check_page).
            let digest = match id_col.and_then(|i| row.get(i)) {
                Some(Value::Text(id)) => Some(u64::from(record_key(id))),
                _ => None,
            };
            counts.add(division, key, 1, digest);
        }
        seen += page.rows.len();
        if seen > MAX_FALLBACK_ROWS {
            return Err(PluginError::Contract(
                lianqiao_host::Violation::TooManyRowsToCount {
                    limit: MAX_FALLBACK_ROWS,
                },
            ));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(counts.into_cells())
}
