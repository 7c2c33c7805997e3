//! Joining one person's records across sources. A member is the party-link
//! record plus what the district database knows (grid, building, unit,
//! household role). The two share no id, only the person's ID number; the
//! gateway matches them on a keyed hash of it, with a key no plugin sees.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, Mac};
use lianqiao_host::contract::{Filter, FilterOp, Query, Value};
use sha2::Sha256;

use super::ListRequest;
use super::executor::{ListOutcome, SourceReport, SourceStatus};
use super::planner::narrowest;
use crate::sources::{CallOptions, Source, SourceSet};

/// The field both sides carry.
const JOIN_FIELD: &str = "id_number";
/// ID numbers asked for in one statement.
const LOOKUP_CHUNK: usize = 500;

/// The person key: HMAC-SHA256 of the ID number under the gateway's key.
pub fn person_key(key: &[u8], id_number: &str) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(id_number.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

fn enrichers<'a>(
    sources: &'a SourceSet,
    request: &ListRequest,
) -> Vec<(&'a Arc<Source>, Vec<String>)> {
    sources
        .sources
        .iter()
        .filter(|s| {
            s.config.enrich.iter().any(|e| e == request.entity.name)
                && s.serves(request.entity.name)
        })
        .filter_map(|s| {
            let scope: Vec<String> = request
                .scope
                .iter()
                .flat_map(|code| s.config.coverage.iter().filter_map(|c| narrowest(code, c)))
                .collect();
            (!scope.is_empty()).then_some((s, scope))
        })
        .collect()
}

/// Fill the rows of `outcome` with the fields enriching sources know about
/// the same persons. A failing enricher makes the answer partial.
pub async fn enrich(
    sources: &SourceSet,
    key: &[u8],
    request: &ListRequest,
    outcome: &mut ListOutcome,
) {
    let enrichers = enrichers(sources, request);
    if enrichers.is_empty() || outcome.rows.is_empty() {
        return;
    }
    let id_numbers: Vec<String> = outcome
        .rows
        .iter()
        .filter_map(|r| r.cells.iter().find(|(n, _)| n == JOIN_FIELD))
        .filter_map(|(_, v)| match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let lookups = enrichers.iter().map(|(source, scope)| {
        let span = tracing::info_span!(
            "source",
            source = source.name(),
            entity = request.entity.name,
            enrich = true,
        );
        tracing::Instrument::instrument(lookup(source, scope, request, &id_numbers, key), span)
    });
    for ((source, _), (found, report)) in enrichers
        .iter()
        .zip(futures::future::join_all(lookups).await)
    {
        outcome.reports.push(report);
        for row in &mut outcome.rows {
            let Some(Value::Text(id_number)) = row
                .cells
                .iter()
                .find(|(n, _)| n == JOIN_FIELD)
                .map(|(_, v)| v)
            else {
                continue;
            };
            let Some(cells) = person_key(key, id_number).and_then(|k| found.get(&k)) else {
                continue;
            };
            for (name, value) in cells {
                match row.cells.iter_mut().find(|(n, _)| n == name) {
                    Some((_, existing)) if matches!(existing, Value::Null) => {
                        *existing = value.clone()
                    }
                    Some(_) => {}
                    None => row.cells.push((name.clone(), value.clone())),
                }
            }
            row.source = Arc::from(format!("{}+{}", row.source, source.name()));
        }
    }
}

/// The enriching source's cells per person key, for `id_numbers`.
async fn lookup(
    source: &Source,
    scope: &[String],
    request: &ListRequest,
    id_numbers: &[String],
    key: &[u8],
) -> (HashMap<Vec<u8>, Vec<(String, Value)>>, SourceReport) {
    let began = Instant::now();
    let served = source
        .plugin
        .manifest()
        .entities
        .iter()
        .find(|e| e.name == request.entity.name);
    let projection: Vec<String> = request
        .projection
        .iter()
        .filter(|f| !matches!(**f, "id" | "division"))
        .chain(["id", "division", JOIN_FIELD].iter())
        .filter(|f| served.is_some_and(|s| s.fields.iter().any(|x| x.name == **f)))
        .map(|f| f.to_string())
        .collect();
    let mut found = HashMap::new();
    let mut rows = 0;
    let mut error = None;
    'chunks: for chunk in id_numbers.chunks(LOOKUP_CHUNK) {
        let mut cursor = None;
        loop {
            let query = Query {
                entity: request.entity.name.to_string(),
                scope: scope.to_vec(),
                filters: vec![Filter {
                    field: JOIN_FIELD.into(),
                    op: FilterOp::OneOf,
                    values: chunk.iter().map(|s| Value::Text(s.clone())).collect(),
                }],
                projection: projection.clone(),
                limit: source.plugin.limits().max_rows,
                cursor: cursor.take(),
            };
            match source.query(query, CallOptions::READ).await {
                Ok(page) => {
                    let join_col = page.columns.iter().position(|c| c == JOIN_FIELD);
                    for row in &page.rows {
                        let Some(Value::Text(id_number)) = join_col.and_then(|i| row.get(i)) else {
                            continue;
                        };
                        let Some(k) = person_key(key, id_number) else {
                            continue;
                        };
                        let cells = page
                            .columns
                            .iter()
                            .zip(row)
                            .filter(|(c, _)| !matches!(c.as_str(), "id" | "division" | JOIN_FIELD))
                            .map(|(c, v)| (c.clone(), v.clone()))
                            .collect();
                        found.insert(k, cells);
                    }
                    rows += page.rows.len();
                    match page.next_cursor {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => {
                    error = Some(e);
                    break 'chunks;
                }
            }
        }
    }
    let status = error.as_ref().map_or(SourceStatus::Ok, SourceStatus::of);
    let report = SourceReport {
        name: source.name().to_string(),
        status,
        latency: began.elapsed(),
        rows,
        error,
    };
    (found, report)
}
