//! Division codes at the edge of the federation.
//!
//! Inside the gateway a division code has one form, the prefix form that
//! scope, push-down and the plugin contract rely on (`15`, `1501`,
//! `150103`, …). Sources are not all so tidy: the city platform and the
//! district databases name a region or a city by its six-digit national
//! code (`150000`, `150100`), as GB/T 2260 writes it. So a filter on a code
//! field reaches the sources with both forms of such a code, and the
//! divisions a source returns leave in prefix form, with the national form
//! beside it (`national_code`, a field the gateway derives; the disclosure
//! gate then treats it as any other public field).

use lianqiao_host::contract::{FilterOp, Value};
use lianqiao_policy::division::{canonical, national};

use super::{ListRequest, MergedRow};
use crate::model::{DIVISIONS, Entity};

/// Fields of a division row that hold a division code.
const CODE_FIELDS: &[&str] = &["id", "code", "parent", "division"];

/// Whether `field` of `entity` holds a division code.
fn is_code_field(entity: &Entity, field: &str) -> bool {
    field == "division" || (entity.name == DIVISIONS.name && CODE_FIELDS.contains(&field))
}

/// The national form a filter value on a code field should also match.
fn alias(filter_value: &Value) -> Option<Value> {
    match filter_value {
        Value::Text(code) if code.len() < 6 => national(code).map(Value::Text),
        _ => None,
    }
}

/// `request` with equality and `in` filters on code fields widened to a
/// source's national form of a region or city code too (`parent=1501`
/// also finds `150100`); `None` when no filter needs it (the common case:
/// no copy of the request).
pub fn widen_filters(request: &ListRequest) -> Option<ListRequest> {
    let widens = |f: &super::FieldFilter| {
        matches!(f.op, FilterOp::Eq | FilterOp::OneOf)
            && is_code_field(request.entity, f.field.name)
            && f.values.iter().any(|v| alias(v).is_some())
    };
    if !request.filters.iter().any(widens) {
        return None;
    }
    let mut widened = request.clone();
    for filter in &mut widened.filters {
        if !widens(filter) {
            continue;
        }
        let mut values = Vec::with_capacity(filter.values.len() * 2);
        for value in &filter.values {
            values.push(value.clone());
            values.extend(alias(value));
        }
        filter.op = FilterOp::OneOf;
        filter.values = values;
    }
    Some(widened)
}

/// Rewrite `code` to its prefix form in place.
fn to_prefix_form(code: &mut String) {
    let prefix = canonical(code).len();
    code.truncate(prefix);
}

/// Rewrite the code fields of answered rows to prefix form, and write a
/// division's `national_code` when it was asked for.
pub fn present(request: &ListRequest, rows: &mut [MergedRow]) {
    let divisions = request.entity.name == DIVISIONS.name;
    let national_code = divisions && request.projection.contains(&"national_code");
    for row in rows {
        to_prefix_form(&mut row.division);
        if divisions {
            to_prefix_form(&mut row.id);
        }
        for (name, value) in &mut row.cells {
            if let Value::Text(code) = value
                && is_code_field(request.entity, name)
            {
                to_prefix_form(code);
            }
        }
        if national_code {
            let value = national(&row.division).map_or(Value::Null, Value::Text);
            row.cells.retain(|(name, _)| name != "national_code");
            row.cells.push(("national_code".to_string(), value));
        }
    }
}
