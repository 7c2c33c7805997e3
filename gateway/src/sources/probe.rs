//! `lianqiao check --probe`: ask every source for a bounded sample of each
//! entity it serves and hold what comes back against the unified model,
//! so a broken mapping fails at integration time, not at request time.
//!
//! What a probe finds: a mapping that does not run (a missing table or a
//! misspelt column surfaces as the source's own error), cells of the wrong
//! kind, values outside an enumerated field's set (a typo served as
//! `"tier":"tiny"` that `tier=micro` would never find), duplicate ids,
//! division codes that are not unified codes (letters in a local grid
//! code), parents that are not codes, and anything the plugin contract
//! refuses (rows outside the scope, out of order).

use std::collections::{BTreeMap, HashSet};

use lianqiao_host::contract::{Query, Value, ValueKind};
use lianqiao_policy::division::{self, CONVENTION};

use super::Source;
use crate::model::{self, kind_name};
use crate::redact::mask_text;

/// What one probe of one source found.
#[derive(Debug, Default)]
pub struct Report {
    /// (entity, rows sampled) for entities that answered.
    pub sampled: Vec<(String, usize)>,
    /// Problems, each with its count and a first example.
    pub problems: Vec<String>,
    /// What the database's plan for a page says will be slow (a full scan,
    /// a sort of the whole scope): not a failure, but worth an index.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Problems of one kind, counted, with the first example kept.
#[derive(Default)]
struct Tally(BTreeMap<String, (usize, String)>);

impl Tally {
    fn add(&mut self, problem: String, example: impl FnOnce() -> String) {
        let entry = self.0.entry(problem).or_insert_with(|| (0, example()));
        entry.0 += 1;
    }

    fn into_lines(self, entity: &str) -> impl Iterator<Item = String> {
        let entity = entity.to_string();
        self.0.into_iter().map(move |(problem, (n, example))| {
            format!("{entity}: {problem} ({n} of the sampled rows; first: {example})")
        })
    }
}

/// The kind of a cell (`None` for null).
pub(crate) fn kind_of(value: &Value) -> Option<ValueKind> {
    Some(match value {
        Value::Null => return None,
        Value::Boolean(_) => ValueKind::Boolean,
        Value::Integer(_) => ValueKind::Integer,
        Value::Float(_) => ValueKind::Float,
        Value::Text(_) => ValueKind::Text,
        Value::Date(_) => ValueKind::Date,
        Value::Timestamp(_) => ValueKind::Timestamp,
    })
}

/// `YYYY-MM-DD`.
fn is_iso_date(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// `YYYY-MM-DDTHH:MM:SS…`.
fn is_iso_timestamp(t: &str) -> bool {
    t.len() >= 19 && t.is_char_boundary(10) && is_iso_date(&t[..10]) && t.as_bytes()[10] == b'T'
}

/// Whether a cell of kind `got` can stand for the model's `want` (an
/// integer is a float without a fraction; dates and timestamps must be in
/// their ISO form, whether the plugin typed them or sent text: a plugin
/// passes a database's text through as a date unchecked).
fn fits(want: ValueKind, got: ValueKind, value: &Value) -> bool {
    match (want, value) {
        (ValueKind::Date, Value::Date(t) | Value::Text(t)) => return is_iso_date(t),
        (ValueKind::Timestamp, Value::Timestamp(t) | Value::Text(t)) => {
            return is_iso_timestamp(t);
        }
        _ => {}
    }
    match (want, got) {
        (w, g) if w == g => true,
        (ValueKind::Float, ValueKind::Integer) => true,
        _ => false,
    }
}

/// Probe `source`: up to `sample` rows of each entity it serves, from its
/// whole coverage.
pub async fn probe(source: &Source, sample: u32) -> Report {
    let mut report = Report::default();
    let manifest = source.plugin.manifest().clone();
    for served in &manifest.entities {
        let Some(entity) = model::entity(&served.name) else {
            continue;
        };
        let projection: Vec<String> = served
            .fields
            .iter()
            .filter(|f| entity.field(&f.name).is_some())
            .map(|f| f.name.clone())
            .collect();
        let query = Query {
            entity: served.name.clone(),
            scope: source.config.coverage.clone(),
            filters: vec![],
            projection,
            limit: sample,
            cursor: None,
        };
        let page = match source.plugin.query(query).await {
            Ok(page) => page,
            Err(e) => {
                report.problems.push(format!(
                    "{}: the mapping does not run: {}",
                    served.name,
                    crate::redact::operator(&e)
                ));
                continue;
            }
        };
        let mut tally = Tally::default();
        let mut ids = HashSet::new();
        let column = |name: &str| page.columns.iter().position(|c| c == name);
        let (id_at, division_at) = (column("id"), column("division"));
        for row in &page.rows {
            let id = match id_at.and_then(|i| row.get(i)) {
                Some(Value::Text(t)) => t.as_str(),
                _ => "",
            };
            // Examples name the row by its id, masked as the operator's
            // log masks it (a member's id may be an ID number).
            let row_id = || mask_text(id);
            if !ids.insert(id) {
                tally.add("`id` is not unique".into(), || format!("id `{}`", row_id()));
            }
            for (name, value) in page.columns.iter().zip(row) {
                let Some(field) = entity.field(name) else {
                    continue;
                };
                if let Some(got) = kind_of(value)
                    && !fits(field.kind, got, value)
                {
                    tally.add(
                        format!(
                            "`{name}` is {} in the model but the mapping gives {}",
                            kind_name(field.kind),
                            kind_name(got)
                        ),
                        || format!("row `{}`", row_id()),
                    );
                }
                if let Value::Text(text) = value
                    && !field.values.is_empty()
                    && !field.values.contains(&text.as_str())
                {
                    tally.add(
                        format!(
                            "`{name}` = `{text}` is not a value of the model ({})",
                            field.values.join(", ")
                        ),
                        || format!("row `{}`", row_id()),
                    );
                }
            }
            if let Some(Value::Text(code)) = division_at.and_then(|i| row.get(i))
                && division::level_of(code).is_none()
            {
                tally.add(
                    format!("`division` is not a unified division code: {CONVENTION}"),
                    || format!("row `{}`, division `{code}`", row_id()),
                );
            }
            if served.name == model::DIVISIONS.name
                && let Some(Value::Text(parent)) = column("parent").and_then(|i| row.get(i))
                && division::level_of(division::canonical(parent)).is_none()
            {
                tally.add(
                    format!("`parent` is not a unified division code: {CONVENTION}"),
                    || format!("row `{}`, parent `{parent}`", row_id()),
                );
            }
        }
        // A parent inside the coverage must be a division the source lists
        // (checkable when the sample holds them all: the hierarchy would
        // otherwise have holes that `parent=` finds nothing under).
        if served.name == model::DIVISIONS.name
            && page.next_cursor.is_none()
            && let (Some(p), Some(d)) = (column("parent"), division_at)
        {
            let listed: HashSet<&str> = page
                .rows
                .iter()
                .filter_map(|r| match r.get(d) {
                    Some(Value::Text(code)) => Some(code.as_str()),
                    _ => None,
                })
                .collect();
            for row in &page.rows {
                if let Some(Value::Text(parent)) = row.get(p)
                    && division::level_of(parent).is_some()
                    && source
                        .config
                        .coverage
                        .iter()
                        .any(|c| parent.starts_with(c.as_str()))
                    && !listed.contains(parent.as_str())
                {
                    tally.add(
                        "`parent` names a division inside the coverage that the source does not list".into(),
                        || format!("parent `{parent}`"),
                    );
                }
            }
        }
        report.problems.extend(tally.into_lines(&served.name));
        report.sampled.push((served.name.clone(), page.rows.len()));
        if let Some((_, Ok(plan))) = source.plugin.explain_last_statement().await {
            report.warnings.extend(
                plan_warnings(&plan)
                    .into_iter()
                    .map(|w| format!("{}: {w}", served.name)),
            );
        }
    }
    report
}

/// `file:line: line` for a report line that starts with an entity's name
/// (`grids: …`): the line of the file that declares that entity's mapping
/// (`[plugin.settings.entities.grids]`), when the file has one; else
/// `file: line`.
pub fn located(file: &std::path::Path, line: &str) -> String {
    let entity = line.split(':').next().unwrap_or_default();
    let header = format!("[plugin.settings.entities.{entity}]");
    let at = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.lines().position(|l| l.trim() == header).map(|i| i + 1));
    match at {
        Some(n) => format!("{}:{n}: {line}", file.display()),
        None => format!("{}: {line}", file.display()),
    }
}

/// What a page statement's plan (as `SqlPool::explain` gives it, one line
/// per node) says will be slow as the district grows: a table read in full
/// for every page, or the whole scope sorted for every page. The three
/// databases say it their own way.
pub fn plan_warnings(plan: &[String]) -> Vec<String> {
    const FIX: &str = "index the columns behind `division` and `id`, without functions on them (docs/district-sql.md, what makes a mapping fast)";
    let mut out = Vec::new();
    let full_scan = plan.iter().find(|line| {
        let l = line.trim();
        (l.starts_with("SCAN ") && !l.contains(" USING ")) // SQLite
            || l.contains("Seq Scan on ") // PostgreSQL
            || l.contains("type=ALL") // MariaDB
    });
    if let Some(line) = full_scan {
        out.push(format!(
            "each page reads a table in full (`{}`): {FIX}",
            line.trim().trim_start_matches("->").trim()
        ));
    }
    let sort = plan.iter().find(|line| {
        let l = line.trim().trim_start_matches("->").trim();
        l.contains("TEMP B-TREE FOR ORDER BY")
            || l.starts_with("Sort ")
            || l.starts_with("Incremental Sort")
            || l.contains("Using filesort")
    });
    if let Some(line) = sort {
        out.push(format!(
            "each page sorts the whole scope (`{}`): {FIX}",
            line.trim().trim_start_matches("->").trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_that_scan_or_sort_are_warned_in_each_dialect() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let sqlite = plan_warnings(&lines(&["SCAN g", "USE TEMP B-TREE FOR ORDER BY"]));
        assert_eq!(sqlite.len(), 2, "{sqlite:?}");
        assert!(sqlite[0].contains("reads a table in full (`SCAN g`)"));
        assert!(
            plan_warnings(&lines(&[
                "SEARCH g USING INDEX grid_division (division>? AND division<?)"
            ]))
            .is_empty()
        );
        let pg = plan_warnings(&lines(&[
            "Limit  (cost=1.2..1.3 rows=5 width=8)",
            "  ->  Sort  (cost=1.2..1.3 rows=9 width=8)",
            "        ->  Seq Scan on grid g  (cost=0.00..1.09 rows=9 width=8)",
        ]));
        assert_eq!(pg.len(), 2, "{pg:?}");
        let maria = plan_warnings(&lines(&[
            "table=g type=ALL key= Extra=Using where; Using filesort",
        ]));
        assert_eq!(maria.len(), 2, "{maria:?}");
        assert!(
            plan_warnings(&lines(&[
                "table=g type=range key=grid_code Extra=Using where"
            ]))
            .is_empty()
        );
    }

    #[test]
    fn kinds_fit_the_model_with_iso_text_for_dates() {
        let date = Value::Text("2021-07-01".into());
        assert!(fits(ValueKind::Date, ValueKind::Text, &date));
        assert!(!fits(
            ValueKind::Date,
            ValueKind::Text,
            &Value::Text("July".into())
        ));
        // Typed as a date by the plugin, but not one.
        assert!(!fits(
            ValueKind::Date,
            ValueKind::Date,
            &Value::Date("2021年7月1日".into())
        ));
        assert!(fits(
            ValueKind::Timestamp,
            ValueKind::Timestamp,
            &Value::Timestamp("2021-07-01T08:00:00+08:00".into())
        ));
        assert!(!fits(
            ValueKind::Timestamp,
            ValueKind::Timestamp,
            &Value::Timestamp("2021-07-01 08:00".into())
        ));
        assert!(fits(
            ValueKind::Float,
            ValueKind::Integer,
            &Value::Integer(3)
        ));
        assert!(!fits(
            ValueKind::Integer,
            ValueKind::Text,
            &Value::Text("3".into())
        ));
    }
}
