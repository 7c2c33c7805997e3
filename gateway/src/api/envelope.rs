//! The response envelope: `{data, page, partial, sources}`.

use lianqiao_host::contract::Value;
use serde_json::{Map, Value as Json, json};

use crate::federation::stats::StatsOutcome;
use crate::federation::{ListOutcome, MergedRow, SourceReport};

/// A contract value as JSON. Non-finite floats become null (JSON has none).
pub fn value_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => json!(b),
        Value::Integer(i) => json!(i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => json!(s),
    }
}

/// A row as a JSON object with exactly `fields` (null where the source
/// has no such field) and the source it came from.
pub fn row_json(row: &MergedRow, fields: &[&str]) -> Json {
    let mut object = Map::with_capacity(fields.len() + 1);
    for field in fields {
        let value = row
            .cells
            .iter()
            .find(|(name, _)| name == field)
            .map_or(Json::Null, |(_, v)| value_json(v));
        object.insert((*field).to_string(), value);
    }
    object.insert("source".into(), json!(row.source.as_ref()));
    Json::Object(object)
}

pub fn source_reports(reports: &[SourceReport]) -> Json {
    Json::Array(
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
                    report["error"] = json!({ "code": e.code(), "message": e.to_string() });
                }
                report
            })
            .collect(),
    )
}

pub fn list_envelope(outcome: &ListOutcome, fields: &[&str]) -> Json {
    json!({
        "data": outcome.rows.iter().map(|r| row_json(r, fields)).collect::<Vec<_>>(),
        "page": { "next_cursor": outcome.next_cursor },
        "partial": outcome.partial(),
        "sources": source_reports(&outcome.reports),
    })
}

pub fn stats_envelope(outcome: &StatsOutcome) -> Json {
    let data: Vec<Json> = outcome
        .cells
        .iter()
        .map(|c| {
            let mut cell = if c.suppressed {
                json!({ "value": null, "suppressed": true })
            } else {
                json!({ "value": c.count })
            };
            if let Some(d) = &c.division {
                cell["division"] = json!(d);
            }
            if let Some(k) = &c.key {
                cell["key"] = value_json(k);
            }
            cell
        })
        .collect();
    json!({
        "data": data,
        "partial": outcome.reports.iter().any(|r| r.error.is_some()),
        "sources": source_reports(&outcome.reports),
    })
}
