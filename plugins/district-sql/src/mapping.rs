//! Typing and value mapping of database cells into unified values.

use std::collections::BTreeMap;

use lianqiao_sdk::sql::SqlError;
use lianqiao_sdk::{SourceError, Value, ValueKind};
use serde::Deserialize;

/// A field's kind as written in settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Boolean,
    Integer,
    Float,
    Text,
    Date,
    Timestamp,
}

impl Kind {
    pub fn value_kind(self) -> ValueKind {
        match self {
            Kind::Boolean => ValueKind::Boolean,
            Kind::Integer => ValueKind::Integer,
            Kind::Float => ValueKind::Float,
            Kind::Text => ValueKind::Text,
            Kind::Date => ValueKind::Date,
            Kind::Timestamp => ValueKind::Timestamp,
        }
    }
}

pub fn sql_error(e: SqlError) -> SourceError {
    match e {
        SqlError::Denied(m) => SourceError::Denied(m),
        SqlError::Statement(m) => SourceError::UpstreamError(format!("the database refused: {m}")),
        SqlError::Unavailable(m) => SourceError::UpstreamUnavailable(m),
        SqlError::Timeout(m) => SourceError::UpstreamTimeout(m),
    }
}

/// Convert one cell to the field's declared kind, after the value map.
/// Databases differ (SQLite has no dates, MariaDB booleans are integers),
/// so the declared kind, not the driver's, decides.
pub fn convert_cell(
    column: &str,
    cell: Value,
    kind: Kind,
    map: Option<&BTreeMap<String, String>>,
) -> Result<Value, SourceError> {
    let cell = match (map, &cell) {
        (Some(map), Value::Text(s)) => map.get(s).map(|v| Value::Text(v.clone())).unwrap_or(cell),
        (Some(map), Value::Integer(i)) => map
            .get(&i.to_string())
            .map(|v| Value::Text(v.clone()))
            .unwrap_or(cell),
        _ => cell,
    };
    // The cell's kind, never its value: it may be a person's data.
    let bad = |cell: &Value| {
        let held = match cell {
            Value::Null => "null",
            Value::Boolean(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Text(_) => "a text",
            Value::Date(_) => "a date",
            Value::Timestamp(_) => "a timestamp",
        };
        SourceError::UpstreamError(format!(
            "column `{column}` holds {held}, which is not a {kind:?}; fix the source's sql or map"
        ))
    };
    Ok(match (kind, cell) {
        (_, Value::Null) => Value::Null,
        (Kind::Text, Value::Text(s)) => Value::Text(s),
        (Kind::Text, Value::Integer(i)) => Value::Text(i.to_string()),
        (Kind::Integer, Value::Integer(i)) => Value::Integer(i),
        (Kind::Integer, Value::Text(s)) => {
            Value::Integer(s.trim().parse().map_err(|_| bad(&Value::Text(s.clone())))?)
        }
        (Kind::Float, Value::Float(f)) => Value::Float(f),
        (Kind::Float, Value::Integer(i)) => Value::Float(i as f64),
        (Kind::Boolean, Value::Boolean(b)) => Value::Boolean(b),
        (Kind::Boolean, Value::Integer(i)) => Value::Boolean(i != 0),
        (Kind::Date, Value::Date(s) | Value::Text(s)) => Value::Date(s),
        (Kind::Timestamp, Value::Timestamp(s) | Value::Text(s)) => Value::Timestamp(s),
        (_, other) => return Err(bad(&other)),
    })
}
