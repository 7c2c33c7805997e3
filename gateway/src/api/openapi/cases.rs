//! The case-handling part of the document: `POST /v1/cases`,
//! `GET /v1/cases/{id}` and `POST /v1/cases/{id}/transitions`, with their
//! bodies, the `Idempotency-Key` header and the write-only statuses (409,
//! 422). The limits are the handlers' own constants.

use serde_json::{Map, Value, json};

use super::{error_response, error_responses, get_and_head, ok_json, parameter, reference};
use crate::api::cases::{CATEGORY_MAX, NAME_MAX, NOTE_MAX, PHONE_MAX, TITLE_MAX};

/// Statuses a write adds to a read's: conflicts and refused bodies.
fn write_responses() -> Map<String, Value> {
    let mut out = error_responses(false);
    out.insert(
        "409".into(),
        json!({ "$ref": "#/components/responses/Conflict" }),
    );
    out.insert(
        "422".into(),
        json!({ "$ref": "#/components/responses/Unprocessable" }),
    );
    out
}

pub(super) fn responses(into: &mut Value) {
    into["Conflict"] = error_response(
        409,
        "The case is not where the move starts (`error.allowed` lists the moves the caller may make), it changed meanwhile, or a write with the same `Idempotency-Key` is still running (`Retry-After`).",
        true,
    );
    into["Unprocessable"] = error_response(
        422,
        "The `Idempotency-Key` was used for another body, or the district's system refused the write; the case is unchanged.",
        false,
    );
}

pub(super) fn parameters(into: &mut Value) {
    into["IdempotencyKey"] = json!({
        "name": "Idempotency-Key", "in": "header", "required": true,
        "schema": { "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$" },
        "description": "A key unique to this write (a UUID). A retry sends the same key and body and gets the first result; the same key with another body is `idempotency_key_reused` (422). Kept 24 hours per caller.",
        "example": "0b8f7c3e-4a65-4d1c-9a57-1f0e2d3c4b5a",
    });
    into["CaseId"] = json!({
        "name": "id", "in": "path", "required": true,
        "schema": { "type": "string", "minLength": 1, "maxLength": 64 },
        "description": "The case's id, as `GET /v1/cases` lists it.",
        "example": "150103-G0001",
    });
}

pub(super) fn schemas(into: &mut Map<String, Value>) {
    let optional = |max: usize, doc: &str| json!({ "type": ["string", "null"], "maxLength": max, "description": doc });
    into.insert("NewCase".into(), json!({
        "type": "object",
        "description": "A problem found in a grid. The case opens in the caller's loop (a grid worker's in the grid loop) as `discovered`.",
        "properties": {
            "division": { "type": "string", "pattern": "^[0-9]{14,32}$", "description": "The grid where the problem is." },
            "title": { "type": "string", "minLength": 1, "maxLength": TITLE_MAX, "description": "What the problem is, in a line." },
            "category": { "type": "string", "minLength": 1, "maxLength": CATEGORY_MAX, "description": "Its kind, in the district's words (矛盾纠纷, 环境卫生, …)." },
            "reporter_name": optional(NAME_MAX, "Who reported it (personal data: masked or withheld by level when read)."),
            "reporter_phone": optional(PHONE_MAX, "Their phone (personal data)."),
            "due_at": { "type": ["string", "null"], "format": "date-time", "description": "When it must be closed (RFC 3339)." },
            "note": optional(NOTE_MAX, "The first step's note."),
        },
        "required": ["division", "title", "category"],
        "additionalProperties": false,
        "example": { "division": "15010300100101", "title": "楼道堆放杂物", "category": "环境卫生", "note": "网格巡查发现" },
    }));
    into.insert("CaseTransition".into(), json!({
        "type": "object",
        "description": "One move of a case along its loop (docs/cases.md has the table). `escalated` hands it to the loop above; `closed` needs `satisfaction`; moves the table marks so need a `note`.",
        "properties": {
            "to": reference("CaseState"),
            "note": optional(NOTE_MAX, "Why, or what was done."),
            "satisfaction": { "type": ["integer", "null"], "minimum": 1, "maximum": 5, "description": "The reporter's satisfaction, 1 to 5 (on `closed`)." },
        },
        "required": ["to"],
        "additionalProperties": false,
        "example": { "to": "assessed", "note": "属实，网格内处置" },
    }));
    into.insert("CaseResponse".into(), json!({
        "type": "object",
        "description": "A case and one timeline of its steps (and of its linked record's, in the city's platform), as the caller may see them.",
        "properties": {
            "data": reference("Case"),
            "timeline": { "type": "array", "items": reference("CaseStep"), "description": "The steps, oldest first." },
            "partial": { "type": "boolean", "description": "True when a source failed and some steps may be missing." },
            "sources": { "type": "array", "items": reference("SourceReport") },
            "policy": reference("PolicyReport"),
        },
        "required": ["data", "timeline", "sources"],
    }));
}

fn case_links() -> Value {
    json!({
        "getCase": {
            "operationId": "get_case",
            "description": "The case as it is now.",
            "parameters": { "id": "$response.body#/data/id" },
        },
    })
}

pub(super) fn paths(paths: &mut Map<String, Value>) {
    let mut created = write_responses();
    let mut ok = ok_json(
        "The case as opened (the same body again for a retry with the same key).",
        reference("CaseResponse"),
    );
    ok["links"] = case_links();
    created.insert("201".into(), ok);
    let create = json!({
        "operationId": "create_case",
        "summary": "Open a case",
        "description": "Open a case in a grid of the caller's jurisdiction, in the district's own system. The policy decides who may (grid and community staff, in their loop).",
        "tags": ["cases"],
        "parameters": [parameter("Purpose"), parameter("IdempotencyKey")],
        "requestBody": { "required": true, "content": { "application/json": { "schema": reference("NewCase") } } },
        "responses": created,
    });
    // `GET /v1/cases` is the list (`list_cases`), written with the others.
    if let Some(Value::Object(item)) = paths.get_mut("/v1/cases") {
        item.insert("post".into(), create);
    }

    let mut one = error_responses(false);
    one.insert(
        "200".into(),
        ok_json("The case and its timeline.", reference("CaseResponse")),
    );
    paths.insert(
        "/v1/cases/{id}".into(),
        get_and_head(json!({
            "operationId": "get_case",
            "summary": "Get one case with its timeline",
            "description": "The case, if the caller may see it, with every step of it and of its linked record in the city's platform, masked as lists are.",
            "tags": ["cases"],
            "parameters": [parameter("Purpose"), parameter("CaseId")],
            "responses": one,
        })),
    );

    let mut moved = write_responses();
    let mut ok = ok_json(
        "The case after the move (the same body again for a retry with the same key).",
        reference("CaseResponse"),
    );
    ok["links"] = case_links();
    moved.insert("200".into(), ok);
    paths.insert(
        "/v1/cases/{id}/transitions".into(),
        json!({ "post": {
            "operationId": "transition_case",
            "summary": "Move a case along its loop",
            "description": "Move a case to another state, or escalate it to the loop above. The policy is asked first (a caller outside the case's jurisdiction learns nothing of it), then the transition table.",
            "tags": ["cases"],
            "parameters": [parameter("Purpose"), parameter("CaseId"), parameter("IdempotencyKey")],
            "requestBody": { "required": true, "content": { "application/json": { "schema": reference("CaseTransition") } } },
            "responses": moved,
        } }),
    );
}
