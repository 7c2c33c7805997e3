//! The OpenAPI 3.1 document of the whole API, generated from the unified
//! model (`crate::model`) and the field classes the gateway enforces, so
//! the document and the handlers cannot drift apart.

use lianqiao_host::contract::ValueKind;
use serde_json::{Map, Value, json};

use crate::model::{ENTITIES, Entity, FieldClasses};

fn schema_of(entity: &Entity, classes: &FieldClasses) -> Value {
    let mut properties = Map::new();
    for field in entity.fields {
        let (ty, format) = match field.kind {
            ValueKind::Boolean => ("boolean", None),
            ValueKind::Integer => ("integer", None),
            ValueKind::Float => ("number", None),
            ValueKind::Text => ("string", None),
            ValueKind::Date => ("string", Some("date")),
            ValueKind::Timestamp => ("string", Some("date-time")),
        };
        let class = classes.class(entity.name, field.name);
        let mask = classes
            .field(entity.name, field.name)
            .map(|f| f.mask)
            .filter(|m| *m != crate::model::Mask::Withhold);
        let mut schema = json!({
            "type": [ty, "null"],
            "description": field.doc,
            "x-lianqiao-class": class.as_str(),
        });
        // A field the policy may show masked is a string of its mask's
        // form (`1985-**-**` is no date); one it may withhold is absent.
        if let Some(m) = mask {
            schema["type"] = json!(["string", "null"]);
            schema["x-lianqiao-mask"] = json!(m);
            schema["description"] = json!(format!(
                "{} Shown masked ({}) to callers the policy lets see it only masked.",
                field.doc,
                serde_json::to_value(m)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
        } else if let Some(f) = format {
            schema["format"] = json!(f);
        }
        if !field.values.is_empty() {
            let mut values: Vec<Value> = field.values.iter().map(|v| json!(v)).collect();
            values.push(Value::Null);
            schema["enum"] = Value::Array(values);
        }
        properties.insert(field.name.to_string(), schema);
    }
    properties.insert(
        "source".into(),
        json!({ "type": "string", "description": "The source the row came from." }),
    );
    json!({ "type": "object", "description": entity.doc, "properties": properties, "required": ["id", "source"] })
}

fn error_responses() -> Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    json!({ "400": error, "401": error, "403": error, "404": error, "502": error, "503": error, "504": error })
}

fn list_parameters(entity: &Entity) -> Vec<Value> {
    let mut params = vec![
        json!({ "name": "division", "in": "query", "required": entity.name != "divisions", "schema": { "type": "string", "pattern": "^[0-9A-Za-z]{2,32}$" }, "description": "Any ancestor division code; the answer is drawn from its subtree." }),
        json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }),
        json!({ "name": "cursor", "in": "query", "schema": { "type": "string" }, "description": "`page.next_cursor` of the previous page." }),
        json!({ "name": "fields", "in": "query", "schema": { "type": "string" }, "description": "Comma-separated projection." }),
        json!({ "name": "strict", "in": "query", "schema": { "type": "boolean" }, "description": "Fail instead of answering partially." }),
    ];
    if entity.name == "divisions" {
        params.push(json!({ "name": "parent", "in": "query", "schema": { "type": "string" }, "description": "List the children of this division." }));
    }
    for field in entity.fields {
        params.push(json!({ "name": field.name, "in": "query", "schema": { "type": "string" }, "description": format!("Filter: `{0}=v`, `{0}[gte]=`, `[lte]`, `[in]=a,b`, `[prefix]=`.", field.name) }));
    }
    params
}

pub fn document(classes: &FieldClasses) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for entity in ENTITIES {
        let schema_name = entity.name.replace('-', "_");
        schemas.insert(schema_name.clone(), schema_of(entity, classes));
        let mut responses = error_responses();
        responses["200"] = json!({
            "description": format!("A page of {}", entity.name),
            "content": { "application/json": { "schema": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": { "$ref": format!("#/components/schemas/{schema_name}") } },
                    "page": { "$ref": "#/components/schemas/Page" },
                    "partial": { "type": "boolean" },
                    "sources": { "type": "array", "items": { "$ref": "#/components/schemas/SourceReport" } },
                    "policy": { "$ref": "#/components/schemas/PolicyReport" },
                },
                "required": ["data", "page", "partial", "sources", "policy"],
            } } },
        });
        paths.insert(
            format!("/v1/{}", entity.name),
            json!({ "get": {
                "operationId": format!("list_{schema_name}"),
                "summary": entity.doc,
                "parameters": list_parameters(entity),
                "responses": responses,
            } }),
        );
    }
    let mut explain = error_responses();
    explain["200"] = json!({ "description": "The decision, the scope, every field's visibility and the policies that decided them", "content": { "application/json": { "schema": { "type": "object" } } } });
    paths.insert("/v1/_explain".into(), json!({ "get": {
        "operationId": "explain",
        "summary": "What the policy decides for the caller (or, for policy admins, anyone) asking for a resource, and which policies decided it.",
        "parameters": [
            { "name": "resource", "in": "query", "required": true, "schema": { "enum": ENTITIES.iter().map(|e| e.name).collect::<Vec<_>>() } },
            { "name": "division", "in": "query", "schema": { "type": "string", "pattern": "^[0-9A-Za-z]{2,32}$" } },
            { "name": "action", "in": "query", "schema": { "enum": ["list", "aggregate"] } },
        ],
        "responses": explain,
    } }));
    let mut one = error_responses();
    one["200"] = json!({ "description": "One division", "content": { "application/json": { "schema": {
        "type": "object",
        "properties": { "data": { "$ref": "#/components/schemas/divisions" }, "partial": { "type": "boolean" }, "sources": { "type": "array", "items": { "$ref": "#/components/schemas/SourceReport" } } },
        "required": ["data", "sources"],
    } } } });
    paths.insert("/v1/divisions/{code}".into(), json!({ "get": {
        "operationId": "get_division",
        "parameters": [{ "name": "code", "in": "path", "required": true, "schema": { "type": "string" } }],
        "responses": one,
    } }));
    let mut stats = error_responses();
    stats["429"] = json!({ "$ref": "#/components/responses/Error" });
    stats["200"] = json!({ "description": "Counts: exact when the caller could list the records and sees every grouping and filter field in clear; otherwise protected (cell-key perturbation; cells below the threshold, zeros included, suppressed). `policy.counts` says which.", "content": { "application/json": { "schema": {
        "type": "object",
        "properties": {
            "data": { "type": "array", "items": { "type": "object", "properties": {
                "division": { "type": "string" },
                "key": { "description": "A value of the grouped field (`by`), or null." },
                "value": { "type": ["integer", "null"] },
                "suppressed": { "type": "boolean", "description": "Below the protection threshold (an empty cell looks the same)." },
                "not_covered": { "type": "boolean", "description": "No connected source serves this division." },
            } } },
            "partial": { "type": "boolean" },
            "sources": { "type": "array", "items": { "$ref": "#/components/schemas/SourceReport" } },
            "policy": { "type": "object", "properties": {
                "scope": { "type": "array", "items": { "type": "string" } },
                "statistics_only": { "type": "boolean" },
                "counts": { "enum": ["exact", "protected"] },
                "protection": { "type": "object", "properties": {
                    "method": { "enum": ["cell-key"] },
                    "suppress_below": { "type": "integer" },
                    "max_noise": { "type": "integer" },
                } },
                "suppressed": { "type": "integer" },
                "policies": { "type": "array", "items": { "type": "string" } },
                "version": { "type": "string" },
            } },
        },
        "required": ["data", "sources", "policy"],
    } } } });
    paths.insert("/v1/stats".into(), json!({ "get": {
        "operationId": "stats",
        "parameters": [
            { "name": "metric", "in": "query", "required": true, "schema": { "type": "string", "pattern": "^[a-z-]+\\.count$" } },
            { "name": "division", "in": "query", "required": true, "schema": { "type": "string" } },
            { "name": "group_by", "in": "query", "schema": { "enum": ["region", "city", "district", "street", "community"] } },
            { "name": "by", "in": "query", "schema": { "type": "string" }, "description": "Count by a field marked groupable in fields.toml (a category: gender, ethnicity, tier, role, status, household_role, loop, state, level), if the policy lets the caller." },
        ],
        "responses": stats,
    } }));
    schemas.insert("PolicyReport".into(), json!({ "type": "object", "description": "What the access policy did to this answer.", "properties": {
        "scope": { "type": "array", "items": { "type": "string" } },
        "masked": { "type": "array", "items": { "type": "string" } },
        "withheld": { "type": "array", "items": { "type": "string" } },
        "policies": { "type": "array", "items": { "type": "string" } },
        "version": { "type": "string" },
    }, "required": ["scope"] }));
    schemas.insert("Page".into(), json!({ "type": "object", "properties": { "next_cursor": { "type": ["string", "null"] } }, "required": ["next_cursor"] }));
    schemas.insert(
        "SourceReport".into(),
        json!({ "type": "object", "properties": {
        "name": { "type": "string" },
        "status": { "enum": ["ok", "error", "timeout", "circuit_open", "skipped"] },
        "latency_ms": { "type": "number" },
        "rows": { "type": "integer" },
        "error": { "$ref": "#/components/schemas/ErrorBody" },
    }, "required": ["name", "status", "latency_ms"] }),
    );
    let codes: Vec<&str> = crate::error::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    schemas.insert("ErrorBody".into(), json!({ "type": "object", "properties": {
        "code": { "enum": codes, "description": "Stable machine code (docs/errors.md)." }, "message": { "type": "string" }, "source": { "type": "string" },
        "reason": { "type": "string", "description": "Why a credential was refused (401)." },
        "policies": { "type": "array", "items": { "type": "string" }, "description": "The policies that denied the request (403)." },
    }, "required": ["code", "message"] }));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lianqiao (连桥) governance data API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One API over the region's party-link system, the city's integrated platform and every district's database.",
        },
        "paths": paths,
        "security": [{ "bearer": [] }, { "apiKey": [] }],
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A token from a configured issuer (claims: sub, level, division, roles). Every /v1 request also declares its purpose in the `X-Purpose` header." },
                "apiKey": { "type": "apiKey", "in": "header", "name": "X-Api-Key" },
            },
            "schemas": schemas,
            "responses": { "Error": {
                "description": "An error with a stable machine code and a message that says what to fix.",
                "content": { "application/json": { "schema": { "type": "object", "properties": {
                    "error": { "$ref": "#/components/schemas/ErrorBody" },
                    "sources": { "type": "array", "items": { "$ref": "#/components/schemas/SourceReport" } },
                }, "required": ["error"] } } },
            } },
        },
    })
}
