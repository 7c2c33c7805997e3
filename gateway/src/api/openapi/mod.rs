//! The OpenAPI 3.1 document of the whole API, generated from the unified
//! model (`crate::model`), the field classes the gateway enforces, the
//! declared purposes, the paging limits and the `ErrorCode` enum, so the
//! document and the handlers cannot drift apart.
//!
//! Written for client generators (the city platform's usual way in): every
//! parameter once per operation, named singular PascalCase schemas and
//! enums, one `operationId` and one tag per operation, every status the
//! gateway can answer with declared. `cargo xtask test` checks it with
//! `openapi-spec-validator`, `redocly lint`, `openapi-python-client` and
//! `openapi-typescript` (`tests/consumer/`).

mod cases;

use lianqiao_host::contract::ValueKind;
use serde_json::{Map, Value, json};

use crate::config::ServerSection;
use crate::error::ErrorCode;
use crate::model::{ENTITIES, Entity, Field, FieldClasses};

/// Query parameter names the list operations use themselves; a field of
/// the same name cannot be filtered by its plain name (`parse_list`
/// refuses it), so the document declares no filter for it.
use super::params::RESERVED;

/// Filter operators, as written after a field's name (`field[op]=`).
const OPERATORS: &[(&str, &str)] = &[
    ("in", "one of several comma-separated values"),
    ("gte", "greater than or equal to"),
    ("lte", "less than or equal to"),
    ("prefix", "starts with"),
];

fn pascal(words: &str) -> String {
    words
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `grids` → `Grid`, `party-orgs` → `PartyOrg`, `service-centers` →
/// `ServiceCenter`.
pub fn schema_name(entity: &Entity) -> String {
    let name = pascal(entity.name);
    name.strip_suffix('s').map(str::to_string).unwrap_or(name)
}

/// `list_grids`, `list_party_orgs`.
fn list_operation(entity: &Entity) -> String {
    format!("list_{}", entity.name.replace('-', "_"))
}

/// The named enum schema of an enumerated field: `GridTier`, `MemberStatus`.
fn enum_name(entity: &Entity, field: &Field) -> String {
    let owner = schema_name(entity);
    let field_name = pascal(field.name);
    if field_name.starts_with(&owner) {
        field_name
    } else {
        format!("{owner}{field_name}")
    }
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn kind_schema(kind: ValueKind) -> Value {
    match kind {
        ValueKind::Boolean => json!({ "type": "boolean" }),
        ValueKind::Integer => json!({ "type": "integer", "format": "int64" }),
        ValueKind::Float => json!({ "type": "number", "format": "double" }),
        ValueKind::Text => json!({ "type": "string" }),
        ValueKind::Date => json!({ "type": "string", "format": "date" }),
        ValueKind::Timestamp => json!({ "type": "string", "format": "date-time" }),
    }
}

/// One row of a resource, as the caller may see it: fields the policy
/// withholds are absent, masked ones are strings of the mask's form.
fn record_schema(entity: &Entity, classes: &FieldClasses, schemas: &mut Map<String, Value>) {
    let mut properties = Map::new();
    for field in entity.fields {
        let class = classes.class(entity.name, field.name);
        let mut schema = if let Some(mask) = classes.shown_mask(entity.name, field.name) {
            // `1985-**-**` is no date: a maskable field is a string.
            json!({
                "type": ["string", "null"],
                "description": format!(
                    "{} Shown masked ({}) to callers the policy lets see it only masked.",
                    field.doc,
                    mask.as_str()
                ),
                "x-lianqiao-mask": mask,
            })
        } else if !field.values.is_empty() {
            let name = enum_name(entity, field);
            schemas.insert(
                name.clone(),
                json!({ "type": "string", "enum": field.values, "description": field.doc }),
            );
            let mut s = nullable(reference(&name));
            s["description"] = json!(field.doc);
            s
        } else {
            let mut s = kind_schema(field.kind);
            s["type"] = json!([s["type"].clone(), "null"]);
            s["description"] = json!(field.doc);
            s
        };
        schema["x-lianqiao-class"] = json!(class.as_str());
        properties.insert(field.name.to_string(), schema);
    }
    properties.insert(
        "source".into(),
        json!({
            "type": "string",
            "description": "The source the row came from. A row completed from other sources (a member's residence from a district database) names them all, joined with `+` in the order they contributed.",
            "examples": ["party-link", "party-link+huimin"],
        }),
    );
    schemas.insert(
        schema_name(entity),
        json!({
            "type": "object",
            "description": entity.doc,
            "properties": properties,
            "required": ["id", "source"],
        }),
    );
}

fn parameter(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

/// A filter on `field` with operator `op` (`None`: equality), or `None`
/// when the operator does not apply to the field's kind.
fn filter_parameter(entity: &Entity, field: &Field, op: Option<(&str, &str)>) -> Option<Value> {
    let ordered = matches!(
        field.kind,
        ValueKind::Integer | ValueKind::Float | ValueKind::Date | ValueKind::Timestamp
    );
    let mut value_schema = if field.values.is_empty() {
        kind_schema(field.kind)
    } else {
        reference(&enum_name(entity, field))
    };
    if value_schema["type"] == "string" {
        // An empty value is no filter; the gateway refuses it.
        value_schema["minLength"] = json!(1);
    }
    let (name, schema, description) = match op {
        None => (
            field.name.to_string(),
            value_schema,
            format!("Filter: rows whose `{}` equals this.", field.name),
        ),
        Some(("in", what)) => (
            format!("{}[in]", field.name),
            json!({ "type": "string", "minLength": 1 }),
            format!(
                "Filter: rows whose `{}` is {what} (e.g. `a,b`; at most `server.max_in_values`).",
                field.name
            ),
        ),
        Some((op @ ("gte" | "lte"), what)) if ordered => (
            format!("{}[{op}]", field.name),
            value_schema,
            format!("Filter: rows whose `{}` is {what} this.", field.name),
        ),
        Some(("prefix", what)) if field.kind == ValueKind::Text && field.values.is_empty() => (
            format!("{}[prefix]", field.name),
            json!({ "type": "string", "minLength": 1 }),
            format!("Filter: rows whose `{}` {what} this.", field.name),
        ),
        Some(_) => return None,
    };
    Some(json!({
        "name": name,
        "in": "query",
        "required": false,
        "schema": schema,
        "description": format!("{description} Filters on fields the caller does not see in clear are refused (403)."),
    }))
}

fn filter_parameters(entity: &Entity) -> Vec<Value> {
    let mut out = Vec::new();
    for field in entity.fields {
        if RESERVED.contains(&field.name) || field.derived {
            continue;
        }
        out.extend(filter_parameter(entity, field, None));
        for op in OPERATORS {
            out.extend(filter_parameter(entity, field, Some(*op)));
        }
    }
    out
}

/// Every error status an operation can answer with (statistics add 429).
fn error_responses(statistics: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (status, name) in [
        ("400", "BadRequest"),
        ("401", "Unauthenticated"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("405", "MethodNotAllowed"),
        ("413", "PayloadTooLarge"),
        ("429", "TooManyRequests"),
        ("502", "SourceFailed"),
        ("503", "Unavailable"),
        ("504", "SourceTimeout"),
    ] {
        if status == "429" && !statistics {
            continue;
        }
        out.insert(
            status.into(),
            json!({ "$ref": format!("#/components/responses/{name}") }),
        );
    }
    out.insert(
        "default".into(),
        json!({ "$ref": "#/components/responses/Error" }),
    );
    out
}

/// The codes a status can carry, for the response's description.
fn codes_for(status: u16) -> String {
    ErrorCode::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| format!("`{}`", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_response(status: u16, what: &str, retry_after: bool) -> Value {
    let mut response = json!({
        "description": format!("{what} Codes: {}.", codes_for(status)),
        "content": { "application/json": { "schema": reference("ErrorResponse") } },
    });
    if retry_after {
        response["headers"] = json!({ "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": { "type": "integer", "minimum": 1 },
        } });
    }
    response
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// A GET operation and its HEAD twin (same parameters and statuses, no body).
fn get_and_head(get: Value) -> Value {
    let mut head = get.clone();
    if let Some(op) = head.as_object_mut() {
        let id = op
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        op.insert("operationId".into(), json!(format!("head_{id}")));
        op.insert(
            "summary".into(),
            json!(format!(
                "Headers only of `{id}` (the same checks, policy and audit; no body)."
            )),
        );
        op.remove("description");
        if let Some(Value::Object(responses)) = op.get_mut("responses") {
            for (status, response) in responses.iter_mut() {
                if status.starts_with('2') {
                    *response = json!({ "description": "The headers a GET would answer with." });
                }
            }
        }
    }
    json!({ "get": get, "head": head })
}

fn list_path(entity: &Entity) -> Value {
    let mut parameters = vec![parameter("Purpose")];
    if entity.name == crate::model::DIVISIONS.name {
        parameters.push(parameter("DivisionOptional"));
        parameters.push(parameter("Parent"));
    } else {
        parameters.push(parameter("Division"));
    }
    parameters.extend(["Limit", "Cursor", "Fields", "Strict"].map(parameter));
    parameters.extend(filter_parameters(entity));
    let mut responses = error_responses(false);
    let mut ok = ok_json(
        &format!(
            "A page of {} inside the caller's jurisdiction, as the policy lets the caller see them.",
            entity.name
        ),
        reference(&format!("{}List", schema_name(entity))),
    );
    // How a client walks on from a page (and stateful testers follow).
    // Divisions take `division` or `parent`, which one link cannot say.
    ok["links"] = if entity.name == crate::model::DIVISIONS.name {
        json!({ "firstDivision": {
            "operationId": "get_division",
            "description": "The first division of the page, alone.",
            "parameters": { "code": "$response.body#/data/0/id" },
        } })
    } else {
        json!({ "nextPage": {
            "operationId": list_operation(entity),
            "description": "The next page of the same query.",
            "parameters": {
                "cursor": "$response.body#/page/next_cursor",
                "division": "$request.query.division",
            },
        } })
    };
    responses.insert("200".into(), ok);
    let tag = if entity.name == crate::model::DIVISIONS.name {
        "divisions"
    } else {
        "records"
    };
    get_and_head(json!({
        "operationId": list_operation(entity),
        "summary": format!("List {}", entity.name.replace('-', " ")),
        "description": entity.doc,
        "tags": [tag],
        "parameters": parameters,
        "responses": responses,
    }))
}

fn list_schema(entity: &Entity) -> Value {
    json!({
        "type": "object",
        "description": format!("A page of {}.", entity.name),
        "properties": {
            "data": { "type": "array", "items": reference(&schema_name(entity)) },
            "page": reference("Page"),
            "partial": { "type": "boolean", "description": "True when a source failed and its rows are missing from this page (`sources[]` says which); never with `strict=true`." },
            "sources": { "type": "array", "items": reference("SourceReport") },
            "policy": reference("PolicyReport"),
        },
        "required": ["data", "page", "partial", "sources", "policy"],
    })
}

/// Enumerated fields across every resource, for the statistics filters:
/// (name, values when every resource with that field agrees on them).
fn stats_filter_fields() -> Vec<(&'static str, Option<&'static [&'static str]>)> {
    let mut out: Vec<(&'static str, Option<&'static [&'static str]>)> = Vec::new();
    for entity in ENTITIES {
        for field in entity.fields.iter().filter(|f| !f.values.is_empty()) {
            if RESERVED.contains(&field.name) {
                continue;
            }
            match out.iter_mut().find(|(n, _)| *n == field.name) {
                Some((_, values)) => {
                    if *values != Some(field.values) {
                        *values = None;
                    }
                }
                None => out.push((field.name, Some(field.values))),
            }
        }
    }
    out
}

fn stats_path(classes: &FieldClasses) -> Value {
    let mut groupable: Vec<&str> = ENTITIES
        .iter()
        .flat_map(|e| classes.groupable_fields(e.name))
        .collect();
    groupable.sort_unstable();
    groupable.dedup();
    let mut parameters = vec![
        parameter("Purpose"),
        json!({ "name": "metric", "in": "query", "required": true, "schema": reference("Metric"), "example": "members.count" }),
        parameter("Division"),
        json!({ "name": "group_by", "in": "query", "required": false, "schema": reference("GroupLevel"), "description": "Count per division of this level inside `division` (every one listed, zeros included)." }),
        json!({ "name": "by", "in": "query", "required": false, "schema": { "type": "string", "enum": groupable }, "description": "Count also per value of this category (fields.toml `group = true`), if the resource has it and the policy lets the caller." }),
        parameter("Strict"),
    ];
    for (name, values) in stats_filter_fields() {
        let schema = match values {
            Some(v) => json!({ "type": "string", "enum": v }),
            None => json!({ "type": "string" }),
        };
        parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": format!("Count only records whose `{name}` equals this (resources with the field; categories the caller may group by or sees in clear).") }));
        parameters.push(json!({ "name": format!("{name}[in]"), "in": "query", "required": false, "schema": { "type": "string", "minLength": 1 }, "description": format!("Count only records whose `{name}` is one of these comma-separated values.") }));
    }
    let mut responses = error_responses(true);
    responses.insert(
        "200".into(),
        ok_json(
            "Counts: exact when the caller could list the records and sees every grouping and filter field in clear; otherwise protected (cell-key perturbation; cells below the threshold, zeros included, suppressed). `policy.counts` says which.",
            reference("StatsResponse"),
        ),
    );
    get_and_head(json!({
        "operationId": "get_stats",
        "summary": "Count records per division and category",
        "description": "Counts of one resource inside `division`, optionally per division of a level (`group_by`) and per category (`by`). Callers who may list the records get exact counts; the others protected counts, within a per-caller budget (429 when spent).",
        "tags": ["statistics"],
        "parameters": parameters,
        "responses": responses,
    }))
}

fn error_schemas(schemas: &mut Map<String, Value>) {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let table: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| {
            format!(
                "- `{}` ({}{}): {}",
                c.as_str(),
                c.status().as_u16(),
                if c.retryable() {
                    ", retry can help"
                } else {
                    ""
                },
                c.doc()
            )
        })
        .collect();
    schemas.insert("ErrorCode".into(), json!({
        "type": "string",
        "enum": codes,
        "description": format!("Stable machine code of an error (docs/errors.md). Clients branch on it; retry only the codes marked so.\n\n{}", table.join("\n")),
        "x-enum-descriptions": ErrorCode::ALL.iter().map(|c| c.doc()).collect::<Vec<_>>(),
        "x-lianqiao-retryable": ErrorCode::ALL.iter().filter(|c| c.retryable()).map(|c| c.as_str()).collect::<Vec<_>>(),
    }));
    schemas.insert("ErrorReason".into(), json!({
        "type": "string",
        "enum": crate::error::REASONS.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        "description": format!("Why a credential (401) or an access (403) was refused.\n\n{}", crate::error::REASONS.iter().map(|(r, d)| format!("- `{r}`: {d}")).collect::<Vec<_>>().join("\n")),
    }));
    schemas.insert("ErrorBody".into(), json!({
        "type": "object",
        "properties": {
            "code": reference("ErrorCode"),
            "message": { "type": "string", "description": "What went wrong and what to fix, for people." },
            "source": { "type": "string", "description": "The source that failed (5xx from sources)." },
            "reason": reference("ErrorReason"),
            "retryable": { "type": "boolean", "description": "Whether sending the same request again (after `Retry-After`, when given) can succeed." },
            "policies": { "type": "array", "items": { "type": "string" }, "description": "The policies that decided a refusal (every 403; empty when no policy permits the request at all)." },
            "allowed": { "type": "array", "items": reference("CaseState"), "description": "For `invalid_transition`: the states the caller may move the case to from where it is." },
        },
        "required": ["code", "message", "retryable"],
    }));
    schemas.insert("ErrorResponse".into(), json!({
        "type": "object",
        "properties": {
            "error": reference("ErrorBody"),
            "sources": { "type": "array", "items": reference("SourceReport"), "description": "What each source did, when sources were called." },
        },
        "required": ["error"],
    }));
}

fn common_schemas(purposes: &[String], schemas: &mut Map<String, Value>) {
    schemas.insert("Purpose".into(), json!({
        "type": "string",
        "enum": purposes,
        "description": "Why a caller asks (header `X-Purpose`): the purposes this gateway declares (`[policy] purposes`).",
    }));
    schemas.insert("DivisionCode".into(), json!({
        "type": "string",
        "pattern": "^[0-9]{2,32}$",
        "description": "A unified division code (digits only) in its prefix form (`15` region, `1501` city, `150103` district, `150103001` street, `150103001001` community, longer: grids). The six-digit national forms of a region or city (`150000`, `150100`) are accepted as aliases. See docs/api.md.",
        "examples": ["150103", "1501", "150100", "150103001"],
    }));
    schemas.insert(
        "GroupLevel".into(),
        json!({ "type": "string", "enum": ["region", "city", "district", "street", "community"], "description": "A level of the hierarchy that counts can be grouped by." }),
    );
    schemas.insert(
        "Metric".into(),
        json!({
            "type": "string",
            "enum": ENTITIES
                .iter()
                .map(|e| format!("{}.count", e.name))
                .chain(crate::federation::measures::Measure::ALL.iter().map(|m| format!("cases.{}", m.name())))
                .collect::<Vec<_>>(),
            "description": format!(
                "What to count: `<resource>.count`; or a measure of cases (`measure` in each cell, over the `value` cases behind it, shown only for cells of at least the protection threshold): {}.",
                crate::federation::measures::Measure::ALL
                    .iter()
                    .map(|m| format!("`cases.{}`, {}", m.name(), m.doc()))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    );
    schemas.insert("Page".into(), json!({
        "type": "object",
        "properties": { "next_cursor": { "type": ["string", "null"], "description": "Pass as `cursor` for the next page; null on the last page. An empty page never carries one. Opaque, sealed to the caller and the query." } },
        "required": ["next_cursor"],
    }));
    schemas.insert("SourceStatus".into(), json!({
        "type": "string",
        "enum": ["ok", "error", "timeout", "circuit_open", "skipped"],
        "description": "- `ok`: answered.\n- `error`, `timeout`: failed; its rows are missing (`partial`). The next cursor re-reads it from the same position.\n- `circuit_open`: not called, it failed repeatedly and cools down; as a failure.\n- `skipped`: not called, it has no more rows for this query (returned on earlier pages).",
    }));
    schemas.insert("SourceReport".into(), json!({
        "type": "object",
        "description": "What one source did for this answer.",
        "properties": {
            "name": { "type": "string", "description": "The source's name (`sources/<name>.toml`)." },
            "status": reference("SourceStatus"),
            "latency_ms": { "type": "number", "description": "Time the source's calls took for this answer." },
            "rows": { "type": "integer", "description": "Rows the gateway read from this source for this answer (before the page was cut at `limit`, after the plugin's own filters); not the total it holds." },
            "error": reference("SourceError"),
        },
        "required": ["name", "status", "latency_ms"],
    }));
    schemas.insert(
        "SourceError".into(),
        json!({
            "type": "object",
            "description": "Why a source failed, in the gateway's words.",
            "properties": { "code": reference("ErrorCode"), "message": { "type": "string" } },
            "required": ["code", "message"],
        }),
    );
    schemas.insert("PolicyReport".into(), json!({
        "type": "object",
        "description": "What the access policy did to this answer.",
        "properties": {
            "scope": { "type": "array", "items": { "type": "string" }, "description": "The division codes the answer was drawn from (the request's `division` narrowed to the caller's jurisdiction)." },
            "masked": { "type": "array", "items": { "type": "string" }, "description": "Fields shown masked." },
            "withheld": { "type": "array", "items": { "type": "string" }, "description": "Fields left out." },
            "policies": { "type": "array", "items": { "type": "string" }, "description": "The policies that permitted the answer." },
            "version": { "type": "string", "description": "The policy set's version (a digest of its files)." },
        },
        "required": ["scope"],
    }));
    schemas.insert("StatsCell".into(), json!({
        "type": "object",
        "properties": {
            "division": { "type": ["string", "null"], "description": "The division of the cell (with `group_by`), else the requested division." },
            "key": { "type": ["string", "null"], "description": "A value of the `by` field, or null." },
            "value": { "type": ["integer", "null"], "description": "The count; null when suppressed or not covered." },
            "suppressed": { "type": "boolean", "description": "Below the protection threshold (an empty cell looks the same)." },
            "not_covered": { "type": "boolean", "description": "No connected source serves this division." },
            "measure": { "type": ["number", "null"], "description": "With `metric=cases.<measure>`: the measure of the cell's cases (two decimals); null when fewer cases than the protection threshold are behind it." },
        },
    }));
    schemas.insert("StatsPolicy".into(), json!({
        "type": "object",
        "properties": {
            "scope": { "type": "array", "items": { "type": "string" } },
            "statistics_only": { "type": "boolean", "description": "The caller may count these records but not list them." },
            "counts": { "type": "string", "enum": ["exact", "protected"] },
            "protection": { "type": "object", "properties": {
                "method": { "type": "string", "enum": ["cell-key"] },
                "suppress_below": { "type": "integer" },
                "max_noise": { "type": "integer" },
            } },
            "suppressed": { "type": "integer", "description": "Cells suppressed in this answer." },
            "measure": { "type": "object", "description": "With `metric=cases.<measure>`: what it means and the fewest cases a cell needs to show it.", "properties": {
                "name": { "type": "string" },
                "means": { "type": "string" },
                "min_cases": { "type": "integer" },
                "withheld": { "type": "integer", "description": "Cells whose measure was withheld (too few cases)." },
            } },
            "policies": { "type": "array", "items": { "type": "string" } },
            "version": { "type": "string" },
        },
    }));
    schemas.insert(
        "StatsResponse".into(),
        json!({
            "type": "object",
            "properties": {
                "data": { "type": "array", "items": reference("StatsCell") },
                "partial": { "type": "boolean" },
                "sources": { "type": "array", "items": reference("SourceReport") },
                "policy": reference("StatsPolicy"),
            },
            "required": ["data", "sources", "policy"],
        }),
    );
    schemas.insert(
        "DivisionResponse".into(),
        json!({
            "type": "object",
            "properties": {
                "data": reference("Division"),
                "partial": { "type": "boolean" },
                "sources": { "type": "array", "items": reference("SourceReport") },
            },
            "required": ["data", "sources"],
        }),
    );
    schemas.insert("Explanation".into(), json!({
        "type": "object",
        "description": "The decision, the scope, every field's visibility and the policies that decided them.",
        "additionalProperties": true,
    }));
    schemas.insert(
        "Health".into(),
        json!({
            "type": "object",
            "description": "Liveness or readiness, with each source's state on `/readyz`.",
            "additionalProperties": true,
        }),
    );
}

fn parameters(purposes: &[String], server: &ServerSection) -> Value {
    let mut out = json!({
        "Purpose": {
            "name": "X-Purpose", "in": "header", "required": true,
            "schema": reference("Purpose"),
            "description": "Why the caller asks; recorded in the audit trail and seen by the policy. A missing one is `purpose_required`, one not declared in the gateway's config `unknown_purpose` (both 400).",
            "example": purposes.first().cloned().unwrap_or_default(),
        },
        "Division": {
            "name": "division", "in": "query", "required": true, "schema": reference("DivisionCode"),
            "description": "Any ancestor division; the answer is drawn from its subtree (inside the caller's jurisdiction).",
            "example": "150103",
        },
        "DivisionOptional": {
            "name": "division", "in": "query", "required": false, "schema": reference("DivisionCode"),
            "description": "The subtree to list (give this or `parent`).",
            "example": "150103",
        },
        "Parent": {
            "name": "parent", "in": "query", "required": false, "schema": reference("DivisionCode"),
            "description": "List the children of this division (give this or `division`).",
            "example": "1501",
        },
        "Limit": {
            "name": "limit", "in": "query", "required": false,
            "schema": { "type": "integer", "minimum": 1, "maximum": server.max_page_size, "default": server.default_page_size },
            "description": "Rows per page.",
        },
        "Cursor": {
            "name": "cursor", "in": "query", "required": false, "schema": { "type": "string", "minLength": 1 },
            "description": "`page.next_cursor` of the previous page of the same query, by the same caller.",
        },
        "Fields": {
            "name": "fields", "in": "query", "required": false, "schema": { "type": "string", "minLength": 1 },
            "description": "Comma-separated projection (`id` always comes).",
            "example": "id,name",
        },
        "Strict": {
            "name": "strict", "in": "query", "required": false, "schema": { "type": "boolean", "default": false },
            "description": "Fail (5xx) instead of answering partially when a source fails.",
        },
    });
    cases::parameters(&mut out);
    out
}

fn responses() -> Value {
    let mut out = json!({
        "BadRequest": error_response(400, "The request is malformed or past a limit; the message says what to fix.", false),
        "Unauthenticated": error_response(401, "No valid credential; `reason` says why.", false),
        "Forbidden": error_response(403, "The policy refuses this caller this request; `reason` and `policies` say why.", false),
        "NotFound": error_response(404, "No such route, division or serving source.", false),
        "MethodNotAllowed": error_response(405, "The route does not answer this method (header `Allow` lists those it does: GET and HEAD, and POST for case writes).", false),
        "PayloadTooLarge": error_response(413, &format!("A request body past {} KiB (only case writes take one).", super::MAX_BODY_BYTES / 1024), false),
        "TooManyRequests": error_response(429, "The caller's statistics budget is spent.", true),
        "SourceFailed": error_response(502, "Every source failed, or one did with `strict=true`.", false),
        "Unavailable": error_response(503, "The gateway, its audit trail or a source is unavailable for now.", true),
        "SourceTimeout": error_response(504, "The sources did not answer in time.", false),
        "Error": {
            "description": "Any other error: `error.code` (ErrorCode) says which.",
            "content": { "application/json": { "schema": reference("ErrorResponse") } },
        },
    });
    cases::responses(&mut out);
    out
}

fn operations_paths(paths: &mut Map<String, Value>) {
    for (path, id, summary) in [
        (
            "/healthz",
            "get_health",
            "Liveness: the gateway process answers",
        ),
        (
            "/readyz",
            "get_readiness",
            "Readiness: configuration loaded and sources reachable",
        ),
    ] {
        paths.insert(
            path.into(),
            get_and_head(json!({
                "operationId": id,
                "summary": summary,
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": ok_json("Ready (or alive).", reference("Health")),
                    "503": { "description": "Not ready.", "content": { "application/json": { "schema": reference("Health") } } },
                    "405": { "$ref": "#/components/responses/MethodNotAllowed" },
                    "default": { "$ref": "#/components/responses/Error" },
                },
            })),
        );
    }
    paths.insert(
        "/openapi.json".into(),
        get_and_head(json!({
            "operationId": "get_openapi",
            "summary": "This document",
            "tags": ["operations"],
            "security": [],
            "responses": {
                "200": ok_json("The OpenAPI 3.1 document.", json!({ "type": "object" })),
                "405": { "$ref": "#/components/responses/MethodNotAllowed" },
                "default": { "$ref": "#/components/responses/Error" },
            },
        })),
    );
}

/// The document for a gateway with these field classes, declared purposes
/// and paging limits.
pub fn document(classes: &FieldClasses, purposes: &[String], server: &ServerSection) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for entity in ENTITIES {
        record_schema(entity, classes, &mut schemas);
        schemas.insert(format!("{}List", schema_name(entity)), list_schema(entity));
        paths.insert(format!("/v1/{}", entity.name), list_path(entity));
    }
    let mut one = error_responses(false);
    one.insert(
        "200".into(),
        ok_json("One division.", reference("DivisionResponse")),
    );
    paths.insert(
        "/v1/divisions/{code}".into(),
        get_and_head(json!({
            "operationId": "get_division",
            "summary": "Get one division",
            "description": "One division by code, in prefix or national form (`1501` or `150100`).",
            "tags": ["divisions"],
            "parameters": [
                parameter("Purpose"),
                { "name": "code", "in": "path", "required": true, "schema": reference("DivisionCode"), "example": "150103" },
            ],
            "responses": one,
        })),
    );
    paths.insert("/v1/stats".into(), stats_path(classes));
    let mut explain = error_responses(false);
    explain.insert(
        "200".into(),
        ok_json(
            "The decision, the scope, every field's visibility and the policies that decided them.",
            reference("Explanation"),
        ),
    );
    paths.insert("/v1/_explain".into(), get_and_head(json!({
        "operationId": "explain_access",
        "summary": "Explain what the policy decides",
        "description": "What the policy decides for the caller (or, for policy admins, anyone: `as_level`, `as_division`, `as_roles`, `as_purpose`) asking for a resource, and which policies decided it.",
        "tags": ["policy"],
        "parameters": [
            parameter("Purpose"),
            { "name": "resource", "in": "query", "required": true, "schema": { "type": "string", "enum": ENTITIES.iter().map(|e| e.name).collect::<Vec<_>>() } },
            { "name": "division", "in": "query", "required": false, "schema": reference("DivisionCode") },
            { "name": "action", "in": "query", "required": false, "schema": { "type": "string", "enum": ["list", "aggregate"], "default": "list" } },
            { "name": "as_level", "in": "query", "required": false, "schema": { "type": "string", "enum": ["region", "city", "district", "street", "community", "grid"] }, "description": "Policy admins only." },
            { "name": "as_division", "in": "query", "required": false, "schema": reference("DivisionCode"), "description": "Policy admins only." },
            { "name": "as_roles", "in": "query", "required": false, "schema": { "type": "string" }, "description": "Comma-separated; policy admins only." },
            { "name": "as_purpose", "in": "query", "required": false, "schema": { "type": "string" }, "description": "Policy admins only." },
        ],
        "responses": explain,
    })));
    cases::paths(&mut paths);
    cases::schemas(&mut schemas);
    operations_paths(&mut paths);
    common_schemas(purposes, &mut schemas);
    error_schemas(&mut schemas);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lianqiao governance data API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "One API over the region's party-link system, the city's integrated platform and every district's database (连桥).",
            "description": "Lianqiao (连桥) federates the governance data of Inner Mongolia's party-link system, each city's integrated platform and each district's database behind one API. Every `/v1` request is authenticated, declares its purpose (`X-Purpose`), is decided by one shared access policy (jurisdiction by division, fields masked or withheld by level) and audited. The consumer's guide is docs/api.md.",
            "license": { "name": "Proprietary", "identifier": "LicenseRef-Lianqiao" },
            "contact": { "name": "Lianqiao operators" },
        },
        "servers": [{ "url": "/", "description": "This gateway (the document is served by the gateway it describes)." }],
        "tags": [
            { "name": "divisions", "description": "The administrative hierarchy." },
            { "name": "records", "description": "Governance records: grids, party organizations, members, workers, service centres, cases." },
            { "name": "cases", "description": "Handling a case along the four loops (grid, community, street, city): open it, move it, read its timeline." },
            { "name": "statistics", "description": "Counts, exact or protected by the caller's access." },
            { "name": "policy", "description": "What the access policy decides and why." },
            { "name": "operations", "description": "Health and this document (no credential needed)." },
        ],
        "paths": paths,
        "security": [{ "bearer": [] }, { "apiKey": [] }],
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A token from a configured issuer (claims: sub, level, division, roles)." },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-Api-Key", "description": "A configured API key (server-to-server callers)." },
            },
            "parameters": parameters(purposes, server),
            "schemas": schemas,
            "responses": responses(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_document() -> Value {
        document(
            &FieldClasses::default(),
            &crate::config::PolicySection::default().purposes,
            &ServerSection::default(),
        )
    }

    #[test]
    fn schema_names_are_singular_pascal_case() {
        let names: Vec<String> = ENTITIES.iter().map(|e| schema_name(e)).collect();
        assert_eq!(
            names,
            [
                "Division",
                "Grid",
                "PartyOrg",
                "Member",
                "Worker",
                "ServiceCenter",
                "Case",
                "CaseStep"
            ]
        );
    }

    #[test]
    fn every_operation_declares_each_parameter_once() {
        let doc = test_document();
        let params = doc["components"]["parameters"].clone();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                operations += 1;
                let mut seen = std::collections::HashSet::new();
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let p = match p["$ref"].as_str() {
                        Some(r) => &params[r.rsplit('/').next().unwrap_or_default()],
                        None => p,
                    };
                    let key = (
                        p["name"].as_str().unwrap_or_default().to_ascii_lowercase(),
                        p["in"].as_str().unwrap_or_default().to_string(),
                    );
                    assert!(!key.0.is_empty(), "{method} {path}: unresolved {p}");
                    assert!(seen.insert(key.clone()), "{method} {path}: {key:?} twice");
                }
                if path.starts_with("/v1/") {
                    assert!(
                        seen.contains(&("x-purpose".into(), "header".into())),
                        "{method} {path} lacks X-Purpose"
                    );
                }
            }
        }
        assert!(operations >= 2 * 13, "{operations} operations");
    }

    /// The document declares exactly the methods each route answers (a
    /// route missing from it is a method a client generator cannot call
    /// and a fuzzer expects a 405 from).
    #[test]
    fn the_document_declares_every_route_and_method_the_router_answers() {
        let doc = test_document();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        for (pattern, methods) in crate::api::ROUTES {
            let documented: Vec<(&String, Vec<String>)> = paths
                .iter()
                .filter(|(path, _)| {
                    let concrete = path.replace("{code}", "1").replace("{id}", "1");
                    crate::api::ROUTES
                        .iter()
                        .find(|(p, _)| super::super::route_matches(p, &concrete))
                        .is_some_and(|(p, _)| p == pattern)
                })
                .map(|(path, item)| {
                    let mut m: Vec<String> = item
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(m, _)| m.to_ascii_uppercase())
                        .collect();
                    m.sort();
                    (path, m)
                })
                .collect();
            assert!(!documented.is_empty(), "{pattern} is not in the document");
            let mut want: Vec<String> = methods.split(", ").map(str::to_string).collect();
            want.sort();
            for (path, got) in documented {
                assert_eq!(got, want, "{path} ({pattern})");
            }
        }
    }

    #[test]
    fn every_error_code_is_in_the_document() {
        let doc = test_document();
        let listed = doc["components"]["schemas"]["ErrorCode"]["enum"].clone();
        for code in ErrorCode::ALL {
            assert!(
                listed
                    .as_array()
                    .is_some_and(|l| l.contains(&json!(code.as_str()))),
                "{code} missing"
            );
        }
    }
}
