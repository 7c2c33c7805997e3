//! Loop statistics beyond counts (`/v1/stats?metric=cases.<measure>`):
//! how long cases take to resolve (opened → the `feedback` step), the share
//! resolved by their due time, and the reporters' satisfaction. Durations
//! and satisfaction are not personal, so the gateway computes them from
//! per-case values it reads for itself; only the aggregates leave, through
//! the disclosure gate (`disclosure::counts`), and only for cells of at
//! least the protection threshold.

use std::collections::BTreeMap;

use lianqiao_host::contract::{FilterOp, Value, record_key};

use super::executor::{self, ListError};
use super::stats::{StatsCell, StatsOutcome, StatsRequest};
use super::{FieldFilter, ListRequest};
use crate::model;

/// A measure of the cases behind each cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Median hours from `opened_at` to the case's `feedback` step.
    ResolveHours,
    /// Share of resolved cases whose `feedback` came by `due_at` (cases
    /// without a due time are left out).
    OnTime,
    /// Mean satisfaction (1–5) of evaluated cases.
    Satisfaction,
}

impl Measure {
    pub const ALL: [Measure; 3] = [
        Measure::ResolveHours,
        Measure::OnTime,
        Measure::Satisfaction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Measure::ResolveHours => "resolve_hours",
            Measure::OnTime => "on_time",
            Measure::Satisfaction => "satisfaction",
        }
    }

    pub fn parse(name: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn doc(self) -> &'static str {
        match self {
            Measure::ResolveHours => {
                "median hours from a case's opening to its `feedback` step (resolved cases)"
            }
            Measure::OnTime => "share (0–1) of resolved cases with a due time resolved by it",
            Measure::Satisfaction => "mean satisfaction (1–5) of evaluated cases",
        }
    }
}

/// States at or past `feedback`: resolved.
const RESOLVED: &[&str] = &["feedback", "evaluated", "closed"];

/// (division group, key text) of a cell, as `StatsCell`s are keyed.
pub type CellKey = (Option<String>, Option<String>);

/// The counts of the cases each measure was taken over (for the gate), and
/// the measure of each cell.
pub struct Measured {
    pub counts: StatsOutcome,
    pub values: BTreeMap<CellKey, f64>,
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-03T10:00:00.5+08:00`).
pub fn epoch_seconds(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = t.get(19..)?;
    let mut fraction = 0.0;
    if let Some(f) = rest.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        fraction = format!("0.{}", &f[..n]).parse().ok()?;
        rest = &f[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600
                + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss - offset) as f64 + fraction)
}

fn text(row: &super::merge::MergedRow, name: &str) -> Option<String> {
    row.cells
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| match v {
            Value::Text(t) | Value::Timestamp(t) | Value::Date(t) => Some(t.clone()),
            _ => None,
        })
}

/// Every row of `request`, page after page (at most `max` rows).
async fn all_rows(
    sources: &crate::sources::SourceSet,
    mut request: ListRequest,
    max: usize,
) -> Result<(Vec<super::merge::MergedRow>, Vec<super::SourceReport>), ListError> {
    let mut rows = Vec::new();
    loop {
        let outcome = executor::execute(sources, &request).await?;
        rows.extend(outcome.rows);
        match outcome.next {
            Some(next) if rows.len() < max => request.cursor = Some(next),
            // The last page's reports say what each source did overall.
            _ => return Ok((rows, outcome.reports)),
        }
    }
}

/// Most cases read for one statistic (far above a city's yearly case
/// load); a measure over more is taken over the first this-many in
/// (division, id) order.
const MAX_CASES: usize = 200_000;

/// The measure of `request`'s cases, per cell.
pub async fn measure(
    sources: &crate::sources::SourceSet,
    request: &StatsRequest,
    measure: Measure,
) -> Result<Measured, ListError> {
    let cases = &model::CASES;
    let mut fields = vec![
        "id",
        "division",
        "state",
        "opened_at",
        "due_at",
        "satisfaction",
    ];
    if let Some(by) = request.by
        && !fields.contains(&by.name)
    {
        fields.push(by.name);
    }
    let mut filters = request.filters.clone();
    if let Some(state) = cases.field("state") {
        let states: &[&str] = match measure {
            Measure::Satisfaction => &["evaluated", "closed"],
            _ => RESOLVED,
        };
        filters.push(FieldFilter {
            field: state,
            op: FilterOp::OneOf,
            values: states.iter().map(|s| Value::Text((*s).into())).collect(),
        });
    }
    let list = ListRequest {
        entity: cases,
        scope: request.scope.clone(),
        filters,
        projection: fields.clone(),
        output: fields,
        limit: 1000,
        cursor: None,
        strict: request.strict,
    };
    let (rows, mut reports) = all_rows(sources, list, MAX_CASES).await?;
    // When each resolved case reached `feedback`, from its steps.
    let mut resolved_at: BTreeMap<String, f64> = BTreeMap::new();
    if measure != Measure::Satisfaction && !rows.is_empty() {
        let steps = &model::CASE_STEPS;
        let step_fields = vec!["id", "division", "case_id", "state", "at"];
        let list = ListRequest {
            entity: steps,
            scope: request.scope.clone(),
            filters: steps
                .field("state")
                .map(|f| FieldFilter {
                    field: f,
                    op: FilterOp::Eq,
                    values: vec![Value::Text("feedback".into())],
                })
                .into_iter()
                .collect(),
            projection: step_fields.clone(),
            output: step_fields,
            limit: 1000,
            cursor: None,
            strict: request.strict,
        };
        let (steps, step_reports) = all_rows(sources, list, MAX_CASES).await?;
        reports.extend(step_reports);
        for step in steps {
            if let (Some(case), Some(at)) = (
                text(&step, "case_id"),
                text(&step, "at").and_then(|t| epoch_seconds(&t)),
            ) {
                let first = resolved_at.entry(case).or_insert(at);
                *first = first.min(at);
            }
        }
    }
    // Per cell: the per-case values, and the digest of the cases measured
    // (their record keys' sum: the gate draws the count's noise from it).
    let mut samples: BTreeMap<CellKey, (Option<Value>, Vec<f64>, u64)> = BTreeMap::new();
    for row in &rows {
        let sample = match measure {
            Measure::Satisfaction => row.cells.iter().find_map(|(n, v)| match (n.as_str(), v) {
                ("satisfaction", Value::Integer(s)) if (1..=5).contains(s) => Some(*s as f64),
                _ => None,
            }),
            Measure::ResolveHours => {
                let opened = text(row, "opened_at").and_then(|t| epoch_seconds(&t));
                match (opened, resolved_at.get(&row.id)) {
                    (Some(o), Some(r)) if *r >= o => Some((r - o) / 3600.0),
                    _ => None,
                }
            }
            Measure::OnTime => {
                let due = text(row, "due_at").and_then(|t| epoch_seconds(&t));
                match (due, resolved_at.get(&row.id)) {
                    (Some(due), Some(r)) => Some(if *r <= due { 1.0 } else { 0.0 }),
                    _ => None,
                }
            }
        };
        let Some(sample) = sample else { continue };
        let group = request
            .division_prefix
            .map(|n| row.division.chars().take(n as usize).collect::<String>());
        let key = request.by.map(|by| {
            row.cells
                .iter()
                .find(|(n, _)| n == by.name)
                .map(|(_, v)| v.clone())
                .unwrap_or(Value::Null)
        });
        let key_text = match &key {
            None | Some(Value::Null) => None,
            Some(Value::Text(t)) => Some(t.clone()),
            Some(other) => Some(format!("{other:?}")),
        };
        let cell = samples
            .entry((group, key_text))
            .or_insert((key, Vec::new(), 0));
        cell.1.push(sample);
        cell.2 = cell.2.wrapping_add(u64::from(record_key(&row.id)));
    }
    let mut cells = Vec::with_capacity(samples.len());
    let mut values = BTreeMap::new();
    for (cell, (key, mut xs, digest)) in samples {
        let value = match measure {
            Measure::ResolveHours => {
                xs.sort_by(f64::total_cmp);
                let mid = xs.len() / 2;
                if xs.len() % 2 == 1 {
                    xs[mid]
                } else {
                    (xs[mid - 1] + xs[mid]) / 2.0
                }
            }
            Measure::OnTime | Measure::Satisfaction => xs.iter().sum::<f64>() / xs.len() as f64,
        };
        cells.push(StatsCell {
            division: cell.0.clone(),
            key,
            count: xs.len() as i64,
            digest: Some(digest),
        });
        values.insert(cell, value);
    }
    Ok(Measured {
        counts: StatsOutcome { cells, reports },
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_become_epoch_seconds() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(epoch_seconds("1970-01-01T08:00:00+08:00"), Some(0.0));
        assert_eq!(epoch_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(
            epoch_seconds("2026-12-03T10:00:00.500+08:00"),
            Some(1_796_263_200.5)
        );
        for bad in [
            "",
            "2026-12-03",
            "2026-12-03T10:00:00",
            "2026-12-03T10:00:00+0800x",
        ] {
            assert_eq!(epoch_seconds(bad), None, "{bad}");
        }
    }
}
