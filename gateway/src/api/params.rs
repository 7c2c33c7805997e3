//! Query-string parsing and validation against the unified model.
//!
//! `division=<code>` (required), `limit`, `cursor`, `fields=a,b`,
//! `strict=true`, and filters `field=value` or `field[op]=value` with op
//! one of `eq`, `gte`, `lte`, `in` (comma-separated), `prefix`.

use lianqiao_host::contract::{FilterOp, Value, ValueKind};

use crate::config::{ServerSection, is_division_code};
use crate::error::ApiError;
use crate::federation::stats::StatsRequest;
use crate::federation::{FieldFilter, ListRequest};
use crate::model::{Entity, Field};

/// Parameters that are not filters.
pub(super) const RESERVED: &[&str] = &["division", "parent", "limit", "cursor", "fields", "strict"];

/// The query string's pairs, refused past `server.max_query_bytes` (a
/// huge query costs the gateway more than it could be worth to a caller).
pub fn pairs(raw: Option<&str>, server: &ServerSection) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > server.max_query_bytes {
        return Err(ApiError::bad_request(format!(
            "the query string is {} bytes; at most {} are accepted (server.max_query_bytes)",
            raw.len(),
            server.max_query_bytes
        )));
    }
    serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("the query string is not URL-encoded: {e}")))
}

/// Refuse more filters than `server.max_filters`.
fn check_filter_count(filters: &[FieldFilter], server: &ServerSection) -> Result<(), ApiError> {
    if filters.len() > server.max_filters {
        return Err(ApiError::bad_request(format!(
            "{} filters; at most {} are accepted in one request (server.max_filters)",
            filters.len(),
            server.max_filters
        )));
    }
    Ok(())
}

/// A division code from the request, in prefix form (national six-digit
/// forms of a region or city are aliases: `150100` is `1501`).
pub(super) fn division_code(name: &str, value: &str) -> Result<String, ApiError> {
    if is_division_code(value) {
        Ok(lianqiao_policy::division::canonical(value).to_string())
    } else {
        Err(ApiError::invalid(format!(
            "`{name}` = `{value}` is not a unified division code ({}), e.g. 150103001",
            lianqiao_policy::division::CONVENTION
        )))
    }
}

fn op_of(name: &str) -> Option<FilterOp> {
    Some(match name {
        "eq" => FilterOp::Eq,
        "gte" => FilterOp::Gte,
        "lte" => FilterOp::Lte,
        "in" => FilterOp::OneOf,
        "prefix" => FilterOp::Prefix,
        _ => return None,
    })
}

/// Parse one filter value by the field's kind.
fn typed(field: &Field, raw: &str) -> Result<Value, ApiError> {
    let wrong =
        |what: &str| ApiError::invalid(format!("`{}` takes {what}, got `{raw}`", field.name));
    let value = match field.kind {
        ValueKind::Text => Value::Text(raw.to_string()),
        ValueKind::Integer => Value::Integer(raw.parse().map_err(|_| wrong("an integer"))?),
        ValueKind::Float => Value::Float(raw.parse().map_err(|_| wrong("a number"))?),
        ValueKind::Boolean => Value::Boolean(raw.parse().map_err(|_| wrong("true or false"))?),
        ValueKind::Date => {
            let ok = raw.len() == 10
                && raw.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            if !ok {
                return Err(wrong("a date like 2021-07-01"));
            }
            Value::Date(raw.to_string())
        }
        // Any offset and precision; compared as an instant, and sent on
        // in one form (federation/instant.rs).
        ValueKind::Timestamp => match crate::federation::instant::parse(raw) {
            Some(instant) => Value::Timestamp(crate::federation::instant::canonical(instant)),
            None => {
                return Err(wrong(
                    "an RFC 3339 timestamp with its offset, like 2026-12-07T08:53:11Z or 2026-12-07T16:53:11.5+08:00",
                ));
            }
        },
    };
    if !field.values.is_empty() && !field.values.contains(&raw) {
        return Err(ApiError::invalid(format!(
            "`{}` is one of {}, got `{raw}`",
            field.name,
            field.values.join(", ")
        )));
    }
    Ok(value)
}

fn unknown_field(entity: &Entity, name: &str) -> ApiError {
    ApiError::unknown_field(format!(
        "`{}` has no field `{name}`; its fields are: {}",
        entity.name,
        entity.field_names().join(", ")
    ))
}

/// Build a list request. `parent_mode` lets `parent=<code>` stand for
/// "children of" (divisions only).
pub fn list_request(
    entity: &'static Entity,
    pairs: &[(String, String)],
    server: &ServerSection,
    parent_mode: bool,
) -> Result<(ListRequest, Option<String>), ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    let (mut division, mut parent, mut cursor) = (None, None, None);
    let mut limit = server.default_page_size;
    let mut strict = false;
    let mut projection: Option<Vec<&'static str>> = None;
    let mut filters = Vec::new();

    for (key, value) in pairs {
        if seen.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`{key}` is given twice; give it once (use `{key}[in]=a,b` for several values)"
            )));
        }
        seen.push(key);
        match key.as_str() {
            "division" => division = Some(division_code("division", value)?),
            "parent" if parent_mode => parent = Some(division_code("parent", value)?),
            "limit" => {
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=server.max_page_size).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "`limit` must be an integer from 1 to {}, got `{value}`",
                            server.max_page_size
                        ))
                    })?;
            }
            "cursor" | "fields" if value.is_empty() => {
                return Err(ApiError::invalid(format!(
                    "`{key}` is empty; leave it out (the first page, every field)"
                )));
            }
            "cursor" => cursor = Some(value.clone()),
            "strict" => {
                strict = value.parse().map_err(|_| {
                    ApiError::invalid(format!("`strict` is true or false, got `{value}`"))
                })?;
            }
            "fields" => {
                let mut fields = vec!["id"];
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let field = entity
                        .field(name)
                        .ok_or_else(|| unknown_field(entity, name))?;
                    if !fields.contains(&field.name) {
                        fields.push(field.name);
                    }
                }
                projection = Some(fields);
            }
            _ => filters.push(filter(entity, key, value, server)?),
        }
    }
    check_filter_count(&filters, server)?;

    let mut scope = match (division, parent.clone()) {
        (Some(d), _) => d,
        (None, Some(p)) => p.clone(),
        (None, None) => {
            return Err(ApiError::missing(if parent_mode {
                "give `parent=<code>` (children of a division) or `division=<code>` (its whole subtree)"
            } else {
                "`division=<code>` is required (e.g. division=150103 for Huimin district), so nobody pulls a whole region by accident"
            }));
        }
    };
    if let Some(p) = parent {
        let field = entity
            .field("parent")
            .ok_or_else(|| unknown_field(entity, "parent"))?;
        filters.push(FieldFilter {
            field,
            op: FilterOp::Eq,
            values: vec![Value::Text(p.clone())],
        });
        // Children of `p` inside `division`: the narrower of the two.
        if p.starts_with(&scope) {
            scope = p;
        } else if !scope.starts_with(&p) {
            return Err(ApiError::bad_request(format!(
                "`parent={p}` is outside `division={scope}`"
            )));
        }
    }

    let projection = projection.unwrap_or_else(|| entity.field_names());
    let mut internal = projection.clone();
    // `division` orders the merge; `id_number` joins a person's records.
    for needed in ["division", "id_number"] {
        if entity.field(needed).is_some() && !internal.contains(&needed) {
            internal.push(needed);
        }
    }
    let request = ListRequest {
        entity,
        scope: vec![scope],
        filters,
        projection: internal,
        output: projection,
        limit,
        cursor: None,
        strict,
    };
    Ok((request, cursor))
}

/// Prefix lengths of division codes by level.
fn prefix_of(level: &str) -> Option<u32> {
    Some(match level {
        "region" => 2,
        "city" => 4,
        "district" => 6,
        "street" => 9,
        "community" => 12,
        _ => return None,
    })
}

/// Parse `/v1/stats` parameters.
pub fn stats_request(
    pairs: &[(String, String)],
    server: &ServerSection,
) -> Result<StatsRequest, ApiError> {
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in pairs {
        if seen.contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "`{key}` is given twice; give it once (use `{key}[in]=a,b` for several values)"
            )));
        }
        seen.push(key);
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let metric = get("metric").ok_or_else(|| {
        ApiError::missing("`metric=<resource>.count` is required, e.g. metric=members.count")
    })?;
    use crate::federation::measures::Measure;
    let (resource, what) = metric.split_once('.').unwrap_or((metric, ""));
    let (entity, measure) = match (crate::model::entity(resource), what) {
        (Some(entity), "count") => (entity, None),
        (Some(entity), m)
            if entity.name == crate::model::CASES.name && Measure::parse(m).is_some() =>
        {
            (entity, Measure::parse(m))
        }
        _ => {
            return Err(ApiError::invalid(format!(
                "`metric` is <resource>.count with a resource of {}, or one of {}; got `{metric}`",
                crate::model::ENTITIES
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", "),
                Measure::ALL
                    .iter()
                    .map(|m| format!("cases.{}", m.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let division = division_code(
        "division",
        get("division").ok_or_else(|| ApiError::missing("`division=<code>` is required"))?,
    )?;
    let division_prefix = match get("group_by") {
        None => None,
        Some(level) => Some(prefix_of(level).ok_or_else(|| {
            ApiError::invalid(format!(
                "`group_by` is one of region, city, district, street, community, got `{level}`"
            ))
        })?),
    };
    let by = match get("by") {
        None => None,
        Some(name) => Some(
            entity
                .field(name)
                .ok_or_else(|| unknown_field(entity, name))?,
        ),
    };
    let strict = match get("strict") {
        None => false,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::invalid(format!("`strict` is true or false, got `{v}`")))?,
    };
    let mut filters = Vec::new();
    for (key, value) in pairs {
        if !matches!(
            key.as_str(),
            "metric" | "division" | "group_by" | "by" | "strict"
        ) {
            filters.push(filter(entity, key, value, server)?);
        }
    }
    check_filter_count(&filters, server)?;
    Ok(StatsRequest {
        entity,
        scope: vec![division],
        filters,
        division_prefix,
        by,
        strict,
        measure,
        // The gate decides (protected counts need record digests).
        records: false,
    })
}

fn filter(
    entity: &'static Entity,
    key: &str,
    value: &str,
    server: &ServerSection,
) -> Result<FieldFilter, ApiError> {
    let (name, op) = match key.split_once('[') {
        Some((name, rest)) => {
            let op_name = rest.strip_suffix(']').unwrap_or(rest);
            let op = op_of(op_name).ok_or_else(|| {
                ApiError::invalid(format!(
                    "`{key}`: unknown operator `{op_name}`; use eq, gte, lte, in or prefix"
                ))
            })?;
            (name, op)
        }
        None => (key, FilterOp::Eq),
    };
    if value.is_empty() {
        return Err(ApiError::invalid(format!(
            "`{key}` is empty; leave it out to not filter on `{name}`"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(ApiError::invalid(format!("`{key}` is not a filter")));
    }
    let field = entity
        .field(name)
        .ok_or_else(|| unknown_field(entity, name))?;
    if field.derived {
        return Err(ApiError::invalid(format!(
            "`{name}` is written by the gateway and cannot be filtered on; filter on `code` (it accepts the national form too)"
        )));
    }
    let values = match op {
        FilterOp::OneOf => {
            let listed = value.split(',').count();
            if listed > server.max_in_values {
                return Err(ApiError::bad_request(format!(
                    "`{key}` lists {listed} values; at most {} are accepted (server.max_in_values)",
                    server.max_in_values
                )));
            }
            value
                .split(',')
                .map(|v| typed(field, v.trim()))
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => vec![typed(field, value)?],
    };
    if op == FilterOp::Prefix && field.kind != ValueKind::Text {
        return Err(ApiError::invalid(format!(
            "`{name}[prefix]` needs a text field"
        )));
    }
    Ok(FieldFilter { field, op, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GRIDS;

    fn parse(q: &str) -> Result<ListRequest, ApiError> {
        let server = ServerSection::default();
        list_request(&GRIDS, &pairs(Some(q), &server)?, &server, false).map(|(r, _)| r)
    }

    #[test]
    fn a_plain_query() {
        let r = parse("division=150103&limit=5&tier=small&households[gte]=40").unwrap();
        assert_eq!(r.scope, vec!["150103"]);
        assert_eq!(r.limit, 5);
        assert_eq!(r.filters.len(), 2);
        assert_eq!(r.filters[1].values, vec![Value::Integer(40)]);
    }

    #[test]
    fn national_forms_of_a_city_or_region_mean_the_prefix_form() {
        assert_eq!(parse("division=150100").unwrap().scope, vec!["1501"]);
        assert_eq!(parse("division=150000").unwrap().scope, vec!["15"]);
        assert_eq!(parse("division=150103").unwrap().scope, vec!["150103"]);
    }

    #[test]
    fn bad_input_says_what_to_fix() {
        let e = parse("limit=5").unwrap_err();
        assert_eq!(e.code, "missing_parameter");
        assert!(e.message.contains("`division=<code>` is required"));
        let e = parse("division=150103&limit=0").unwrap_err();
        assert_eq!(e.code, "invalid_parameter");
        assert!(e.message.contains("from 1 to 1000"), "{}", e.message);
        let e = parse("division=15%27--").unwrap_err();
        assert_eq!(e.code, "invalid_parameter");
        let e = parse("division=150103&colour=red").unwrap_err();
        assert_eq!(e.code, "unknown_field");
        assert!(e.message.contains("tier"), "{}", e.message);
        let e = parse("division=150103&tier=huge").unwrap_err();
        assert!(
            e.message.contains("big, medium, small, micro"),
            "{}",
            e.message
        );
        let e = parse("division=150103&households[gt]=3").unwrap_err();
        assert!(e.message.contains("unknown operator `gt`"), "{}", e.message);
        let e = parse("division=150103&division=150104").unwrap_err();
        assert_eq!(e.code, "bad_request");
        assert!(e.message.contains("twice"), "{}", e.message);
        let e = parse("division=150103&fields=name,colour").unwrap_err();
        assert_eq!(e.code, "unknown_field");
    }

    #[test]
    fn huge_in_lists_and_query_strings_are_refused_with_the_limit() {
        let ids: Vec<String> = (0..101).map(|i| format!("{i:03}")).collect();
        let e = parse(&format!("division=150103&id[in]={}", ids.join(","))).unwrap_err();
        assert_eq!(e.code, "bad_request");
        assert!(e.message.contains("at most 100"), "{}", e.message);
        let e = parse(&format!("division=150103&name={}", "x".repeat(5000))).unwrap_err();
        assert!(e.message.contains("at most 4096"), "{}", e.message);
        let many: Vec<String> = ["name", "code", "head", "community"]
            .iter()
            .flat_map(|f| {
                ["", "[prefix]", "[in]", "[gte]", "[lte]"]
                    .iter()
                    .map(move |op| format!("{f}{op}=1"))
            })
            .collect();
        let e = parse(&format!("division=150103&{}", many.join("&"))).unwrap_err();
        assert!(
            e.message.contains("20 filters; at most 16"),
            "{}",
            e.message
        );
    }
}
