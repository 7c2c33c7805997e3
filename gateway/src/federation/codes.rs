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
use crate::model::DIVISIONS;

/// Fields of a division row that hold a division code.
const CODE_FIELDS: &[&str] = &["id", "code", "parent", "division"];

fn is_code_field(request: &ListRequest, field: &str) -> bool {
    field == "division" || (request.entity.name == DIVISIONS.name && CODE_FIELDS.contains(&field))
}

/// Let equality and `in` filters on code fields match a source's national
/// form of a region or city code too (`parent=1501` also finds `150100`).
pub fn widen_filters(request: &mut ListRequest) {
    let entity_is_divisions = request.entity.name == DIVISIONS.name;
    for filter in &mut request.filters {
        let name = filter.field.name;
        if !(name == "division" || entity_is_divisions && CODE_FIELDS.contains(&name)) {
            continue;
        }
        if !matches!(filter.op, FilterOp::Eq | FilterOp::OneOf) {
            continue;
        }
        let mut values = Vec::with_capacity(filter.values.len() * 2);
        for value in &filter.values {
            values.push(value.clone());
            if let Value::Text(code) = value
                && code.len() < 6
                && let Some(n) = national(code)
            {
                values.push(Value::Text(n));
            }
        }
        if values.len() > filter.values.len() {
            filter.op = FilterOp::OneOf;
            filter.values = values;
        }
    }
}

/// Rewrite the code fields of answered rows to prefix form, and write a
/// division's `national_code` when it was asked for.
pub fn present(request: &ListRequest, rows: &mut [MergedRow]) {
    let national_code =
        request.entity.name == DIVISIONS.name && request.projection.contains(&"national_code");
    for row in rows {
        let canon = canonical(&row.division);
        if canon.len() != row.division.len() {
            row.division = canon.to_string();
        }
        if request.entity.name == DIVISIONS.name {
            let canon = canonical(&row.id);
            if canon.len() != row.id.len() {
                row.id = canon.to_string();
            }
        }
        for (name, value) in &mut row.cells {
            if let Value::Text(code) = value
                && is_code_field(request, name)
            {
                let canon = canonical(code);
                if canon.len() != code.len() {
                    *code = canon.to_string();
                }
            }
        }
        if national_code {
            let value = national(&row.division).map_or(Value::Null, Value::Text);
            row.cells.retain(|(name, _)| name != "national_code");
            row.cells.push(("national_code".to_string(), value));
        }
    }
}
