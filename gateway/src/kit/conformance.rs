//! `lianqiao plugin test <plugin.wasm> --source <file>`: the plugin
//! contract's MUSTs (docs/plugin-contract.md) run against the real source
//! behind a plugin, each failure saying what to fix.
//!
//! The host already refuses a page that breaks the contract on its own
//! (more rows than the limit, a row outside the scope, rows out of order,
//! a wrong kind in `id`/`division`); the kit adds what only several calls
//! can show: that paging is complete, ordered and stable across pages,
//! that a narrower scope returns exactly the rows under it, that declared
//! filters are really applied, that projections and kinds hold for every
//! field, that counts agree with rows, and that errors are the right
//! variants.

use std::collections::HashSet;

use lianqiao_host::PluginError;
use lianqiao_host::contract::{
    AggregateQuery, EntitySpec, Filter, FilterOp, Page, Query, SourceError, Value,
};
use lianqiao_policy::division;

use crate::redact::mask_text;
use crate::sources::Source;
use crate::sources::probe::kind_of;

/// Rows read per entity at most (the walk stops there; checks that need the
/// whole entity are then made on what was read).
const MAX_ROWS: usize = 5000;

/// What the kit found for one source.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per check that passed: `entity: what`.
    pub passed: Vec<String>,
    /// One line per failure: `entity: what broke — what to fix`.
    pub failed: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    fn check(&mut self, entity: &str, what: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed.push(format!("{entity}: {what}")),
            Err(why) => self.failed.push(format!("{entity}: {what}: {why}")),
        }
    }
}

/// One row as read: its position and every cell by column.
#[derive(Clone, Debug)]
struct Row {
    division: String,
    id: String,
    cells: Vec<(String, Value)>,
}

impl Row {
    fn key(&self) -> (String, String) {
        (self.division.clone(), self.id.clone())
    }

    /// The row as a message shows it: its division, and its id masked as
    /// the operator's log masks free text (a member's id may be an ID
    /// number).
    fn shown(&self) -> String {
        shown(&self.key())
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.cells.iter().find(|(c, _)| c == field).map(|(_, v)| v)
    }
}

fn shown(key: &(String, String)) -> String {
    format!("({}, {})", key.0, mask_text(&key.1))
}

/// A cell as a message shows it (masked like free text).
fn shown_value(value: &Value) -> String {
    mask_text(&format!("{value:?}"))
}

fn rows_of(page: &Page) -> Result<Vec<Row>, String> {
    let at = |name: &str| {
        page.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| format!("the page has no `{name}` column"))
    };
    let (d, i) = (at("division")?, at("id")?);
    page.rows
        .iter()
        .map(|r| {
            let text = |k: usize| match r.get(k) {
                Some(Value::Text(s)) => Ok(s.clone()),
                Some(other) => Err(format!(
                    "`{}` is {}, not text",
                    page.columns[k],
                    shown_value(other)
                )),
                None => Err(format!("a row has no `{}` cell", page.columns[k])),
            };
            Ok(Row {
                division: text(d)?,
                id: text(i)?,
                cells: page
                    .columns
                    .iter()
                    .cloned()
                    .zip(r.iter().cloned())
                    .collect(),
            })
        })
        .collect()
}

fn describe(e: &PluginError) -> String {
    format!("{e}")
}

fn query(entity: &EntitySpec, scope: &[String], limit: u32, cursor: Option<String>) -> Query {
    Query {
        entity: entity.name.clone(),
        scope: scope.to_vec(),
        filters: vec![],
        projection: entity.fields.iter().map(|f| f.name.clone()).collect(),
        limit,
        cursor,
    }
}

/// Pages through `q` with its limit; the rows, whether the walk reached
/// the end, and the cursors met (with the first row each returned).
async fn walk(source: &Source, mut q: Query, max_pages: usize) -> Result<Walk, String> {
    let mut out = Walk::default();
    for _ in 0..max_pages {
        let page = source.plugin.query(q.clone()).await.map_err(|e| {
            format!(
                "{} (page {} of a walk with limit {})",
                describe(&e),
                out.pages + 1,
                q.limit
            )
        })?;
        out.pages += 1;
        let rows = rows_of(&page)?;
        if let (Some(cursor), Some(first)) = (&q.cursor, rows.first()) {
            out.cursors.push((cursor.clone(), first.key()));
        }
        out.rows.extend(rows);
        match page.next_cursor {
            Some(next) if out.rows.len() < MAX_ROWS => q.cursor = Some(next),
            Some(_) => return Ok(out),
            None => {
                out.complete = true;
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Walk {
    rows: Vec<Row>,
    complete: bool,
    pages: usize,
    cursors: Vec<(String, (String, String))>,
}

/// A scope one level below the source's coverage that holds rows: the
/// prefix of a row's division at the next level's length.
fn narrower_scope(coverage: &[String], rows: &[Row]) -> Option<String> {
    let row = rows.get(rows.len() / 2)?;
    let cover = coverage
        .iter()
        .find(|c| row.division.starts_with(c.as_str()))?;
    [2usize, 4, 6, 9, 12, 14, 16, 18]
        .into_iter()
        .find(|n| *n > cover.len() && *n <= row.division.len())
        .map(|n| row.division[..n].to_string())
        .filter(|s| division::level_of(s).is_some())
}

/// Runs every check against `source`'s plugin.
pub async fn run(source: &Source) -> Report {
    let mut report = Report::default();
    let manifest = source.plugin.manifest().clone();
    let coverage = source.config.coverage.clone();
    report.check(
        "manifest",
        "serves unified resources with the model's kinds",
        manifest_fits_model(&manifest.entities),
    );
    for entity in &manifest.entities {
        check_entity(source, entity, &coverage, &mut report).await;
    }
    // Errors: what the gateway maps to 400 and to a client's retry.
    let Some(entity) = manifest.entities.first() else {
        return report;
    };
    let mut unknown = query(entity, &coverage, 10, None);
    unknown.entity = "no-such-resource".into();
    unknown.projection = vec!["id".into(), "division".into()];
    report.check(
        "errors",
        "an entity it does not serve is `unsupported`",
        match source.plugin.query(unknown).await {
            Err(PluginError::Source(SourceError::Unsupported(_))) => Ok(()),
            other => Err(format!(
                "got {}; answer `source-error::unsupported` for an entity the manifest does not declare",
                outcome(&other)
            )),
        },
    );
    let garbage = query(
        entity,
        &coverage,
        10,
        Some("not-a-cursor-of-this-plugin".into()),
    );
    report.check(
        "errors",
        "a cursor it did not make is `bad-cursor`",
        match source.plugin.query(garbage).await {
            Err(PluginError::Source(SourceError::BadCursor(_))) => Ok(()),
            other => Err(format!(
                "got {}; decode cursors strictly and answer `source-error::bad-cursor` (the gateway answers 400 invalid_cursor)",
                outcome(&other)
            )),
        },
    );
    check_commands(source, &coverage, &mut report).await;
    report
}

/// Writes (contract 0.2), checked without writing: a move of a case that
/// does not exist must be refused and change nothing. A plugin that takes
/// no commands (contract 0.1, or none configured) is noted, not failed.
async fn check_commands(source: &Source, coverage: &[String], report: &mut Report) {
    use lianqiao_host::contract::{Command, CommandError, Step, Transition};
    if !source.plugin.takes_commands() {
        report
            .passed
            .push("commands: takes none (reads only; contract 0.1 or no `command` export)".into());
        return;
    }
    let id = format!("lianqiao-conformance-{}", std::process::id());
    let division = coverage.first().cloned().unwrap_or_default();
    let command = Command::TransitionCase(Transition {
        id: id.clone(),
        division: division.clone(),
        from_state: "assessed".into(),
        from_loop: "grid".into(),
        to_state: "accepted".into(),
        to_loop: "grid".into(),
        step: Step {
            id: format!("{id}.1"),
            state: "accepted".into(),
            case_loop: "grid".into(),
            at: "2000-01-01T00:00:00.000+08:00".into(),
            by_level: "grid".into(),
            note: Some("lianqiao plugin test: this case does not exist".into()),
        },
        satisfaction: None,
        linked_case: None,
    });
    report.check(
        "commands",
        "a move of a case that does not exist is refused (`conflict`, `not-found` or `unsupported`) and changes nothing",
        match source.plugin.command(command, format!("{id}-key")).await {
            Err(PluginError::Command(
                CommandError::Conflict(_) | CommandError::NotFound(_) | CommandError::Unsupported(_),
            )) => Ok(()),
            Ok(_) => Err(
                "it answered success: guard every move with the state and loop it starts from (in district-sql, `expect_rows = 1` on the UPDATE) so a move of a missing or moved case writes nothing".into(),
            ),
            Err(e) => Err(format!(
                "got `{}`; answer `command-error::conflict` when the record is not where the move starts, `not-found` when there is none",
                describe(&e)
            )),
        },
    );
}

fn outcome(result: &Result<Page, PluginError>) -> String {
    match result {
        Ok(page) => format!("a page of {} rows", page.rows.len()),
        Err(e) => format!("`{}`", describe(e)),
    }
}

fn manifest_fits_model(entities: &[EntitySpec]) -> Result<(), String> {
    let mut problems = Vec::new();
    for entity in entities {
        let Some(model) = crate::model::entity(&entity.name) else {
            problems.push(format!(
                "`{}` is not a unified resource (docs/model.md)",
                entity.name
            ));
            continue;
        };
        for required in ["id", "division"] {
            if !entity.fields.iter().any(|f| f.name == required) {
                problems.push(format!("{} declares no `{required}`", entity.name));
            }
        }
        for field in &entity.fields {
            match model.field(&field.name) {
                None => problems.push(format!(
                    "{}.{} is not a field of the model",
                    entity.name, field.name
                )),
                Some(f) if f.kind != field.kind => problems.push(format!(
                    "{}.{} is declared {:?}, the model says {:?}",
                    entity.name, field.name, field.kind, f.kind
                )),
                Some(_) => {}
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

async fn check_entity(
    source: &Source,
    entity: &EntitySpec,
    coverage: &[String],
    report: &mut Report,
) {
    let name = entity.name.as_str();
    // 1. The whole entity (bounded) in big pages: the reference.
    let full = match walk(source, query(entity, coverage, 500, None), 64).await {
        Ok(full) => full,
        Err(e) => {
            report.check(name, "pages through its coverage", Err(e));
            return;
        }
    };
    report.check(
        name,
        &format!(
            "pages through its coverage ({} rows in {} pages{})",
            full.rows.len(),
            full.pages,
            if full.complete { "" } else { ", stopped at the kit's bound" }
        ),
        if full.rows.is_empty() {
            Err(format!(
                "no rows under {coverage:?}: is `coverage` the district's code, and does the mapping's `division` hold unified codes?"
            ))
        } else {
            Ok(())
        },
    );
    if full.rows.is_empty() {
        return;
    }
    report.check(
        name,
        "rows are unique and in (division, id) order across pages",
        ordered_and_unique(&full.rows),
    );
    report.check(
        name,
        "every cell has its declared kind",
        kinds_hold(entity, &full.rows),
    );
    report.check(
        name,
        "dates and timestamps are time (contract 0.4: typed in the row buffer)",
        times_hold(source.plugin.contract_version(), entity, &full.rows),
    );
    check_changes(source, entity, coverage, &full, report).await;

    // 2. The same in small pages: cursors resume exactly where they left off.
    let small = walk(source, query(entity, coverage, 7, None), 40).await;
    report.check(
        name,
        "small pages (limit 7) give the same rows in the same order",
        small.as_ref().map_err(Clone::clone).and_then(|small| {
            let n = small.rows.len().min(full.rows.len());
            match small.rows[..n]
                .iter()
                .zip(&full.rows[..n])
                .position(|(a, b)| a.key() != b.key())
            {
                None if small.complete && full.complete && small.rows.len() != full.rows.len() => Err(format!(
                    "{} rows in pages of 7, {} in pages of 500: a cursor skips or repeats rows; encode the last row's (division, id) and resume strictly after it",
                    small.rows.len(),
                    full.rows.len()
                )),
                None if n == 0 => Err("no rows in pages of 7".into()),
                None => Ok(()),
                Some(i) => Err(format!(
                    "row {} is {} in pages of 7 but {} in pages of 500: a cursor skips or repeats rows; encode the last row's (division, id) and resume strictly after it",
                    i + 1,
                    small.rows[i].shown(),
                    full.rows[i].shown()
                )),
            }
        }),
    );
    // 3. A cursor given again answers the same page (clients retry).
    if let Ok(small) = &small
        && let Some((cursor, first)) = small.cursors.first()
    {
        let again = source
            .plugin
            .query(query(entity, coverage, 7, Some(cursor.clone())))
            .await;
        report.check(
            name,
            "a cursor asked twice gives the same page",
            match again.as_ref().map_err(describe).and_then(rows_of) {
                Ok(rows) if rows.first().map(Row::key).as_ref() == Some(first) => Ok(()),
                Ok(rows) => Err(format!(
                    "first asked it began at {}, then at {}: a cursor must be a position, not a session",
                    shown(first),
                    rows.first().map(Row::shown).unwrap_or_else(|| "no row".into())
                )),
                Err(e) => Err(e),
            },
        );
    }
    // 4. A narrower scope: exactly the rows under it.
    if let Some(narrow) = narrower_scope(coverage, &full.rows) {
        let expected: Vec<(String, String)> = full
            .rows
            .iter()
            .filter(|r| r.division.starts_with(&narrow))
            .map(Row::key)
            .collect();
        let got = walk(
            source,
            query(entity, std::slice::from_ref(&narrow), 500, None),
            64,
        )
        .await;
        report.check(
            name,
            &format!("a narrower scope ({narrow}) returns exactly the rows under it"),
            match got {
                Err(e) => Err(format!(
                    "{e}: filter rows by `division` starting with each scope code, in the upstream query"
                )),
                Ok(got) => {
                    let keys: Vec<(String, String)> = got.rows.iter().map(Row::key).collect();
                    if !full.complete || keys == expected {
                        Ok(())
                    } else {
                        Err(format!(
                            "{} rows, expected {}: apply the scope in the upstream query",
                            keys.len(),
                            expected.len()
                        ))
                    }
                }
            },
        );
    }
    // 5. Projection: only the fields asked for.
    if let Some(other) = entity
        .fields
        .iter()
        .find(|f| f.name != "id" && f.name != "division")
    {
        let mut q = query(entity, coverage, 5, None);
        q.projection = vec!["id".into(), "division".into(), other.name.clone()];
        let want: HashSet<&str> = q.projection.iter().map(String::as_str).collect();
        report.check(
            name,
            "a projection returns the fields asked for",
            match source.plugin.query(q.clone()).await {
                Ok(page) => {
                    let got: HashSet<&str> = page.columns.iter().map(String::as_str).collect();
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!(
                            "asked for {:?}, got {:?}: return exactly `query.projection`",
                            q.projection, page.columns
                        ))
                    }
                }
                Err(e) => Err(describe(&e)),
            },
        );
    }
    // 6. Declared push-down is applied.
    for support in &entity.filters {
        if !support.ops.contains(&FilterOp::Eq) {
            continue;
        }
        let Some(value) = full
            .rows
            .get(full.rows.len() / 3)
            .and_then(|r| r.get(&support.field))
            .filter(|v| !matches!(v, Value::Null))
            .cloned()
        else {
            continue;
        };
        let expected: Vec<(String, String)> = full
            .rows
            .iter()
            .filter(|r| r.get(&support.field).is_some_and(|v| *v == value))
            .map(Row::key)
            .collect();
        let mut q = query(entity, coverage, 500, None);
        q.filters = vec![Filter {
            field: support.field.clone(),
            op: FilterOp::Eq,
            values: vec![value.clone()],
        }];
        let got = walk(source, q, 64).await;
        report.check(
            name,
            &format!("the declared filter `{} = …` is applied", support.field),
            match got {
                Err(e) => Err(e),
                Ok(got) => {
                    let wrong = got
                        .rows
                        .iter()
                        .find(|r| !r.get(&support.field).is_some_and(|v| *v == value));
                    let keys: Vec<(String, String)> = got.rows.iter().map(Row::key).collect();
                    match wrong {
                        Some(r) => Err(format!(
                            "row {} has `{}` = {}, not {}: apply the filter upstream, or do not declare it in the manifest (the gateway then filters)",
                            r.shown(),
                            support.field,
                            r.get(&support.field).map(shown_value).unwrap_or_else(|| "nothing".into()),
                            shown_value(&value)
                        )),
                        None if full.complete && got.complete && keys != expected => Err(format!(
                            "{} rows, expected {}: the filter drops rows that match",
                            keys.len(),
                            expected.len()
                        )),
                        None => Ok(()),
                    }
                }
            },
        );
    }
    // 7. Counts agree with rows.
    if entity.aggregates && full.complete {
        let counted = source
            .plugin
            .aggregate(
                AggregateQuery {
                    entity: entity.name.clone(),
                    scope: coverage.to_vec(),
                    filters: vec![],
                    division_prefix: None,
                    by: None,
                },
                true,
            )
            .await;
        report.check(
            name,
            "its count agrees with its rows",
            match &counted {
                Ok(cells) => {
                    let total: i64 = cells.iter().map(|c| c.count).sum();
                    if usize::try_from(total).ok() == Some(full.rows.len()) {
                        Ok(())
                    } else {
                        Err(format!(
                            "counted {total}, listed {}: count the same rows the query lists",
                            full.rows.len()
                        ))
                    }
                }
                Err(e) => Err(describe(e)),
            },
        );
        // 8. Contract 0.3: the count names the records the query lists.
        if let Ok(cells) = counted
            && source.plugin.counts_records()
        {
            let listed = full.rows.iter().fold(0u64, |d, r| {
                d.wrapping_add(u64::from(lianqiao_host::contract::record_key(&r.id)))
            });
            let digest = cells
                .iter()
                .try_fold(0u64, |d, c| c.digest.map(|x| d.wrapping_add(x)));
            report.check(
                name,
                "its count's record digest is the sum of its rows' record keys",
                match digest {
                    Some(d) if d == listed => Ok(()),
                    Some(d) => Err(format!(
                        "digest {d:#x}, the listed rows' keys sum to {listed:#x}: sum lianqiao_sdk::record_key(id) over the rows counted (sql_page::aggregate_statement does it in SQL)"
                    )),
                    None => Err("a 0.3 count came without its digest".into()),
                },
            );
        }
    }
}

fn ordered_and_unique(rows: &[Row]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        if !seen.insert(row.key()) {
            return Err(format!(
                "{} comes twice: ids must be unique within a division, and a cursor must resume after the last row",
                row.shown()
            ));
        }
        if i > 0 {
            let before = rows[i - 1].key();
            if (before.0.as_bytes(), before.1.as_bytes())
                >= (row.division.as_bytes(), row.id.as_bytes())
            {
                return Err(format!(
                    "{} comes before {}: order by (division, id) as bytes (COLLATE \"C\" / BINARY)",
                    shown(&before),
                    row.shown()
                ));
            }
        }
    }
    Ok(())
}

/// Every date is `YYYY-MM-DD` and every timestamp an RFC 3339 instant
/// with its offset: a 0.4 plugin's are typed in its row buffer (the host
/// shows them so); an older plugin's are text, which the gateway must
/// then read as time, so the kit checks them the same way.
fn times_hold(contract: &str, entity: &EntitySpec, rows: &[Row]) -> Result<(), String> {
    use lianqiao_host::contract::ValueKind;
    for row in rows {
        for (column, value) in &row.cells {
            let kind = entity
                .fields
                .iter()
                .find(|f| &f.name == column)
                .map(|f| f.kind);
            let ok = match (kind, value) {
                (Some(ValueKind::Date), Value::Date(s)) => lianqiao_rows::parse_date(s).is_some(),
                (Some(ValueKind::Timestamp), Value::Timestamp(s)) => {
                    lianqiao_rows::parse_timestamp(s).is_some()
                }
                _ => true,
            };
            if !ok {
                return Err(format!(
                    "row {}: `{column}` is not {} (contract {contract}); {}",
                    row.shown(),
                    match kind {
                        Some(ValueKind::Date) => "a date (YYYY-MM-DD)",
                        _ => "an RFC 3339 date-time with its offset",
                    },
                    match contract {
                        "0.4" => "this cannot come from a row buffer: report a host bug",
                        _ =>
                            "give the offset, or move to contract 0.4 and let the host read the column as time",
                    }
                ));
            }
        }
    }
    Ok(())
}

/// Changes since a watermark (contract 0.4), for an entity the plugin
/// lists in `change-feeds`: walking from the beginning returns rows of the
/// entity inside the scope, each once, with a watermark every time;
/// asking again from the last watermark finds nothing new (the kit's
/// source does not change while it runs); a watermark it did not make is
/// `bad-cursor`.
async fn check_changes(
    source: &Source,
    entity: &EntitySpec,
    coverage: &[String],
    full: &Walk,
    report: &mut Report,
) {
    use lianqiao_host::contract::ChangesQuery;
    let name = entity.name.as_str();
    let Some(feed) = source
        .plugin
        .change_feeds()
        .iter()
        .find(|f| f.entity == entity.name)
        .cloned()
    else {
        report.passed.push(format!(
            "{name}: lists no changes (contract {}; `changes` answers unsupported)",
            source.plugin.contract_version()
        ));
        return;
    };
    let ask = |since: Option<String>| ChangesQuery {
        entity: entity.name.clone(),
        scope: coverage.to_vec(),
        projection: entity.fields.iter().map(|f| f.name.clone()).collect(),
        since,
        limit: 50,
    };
    let known: HashSet<(String, String)> = full.rows.iter().map(Row::key).collect();
    let mut since = None;
    let mut seen = HashSet::new();
    let mut deleted = 0usize;
    let mut steps = 0usize;
    let walked: Result<String, String> = async {
        loop {
            steps += 1;
            let changes = source
                .plugin
                .changes(ask(since.clone()))
                .await
                .map_err(|e| format!("{} (step {steps})", describe(&e)))?;
            let page = Page {
                columns: changes.columns.clone(),
                rows: changes.rows.clone(),
                next_cursor: None,
            };
            for row in rows_of(&page)? {
                if full.complete && !known.contains(&row.key()) {
                    return Err(format!(
                        "{} is a change the entity's pages do not hold",
                        row.shown()
                    ));
                }
                if !seen.insert(row.key()) {
                    return Err(format!(
                        "{} is listed twice though nothing changed while the kit ran",
                        row.shown()
                    ));
                }
            }
            if !feed.tombstones && !changes.deleted.is_empty() {
                return Err("deletions from a feed declared without tombstones".into());
            }
            deleted += changes.deleted.len();
            if changes.watermark.is_empty() && !(changes.rows.is_empty() && since.is_none()) {
                return Err(
                    "an empty watermark after changes: give where the next call starts".into(),
                );
            }
            since = Some(changes.watermark);
            if !changes.more || steps * 50 >= MAX_ROWS {
                return Ok(since.clone().unwrap_or_default());
            }
        }
    }
    .await;
    let last = match walked {
        Ok(last) => {
            report.check(
                name,
                &format!(
                    "lists its changes from the beginning ({} rows, {deleted} deletions in {steps} steps)",
                    seen.len()
                ),
                Ok(()),
            );
            last
        }
        Err(e) => {
            report.check(name, "lists its changes from the beginning", Err(e));
            return;
        }
    };
    let again = source.plugin.changes(ask(Some(last))).await;
    report.check(
        name,
        "nothing new after the last watermark",
        match again {
            Ok(c) if c.rows.is_empty() && c.deleted.is_empty() && !c.more => Ok(()),
            Ok(c) => Err(format!(
                "{} rows and {} deletions again: the watermark must move past what was listed",
                c.rows.len(),
                c.deleted.len()
            )),
            Err(e) => Err(describe(&e)),
        },
    );
    report.check(
        name,
        "a watermark it did not make is `bad-cursor`",
        match source
            .plugin
            .changes(ask(Some("not-a-watermark-of-this-plugin".into())))
            .await
        {
            Err(PluginError::Source(SourceError::BadCursor(_))) => Ok(()),
            Err(e) => Err(format!(
                "got {}; decode watermarks strictly and answer `bad-cursor`",
                describe(&e)
            )),
            Ok(_) => Err("got changes; decode watermarks strictly and answer `bad-cursor`".into()),
        },
    );
}

fn kinds_hold(entity: &EntitySpec, rows: &[Row]) -> Result<(), String> {
    for row in rows {
        for (column, value) in &row.cells {
            let Some(spec) = entity.fields.iter().find(|f| &f.name == column) else {
                return Err(format!("column `{column}` is not declared in the manifest"));
            };
            if let Some(kind) = kind_of(value)
                && kind != spec.kind
            {
                return Err(format!(
                    "row {}: `{column}` is {}, declared {:?}: convert it in the plugin",
                    row.shown(),
                    shown_value(value),
                    spec.kind
                ));
            }
        }
    }
    Ok(())
}
