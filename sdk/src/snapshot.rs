//! Serving upstreams that cannot sort by (`division`, `id`): fetch the
//! scope's records once, sort them, keep them in the host's cache for a
//! while, and page through them with keyset cursors.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::keyset::Position;
use crate::{AggregateCell, AggregateQuery, Page, Query, SourceError, Value, ValueKind, cache};

/// One record: its sort key and its fields as JSON.
pub type Record = (String, String, Map<String, Json>);

/// The value under `key` in the host's cache, or `fetch()` stored there for
/// `ttl_ms`.
pub fn cached<T, F>(key: &str, ttl_ms: u32, fetch: F) -> Result<T, SourceError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, SourceError>,
{
    if let Some(bytes) = cache::get(key)
        && let Ok(value) = serde_json::from_slice(&bytes)
    {
        return Ok(value);
    }
    let value = fetch()?;
    if let Ok(bytes) = serde_json::to_vec(&value) {
        cache::set(key, &bytes, ttl_ms);
    }
    Ok(value)
}

/// A JSON scalar as a contract value of `kind`.
pub fn to_value(json: Option<&Json>, kind: ValueKind) -> Value {
    match (json, kind) {
        (None | Some(Json::Null), _) => Value::Null,
        (Some(Json::Bool(b)), _) => Value::Boolean(*b),
        (Some(Json::Number(n)), ValueKind::Integer) => {
            n.as_i64().map_or(Value::Null, Value::Integer)
        }
        (Some(Json::Number(n)), ValueKind::Float) => n.as_f64().map_or(Value::Null, Value::Float),
        (Some(Json::Number(n)), _) => Value::Text(n.to_string()),
        (Some(Json::String(s)), ValueKind::Date) => Value::Date(s.clone()),
        (Some(Json::String(s)), ValueKind::Timestamp) => Value::Timestamp(s.clone()),
        (Some(Json::String(s)), ValueKind::Integer) => {
            s.parse().map_or(Value::Null, Value::Integer)
        }
        (Some(Json::String(s)), _) => Value::Text(s.clone()),
        (Some(other), _) => Value::Text(other.to_string()),
    }
}

/// A page of `records` (sorted by division, id) for `query`: scope,
/// keyset position, limit and projection applied. `kind` gives each
/// field's kind.
pub fn page_of(
    records: &[Record],
    query: &Query,
    kind: impl Fn(&str) -> Option<ValueKind>,
) -> Result<Page, SourceError> {
    let after = query.cursor.as_deref().map(Position::decode).transpose()?;
    let start = match &after {
        Some(p) => records.partition_point(|(d, i, _)| {
            (d.as_str(), i.as_str()) <= (p.division.as_str(), p.id.as_str())
        }),
        None => 0,
    };
    let in_scope = |d: &str| query.scope.iter().any(|s| d.starts_with(s.as_str()));
    let mut rows = Vec::new();
    let mut last = None;
    let mut more = false;
    for (division, id, fields) in records[start..].iter().filter(|(d, _, _)| in_scope(d)) {
        if rows.len() == query.limit as usize {
            more = true;
            break;
        }
        let row = query
            .projection
            .iter()
            .map(|f| match f.as_str() {
                "id" => Value::Text(id.clone()),
                "division" => Value::Text(division.clone()),
                other => to_value(fields.get(other), kind(other).unwrap_or(ValueKind::Text)),
            })
            .collect();
        rows.push(row);
        last = Some((division, id));
    }
    let next_cursor = match (more, last) {
        (true, Some((d, i))) => Some(
            Position {
                division: d.clone(),
                id: i.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(Page {
        columns: query.projection.clone(),
        rows,
        next_cursor,
    })
}

/// A group: division prefix and the debug text of the `by` value.
type GroupKey = (Option<String>, Option<String>);

/// Sort records into the contract's order.
pub fn sort(records: &mut [Record]) {
    records.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
}

/// Count `records` for `query` (grouped by division prefix and/or a
/// field), so an upstream that cannot count still ships no rows to the
/// gateway. `kinds` gives each field's kind.
pub fn count(
    records: &[Record],
    query: &AggregateQuery,
    kinds: &[(&str, ValueKind)],
) -> Result<Vec<AggregateCell>, SourceError> {
    if !query.filters.is_empty() {
        return Err(SourceError::Unsupported(
            "filters (none are declared)".into(),
        ));
    }
    let by_kind = match &query.by {
        Some(b) => Some(
            kinds
                .iter()
                .find(|(n, _)| n == b)
                .map(|(_, k)| *k)
                .ok_or_else(|| SourceError::Unsupported(format!("grouping by `{b}`")))?,
        ),
        None => None,
    };
    let mut groups: BTreeMap<GroupKey, (Option<Value>, i64)> = BTreeMap::new();
    for (division, _, fields) in records {
        let group = query
            .division_prefix
            .map(|n| division.chars().take(n as usize).collect());
        let key = match (&query.by, by_kind) {
            (Some(b), Some(k)) => Some(to_value(fields.get(b), k)),
            _ => None,
        };
        let entry = groups
            .entry((group, key.as_ref().map(|k| format!("{k:?}"))))
            .or_insert((key, 0));
        entry.1 += 1;
    }
    Ok(groups
        .into_iter()
        .map(|((division, _), (key, count))| AggregateCell {
            division,
            key,
            count,
        })
        .collect())
}

/// The records of every scope code, fetched by `fetch` (one snapshot per
/// code), merged in the contract's order without duplicates.
pub fn scoped(
    scope: &[String],
    mut fetch: impl FnMut(&str) -> Result<Vec<Record>, SourceError>,
) -> Result<Vec<Record>, SourceError> {
    let mut all = Vec::new();
    for code in scope {
        all.extend(fetch(code)?);
    }
    sort(&mut all);
    all.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    Ok(all)
}

/// The manifest entry of an entity served from snapshots: every field, no
/// filter pushed down (the gateway applies them), counts done in the plugin.
pub fn entity_spec(name: &str, fields: &[(&str, ValueKind)]) -> crate::EntitySpec {
    crate::EntitySpec {
        name: name.into(),
        fields: fields
            .iter()
            .map(|(n, k)| crate::FieldSpec {
                name: (*n).into(),
                kind: *k,
            })
            .collect(),
        filters: vec![],
        aggregates: true,
    }
}

/// A page of an entity served from snapshots (no filters were declared,
/// so none may arrive).
pub fn query_page(
    records: &[Record],
    query: &Query,
    kinds: &[(&str, ValueKind)],
) -> Result<Page, SourceError> {
    if !query.filters.is_empty() {
        return Err(SourceError::Unsupported(
            "filters (none are declared)".into(),
        ));
    }
    page_of(records, query, |f| {
        kinds.iter().find(|(n, _)| *n == f).map(|(_, k)| *k)
    })
}
