//! `POST /v1/cases`, `POST /v1/cases/{id}/transitions`, `GET /v1/cases/{id}`:
//! the closed loop as one read–write API (see `crate::cases`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lianqiao_host::contract::{Command, FilterOp, NewCase, Step, Transition, Value};
use lianqiao_policy::Principal;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::{authorize, fetch, respond};
use crate::cases::ids::{case_id, local_now, new_step_id};
use crate::cases::read::{Located, locate};
use crate::cases::transitions::{NEW, loop_above};
use crate::cases::{Begin, Effect, Transitions};
use crate::disclosure::{self, Facts, Released, WriteFacts};
use crate::error::{ApiError, Detail, ErrorCode};
use crate::federation::{FieldFilter, ListRequest};
use crate::model;
use crate::state::Gateway;

/// `POST /v1/cases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCaseBody {
    /// The grid where the problem is.
    division: String,
    title: String,
    category: String,
    #[serde(default)]
    reporter_name: Option<String>,
    #[serde(default)]
    reporter_phone: Option<String>,
    #[serde(default)]
    due_at: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/cases/{id}/transitions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    to: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    satisfaction: Option<i64>,
}

/// Longest texts a case write takes (characters); the OpenAPI document
/// states the same limits.
pub(super) const TITLE_MAX: usize = 200;
pub(super) const CATEGORY_MAX: usize = 50;
pub(super) const NAME_MAX: usize = 50;
pub(super) const PHONE_MAX: usize = 32;
pub(super) const NOTE_MAX: usize = 2000;

/// An optional text: absent or blank is none, past `max` an error.
fn optional_text(
    name: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::invalid(format!(
            "`{name}` must be at most {max} characters"
        ))),
        Some(v) if v.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// `due_at`: an RFC 3339 date-time (`2026-12-03T18:00:00+08:00`),
/// normalised to upper case as the districts store it.
fn due_at(value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(raw) = value else { return Ok(None) };
    let t = raw.to_ascii_uppercase();
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u32>().ok())
    };
    let mut ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && digits(0..4).is_some()
        && digits(5..7).is_some_and(|m| (1..=12).contains(&m))
        && digits(8..10).is_some_and(|d| (1..=31).contains(&d))
        && digits(11..13).is_some_and(|h| h < 24)
        && digits(14..16).is_some_and(|m| m < 60)
        && digits(17..19).is_some_and(|s| s < 61);
    if ok {
        let mut rest = &t[19..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
            ok = n > 0;
            rest = &fraction[n..];
        }
        ok = ok
            && (rest == "Z"
                || (rest.len() == 6
                    && matches!(rest.as_bytes()[0], b'+' | b'-')
                    && rest.as_bytes()[3] == b':'
                    && rest[1..3].parse::<u32>().is_ok_and(|h| h < 24)
                    && rest[4..6].parse::<u32>().is_ok_and(|m| m < 60)
                    && rest[1..3]
                        .bytes()
                        .chain(rest[4..6].bytes())
                        .all(|c| c.is_ascii_digit())));
    }
    if !ok {
        return Err(ApiError::invalid(format!(
            "`due_at` must be an RFC 3339 date-time like 2026-12-31T18:00:00+08:00, got `{raw}`"
        )));
    }
    Ok(Some(t))
}

fn text_limit(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(ApiError::invalid(format!(
            "`{name}` must be 1 to {max} characters"
        )));
    }
    Ok(())
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if key.is_empty() {
        return Err(ApiError::missing(
            "header `Idempotency-Key` is required on every write (e.g. a UUID); a retry sends the same key and body",
        ));
    }
    if key.len() > 128 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "`Idempotency-Key` must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(key.to_string())
}

/// The request's body, or 413 when it ran past `MAX_BODY_BYTES` without
/// declaring its length.
fn read_body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|e| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body could not be read ({e}); case writes take a JSON object of at most {} bytes",
                super::MAX_BODY_BYTES
            ),
        )
    })
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(format!(
            "the body is not a valid JSON object for this route: {e}"
        ))
    })
}

/// Run a write under its idempotency key: a repeat gets the first result.
async fn idempotent(
    gateway: &Gateway,
    principal: &Principal,
    headers: &HeaderMap,
    route: &str,
    bytes: &[u8],
    facts: &mut Facts,
    write: impl AsyncFnOnce(&mut Facts) -> Result<(StatusCode, Released), ApiError>,
) -> Response {
    let key = match idempotency_key(headers) {
        Ok(k) => k,
        Err(e) => return respond(Err(e), std::mem::take(facts)),
    };
    let mut sha = Sha256::new();
    sha.update(route.as_bytes());
    sha.update([0]);
    sha.update(bytes);
    let sha = hex::encode(sha.finalize());
    facts.write = Some(WriteFacts {
        idempotency_key: key.clone(),
        ..WriteFacts::default()
    });
    let store = &gateway.writes;
    let outcome = match store.begin(&principal.id, &key, &sha).await {
        Err(e) => Err(ApiError::new(
            ErrorCode::AuditUnavailable,
            format!(
                "the gateway's store cannot record this write, so nothing was changed ({e}); retry later"
            ),
        )),
        Ok(Begin::Mismatch) => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            format!(
                "`Idempotency-Key: {key}` was used for another request; send a new key for a new write"
            ),
        )),
        Ok(Begin::InProgress) => Err(ApiError::retry_after(
            ErrorCode::WriteInProgress,
            format!("the write with `Idempotency-Key: {key}` is still being applied"),
            1,
        )),
        Ok(Begin::Replay { status, body }) => {
            if let Some(w) = facts.write.as_mut() {
                w.replayed = true;
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok((status, disclosure::replayed(body)))
        }
        Ok(Begin::New) => match write(facts).await {
            Ok((status, released)) => {
                let text = String::from_utf8_lossy(released.bytes()).into_owned();
                if let Err(e) = store
                    .finish(&principal.id, &key, status.as_u16(), &text)
                    .await
                {
                    tracing::error!(error = %e, "a write succeeded but its idempotency record did not; a retry may repeat it");
                }
                Ok((status, released))
            }
            Err(e) => {
                // Nothing was written (or the source refused): a retry may run again.
                if let Err(f) = store.forget(&principal.id, &key).await {
                    tracing::warn!(error = %f, "cannot release an idempotency key");
                }
                Err(e)
            }
        },
    };
    let facts = std::mem::take(facts);
    match outcome {
        Ok((status, released)) => {
            let mut response = (status, released).into_response();
            response.extensions_mut().insert(facts);
            response
        }
        Err(e) => respond(Err(e), facts),
    }
}

/// `POST /v1/cases`: open a case in a grid (grid and community staff).
pub async fn create(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let mut facts = Facts::default();
    let bytes = match read_body(bytes) {
        Ok(b) => b,
        Err(e) => return respond(Err(e), facts),
    };
    let g = &gateway;
    let p = &principal;
    idempotent(
        g,
        p,
        &headers,
        "POST /v1/cases",
        &bytes,
        &mut facts,
        async |facts: &mut Facts| {
            let body: NewCaseBody = body(&bytes)?;
            create_inner(g, p, body, facts).await
        },
    )
    .await
}

async fn create_inner(
    gateway: &Gateway,
    principal: &Principal,
    body: NewCaseBody,
    facts: &mut Facts,
) -> Result<(StatusCode, Released), ApiError> {
    let division = super::params::division_code("division", &body.division)?;
    if division.len() < 14 {
        return Err(ApiError::invalid(format!(
            "`division` must be the grid where the problem is (14 digits or more), not {division}"
        )));
    }
    text_limit("title", &body.title, TITLE_MAX)?;
    text_limit("category", &body.category, CATEGORY_MAX)?;
    let reporter_name = optional_text("reporter_name", body.reporter_name, NAME_MAX)?;
    let reporter_phone = optional_text("reporter_phone", body.reporter_phone, PHONE_MAX)?;
    let note = optional_text("note", body.note, NOTE_MAX)?;
    let due_at = due_at(body.due_at)?;
    let case_loop = principal.level.as_str();
    may_write(
        gateway,
        principal,
        &division,
        case_loop,
        "discovered",
        facts,
    )
    .map_err(|d| refused(d, &format!("open a case in {division}")))?;
    if gateway
        .transitions
        .find(case_loop, NEW, "discovered")
        .is_none()
    {
        return Err(invalid_transition(case_loop, NEW, "discovered", vec![]));
    }
    let source = writer_for(gateway, &division)?;
    // The id follows from the caller and the idempotency key: a retry
    // after a crash (its key taken over) finds the case the first attempt
    // made instead of making a second.
    let key = facts
        .write
        .as_ref()
        .map(|w| w.idempotency_key.clone())
        .unwrap_or_default();
    let id = case_id(&division, &principal.id, &key);
    let at = local_now();
    let command = Command::CreateCase(NewCase {
        id: id.clone(),
        division: division.clone(),
        title: body.title,
        category: body.category,
        case_loop: case_loop.to_string(),
        reporter_name,
        reporter_phone,
        due_at,
        linked_case: None,
        first: Step {
            id: format!("{id}.1"),
            state: "discovered".into(),
            case_loop: case_loop.to_string(),
            at,
            by_level: principal.level.as_str().to_string(),
            note,
        },
    });
    if let Some(w) = facts.write.as_mut() {
        w.case = id.clone();
        w.source = source.name().to_string();
        w.from = NEW.into();
        w.to = "discovered".into();
    }
    match apply(&source, command, facts).await {
        Ok(()) => {}
        // Made already, under this key, by an attempt cut short.
        Err(e) if e.code == ErrorCode::CaseChanged => {
            let made = read_case(gateway, principal, &id, facts)
                .await
                .map_err(|_| e)?;
            return Ok((StatusCode::CREATED, made));
        }
        Err(e) => return Err(e),
    }
    let released = read_case(gateway, principal, &id, facts).await?;
    Ok((StatusCode::CREATED, released))
}

/// `POST /v1/cases/{id}/transitions`.
pub async fn transition(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    let mut facts = Facts::default();
    let bytes = match read_body(bytes) {
        Ok(b) => b,
        Err(e) => return respond(Err(e), facts),
    };
    let g = &gateway;
    let p = &principal;
    let route = format!("POST /v1/cases/{id}/transitions");
    let (b, case_id) = (&bytes, id.as_str());
    idempotent(
        g,
        p,
        &headers,
        &route,
        b,
        &mut facts,
        async move |facts: &mut Facts| {
            let body: TransitionBody = body(b)?;
            transition_inner(g, p, case_id, body, facts).await
        },
    )
    .await
}

async fn transition_inner(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    body: TransitionBody,
    facts: &mut Facts,
) -> Result<(StatusCode, Released), ApiError> {
    if !model::CASE_STATES.contains(&body.to.as_str()) {
        return Err(ApiError::invalid(format!(
            "`to` must be one of {}",
            model::CASE_STATES.join(", ")
        )));
    }
    let note = optional_text("note", body.note, NOTE_MAX)?;
    let body = TransitionBody { note, ..body };
    let found = find(gateway, principal, id, facts).await?;
    let enforcer = &gateway.config.enforcer;
    may_write(
        gateway,
        principal,
        &found.division,
        &found.case_loop,
        &body.to,
        facts,
    )
    .map_err(|d| refused(d, &format!("move case {id} to `{}`", body.to)))?;
    let Some(rule) = gateway
        .transitions
        .find(&found.case_loop, &found.state, &body.to)
    else {
        let allowed = gateway
            .transitions
            .from(&found.case_loop, &found.state)
            .into_iter()
            .filter(|to| {
                enforcer
                    .authorize_write(principal, &found.division, &found.case_loop, to)
                    .is_ok()
            })
            .map(str::to_string)
            .collect();
        return Err(invalid_transition(
            &found.case_loop,
            &found.state,
            &body.to,
            allowed,
        ));
    };
    for field in &rule.requires {
        let missing = match field.as_str() {
            "satisfaction" => body.satisfaction.is_none(),
            _ => body.note.as_deref().is_none_or(|n| n.trim().is_empty()),
        };
        if missing {
            return Err(ApiError::missing(format!(
                "moving to `{}` needs `{field}` in the body",
                body.to
            )));
        }
    }
    if let Some(s) = body.satisfaction
        && !(1..=5).contains(&s)
    {
        return Err(ApiError::invalid("`satisfaction` must be from 1 to 5"));
    }
    let (to_state, to_loop) = match Transitions::effect(&body.to) {
        Effect::Step => (body.to.clone(), found.case_loop.clone()),
        Effect::Escalate => match loop_above(&found.case_loop) {
            Some(above) => ("assessed".to_string(), above.to_string()),
            None => {
                return Err(invalid_transition(
                    &found.case_loop,
                    &found.state,
                    &body.to,
                    vec![],
                ));
            }
        },
        Effect::Whistle => {
            return whistle(gateway, principal, found, body.note, facts).await;
        }
    };
    let source = gateway
        .sources
        .get(&found.source)
        .ok_or_else(|| ApiError::not_found(format!("no case {id}")))?;
    if let Some(w) = facts.write.as_mut() {
        w.case = id.to_string();
        w.source = source.name().to_string();
        w.from = found.state.clone();
        w.to = body.to.clone();
    }
    let command = Command::TransitionCase(Transition {
        id: id.to_string(),
        division: found.division.clone(),
        from_state: found.state.clone(),
        from_loop: found.case_loop.clone(),
        to_state,
        to_loop: to_loop.clone(),
        step: Step {
            id: new_step_id(id),
            state: body.to.clone(),
            case_loop: to_loop,
            at: local_now(),
            by_level: principal.level.as_str().to_string(),
            note: body.note,
        },
        satisfaction: body.satisfaction,
        linked_case: None,
    });
    // A city-loop case is the city platform's record: the move is made
    // there first, then on the district record that mirrors it.
    if found.case_loop == "city"
        && let Some(linked) = found.text("linked_case")
        && let Some(city) = gateway.whistle_source()
    {
        let mut on_city = command.clone();
        if let Command::TransitionCase(t) = &mut on_city {
            t.id = linked.clone();
        }
        apply(&city, on_city, facts).await?;
        facts.sources.push(source.name().to_string());
        if let Err(e) = apply(&source, command, facts).await
            && e.code != ErrorCode::CaseChanged
        {
            // The city moved; the worker's mirror brings the district
            // record along when it can.
            tracing::warn!(case = id, error = %e.message, "a city move is not mirrored yet");
        }
    } else {
        apply(&source, command, facts).await?;
    }
    let released = read_case(gateway, principal, id, facts).await?;
    Ok((StatusCode::OK, released))
}

/// `whistled`: record the saga in the outbox, then work it at once. Done,
/// the case (now in the city loop, linked) answers 200; a city that is
/// down for now leaves it `whistled` and the worker finishing it (202); a
/// city that refuses it undoes the whistle (422, the case back at
/// `assessed`).
async fn whistle(
    gateway: &Gateway,
    principal: &Principal,
    found: Located,
    note: Option<String>,
    facts: &mut Facts,
) -> Result<(StatusCode, Released), ApiError> {
    use crate::cases::outbox::{Stage, Whistle};
    use crate::escalation::saga::{self, Worker};
    if gateway.transitions.whistle_to.is_none() {
        return Err(ApiError::unsupported(
            "this gateway files no city cases (`whistle_to` in cases.toml); the case is unchanged",
        ));
    }
    let id = found.text("id").unwrap_or_default();
    let key = facts
        .write
        .as_ref()
        .map(|w| w.idempotency_key.clone())
        .unwrap_or_default();
    if let Some(w) = facts.write.as_mut() {
        w.case = id.clone();
        w.source = found.source.clone();
        w.from = found.state.clone();
        w.to = "whistled".into();
    }
    facts.sources = vec![found.source.clone()];
    let entry_id = saga::entry_id(&principal.id, &key);
    let payload = Whistle {
        case_id: id.clone(),
        division: found.division.clone(),
        district_source: found.source.clone(),
        title: found.text("title").unwrap_or_default(),
        category: found.text("category").unwrap_or_default(),
        due_at: found.text("due_at"),
        reporter_name: found.text("reporter_name"),
        reporter_phone: found.text("reporter_phone"),
        note,
        step_id: new_step_id(&id),
        at: local_now(),
    };
    let unavailable = |e: String| {
        ApiError::new(
            ErrorCode::AuditUnavailable,
            format!(
                "the gateway's store cannot record the whistle, so nothing was changed ({e}); retry later"
            ),
        )
    };
    gateway
        .writes
        .enqueue(&entry_id, &payload)
        .await
        .map_err(unavailable)?;
    let entry = saga::drive(gateway, &Worker::of(gateway), &entry_id, usize::MAX)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::not_found(format!("no case {id} that you may move")))?;
    let status = match entry.stage {
        Stage::Done => StatusCode::OK,
        Stage::Failed if entry.error.contains("moved before") => {
            return Err(ApiError::new(
                ErrorCode::CaseChanged,
                format!("case {id} {}", entry.error.trim_start_matches("the case ")),
            ));
        }
        Stage::Failed => {
            return Err(ApiError::new(
                ErrorCode::SourceRejected,
                format!("{}; case {id} is back at `assessed`", entry.error),
            ));
        }
        _ => StatusCode::ACCEPTED,
    };
    let released = read_case(gateway, principal, &id, facts).await?;
    Ok((status, released))
}

/// Ask the policy whether `principal` may move a `case_loop` case in
/// `division` to `to`; the deciding policies go into the audit facts.
fn may_write(
    gateway: &Gateway,
    principal: &Principal,
    division: &str,
    case_loop: &str,
    to: &str,
    facts: &mut Facts,
) -> Result<(), lianqiao_policy::Denied> {
    let decided = gateway
        .config
        .enforcer
        .authorize_write(principal, division, case_loop, to);
    match &decided {
        Ok(policies) => facts.policies = policies.clone(),
        Err(d) => {
            facts.decision = Some("deny");
            facts.policies = d.policies.clone();
        }
    }
    decided.map(|_| ())
}

/// The 403 for a refused write. Its message quotes only what the caller
/// sent (`what`: the case id or the division asked for, the target state): the policy's own message names the
/// case's division and loop, which a caller outside its jurisdiction must
/// not learn; the deciding policies and the reason are kept.
fn refused(denied: lianqiao_policy::Denied, what: &str) -> ApiError {
    let message = if denied.policies.is_empty() {
        format!("no policy permits you to {what}")
    } else {
        format!(
            "you may not {what}: forbidden by policy {}",
            denied
                .policies
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    ApiError::forbidden(denied.reason, message, denied.policies)
}

fn invalid_transition(case_loop: &str, from: &str, to: &str, allowed: Vec<String>) -> ApiError {
    let message = if allowed.is_empty() {
        format!(
            "a {case_loop}-loop case in `{from}` cannot move to `{to}`, and you may make no move from there"
        )
    } else {
        format!(
            "a {case_loop}-loop case in `{from}` cannot move to `{to}`; you may move it to: {}",
            allowed.join(", ")
        )
    };
    ApiError {
        detail: Some(Box::new(Detail {
            allowed: Some(allowed),
            ..Detail::default()
        })),
        ..ApiError::new(ErrorCode::InvalidTransition, message)
    }
}

/// The district source that takes case commands for `division`: the most
/// specific coverage wins (the district's database, not the city platform
/// that also lists the district).
fn writer_for(gateway: &Gateway, division: &str) -> Result<Arc<crate::sources::Source>, ApiError> {
    gateway
        .sources
        .sources
        .iter()
        .filter(|s| s.plugin.takes_commands())
        .filter(|s| {
            s.plugin
                .manifest()
                .entities
                .iter()
                .any(|e| e.name == "cases")
        })
        .filter_map(|s| {
            s.config
                .coverage
                .iter()
                .filter(|c| division.starts_with(c.as_str()))
                .map(|c| c.len())
                .max()
                .map(|len| (len, s))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s.clone())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no source takes case writes for division {division}; connected sources cover: {}",
                gateway.coverage_summary()
            ))
        })
}

/// Send one command through the source's call stack (breaker, limits).
async fn apply(
    source: &crate::sources::Source,
    command: Command,
    facts: &mut Facts,
) -> Result<(), ApiError> {
    let key = facts
        .write
        .as_ref()
        .map(|w| w.idempotency_key.clone())
        .unwrap_or_default();
    if !facts.sources.iter().any(|s| s == source.name()) {
        facts.sources.push(source.name().to_string());
    }
    source.command(command, key).await.map_err(|e| {
        tracing::warn!(source = source.name(), error = %crate::redact::operator(&e), "case write failed");
        let code = ErrorCode::of(&e);
        ApiError {
            source: Some(source.name().to_string()),
            ..ApiError::new(
                code,
                format!(
                    "source `{}`: {}; the case is unchanged",
                    source.name(),
                    crate::error::public_message(&e)
                ),
            )
        }
    })?;
    Ok(())
}

/// Find a case for a write, in the caller's district (a case elsewhere in
/// the district is found, so moving it is refused by the policy with 403,
/// not a 404 that hides a typo); outside it, 404.
async fn find(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    facts: &mut Facts,
) -> Result<Located, ApiError> {
    let d = &principal.division;
    let scope = if d.len() > 6 { &d[..6] } else { d.as_str() };
    match locate(&gateway.sources, scope, id).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(ApiError::not_found(format!(
            "no case {id} that you may move"
        ))),
        Err((request, e)) => Err(super::list_error(
            gateway,
            request.entity,
            &request.scope,
            e,
            facts,
        )),
    }
}

/// `GET /v1/cases/{id}`: the case with one timeline across both systems.
pub async fn get(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let mut facts = Facts::default();
    let result = read_case(&gateway, &principal, &id, &mut facts).await;
    respond(result, facts)
}

/// Pages walked at most for one case or its steps.
const MAX_PAGES: usize = 1000;

/// The first page of `request` that has a row (a source the id filter
/// cannot be pushed to is filtered by the gateway, a page at a time, and
/// its first pages can come back empty with a cursor).
async fn fetch_until_found(
    gateway: &Gateway,
    request: &mut ListRequest,
    facts: &mut Facts,
) -> Result<crate::federation::ListOutcome, ApiError> {
    let mut outcome = fetch(gateway, request, facts).await?;
    let mut pages = 1;
    while outcome.rows.is_empty()
        && pages < MAX_PAGES
        && let Some(next) = outcome.next.take()
    {
        request.cursor = Some(next);
        outcome = fetch(gateway, request, facts).await?;
        pages += 1;
    }
    Ok(outcome)
}

/// The case as the caller may see it, through the disclosure gate, with
/// the steps of it and of its linked record.
async fn read_case(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    facts: &mut Facts,
) -> Result<Released, ApiError> {
    let one = |entity: &'static model::Entity, field: &str, values: Vec<Value>, limit| {
        entity.field(field).map(|f| ListRequest {
            entity,
            scope: vec![principal.division.clone()],
            filters: vec![FieldFilter {
                field: f,
                op: FilterOp::OneOf,
                values,
            }],
            projection: entity.field_names(),
            output: entity.field_names(),
            limit,
            cursor: None,
            strict: false,
        })
    };
    let mut request = one(&model::CASES, "id", vec![Value::Text(id.to_string())], 2)
        .ok_or_else(|| ApiError::not_found("no id field"))?;
    let gate = authorize(gateway, principal, &mut request, None, facts)?;
    let outcome = fetch_until_found(gateway, &mut request, facts).await?;
    let case = gate.release_one(outcome, &request, facts, || {
        ApiError::not_found(format!("no case {id} that you may see"))
    })?;
    let mut ids = vec![Value::Text(id.to_string())];
    if let Some(linked) = case.body()["data"]["linked_case"].as_str() {
        ids.push(Value::Text(linked.to_string()));
    }
    let mut steps = one(&model::CASE_STEPS, "case_id", ids, 1000)
        .ok_or_else(|| ApiError::not_found("no case_id field"))?;
    let rows = facts.rows;
    let gate = authorize(gateway, principal, &mut steps, None, facts)?;
    let mut outcome = fetch(gateway, &steps, facts).await?;
    // Every step (a source that cannot filter by case pages through).
    let mut pages = 1;
    while let Some(next) = outcome.next.take()
        && pages < MAX_PAGES
    {
        steps.cursor = Some(next);
        let more = fetch(gateway, &steps, facts).await?;
        outcome.rows.extend(more.rows);
        outcome.next = more.next;
        outcome.reports = more.reports;
        pages += 1;
    }
    let timeline = gate.release(outcome, &steps, facts);
    facts.rows += rows;
    Ok(disclosure::case_with_timeline(case, timeline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_takes_rfc3339_date_times_only() {
        for good in [
            "2026-12-31T18:00:00+08:00",
            "2026-12-31t10:00:00.5z",
            "2026-02-01T00:00:00Z",
        ] {
            assert!(due_at(Some(good.into())).is_ok(), "{good}");
        }
        assert_eq!(
            due_at(Some("2026-12-31t10:00:00z".into())).ok().flatten(),
            Some("2026-12-31T10:00:00Z".into())
        );
        for bad in [
            "",
            "2026-12-31",
            "2026-13-01T00:00:00Z",
            "2026-12-31T24:00:00Z",
            "2026-12-31T18:00:00",
            "2026-12-31T18:00:00+0800",
            "2026-12-31T18:00:00.Z",
            "2026-12-31T18:00:00+08:0x",
            "２０２６-12-31T18:00:00Z",
        ] {
            assert!(due_at(Some(bad.into())).is_err(), "{bad}");
        }
    }

    #[test]
    fn optional_texts_are_bounded_and_blank_is_none() {
        assert_eq!(optional_text("note", Some("  ".into()), 5).ok(), Some(None));
        assert!(optional_text("note", Some("六个字的备注".into()), 5).is_err());
        assert_eq!(
            optional_text("note", Some("五个字备注".into()), 5).ok(),
            Some(Some("五个字备注".into()))
        );
    }
}
