//! The operator console, served by the admin listener (never the public
//! API). Operators sign in once (`POST /console/session` with their token
//! or client certificate) and browse with a session cookie:
//!
//! - who sees what (`/console/matrix`): levels × resources × fields, each
//!   cell decided by the enforcing engine (`matrix`);
//! - a policy change, previewed as a diff of that matrix and the policy's
//!   test tables before it is applied through the reload path (`change`);
//! - the sources (`/console/sources`): health, breaker, recent latency;
//! - the whistle outbox (`/console/outbox`): where each escalation to the
//!   city is, and which are stuck or failed;
//! - the audit trail (`/console/audit`), for auditors (`audit`).
//!
//! Policy pages need the `policy-admin` role, the audit pages `auditor`.
//! Every page also answers as JSON (`.json`, or `Accept:
//! application/json`). Changes carry the session's form token and are
//! refused from other origins (`session::same_origin_with_token`).

pub mod audit;
pub mod change;
pub mod matrix;
pub mod page;
pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::audit::{AuditRecord, now_rfc3339};
use crate::error::{ApiError, ErrorCode};
use crate::state::Live;
use session::Session;

/// Largest console request body: a drafted file (`change::MAX_FILE_BYTES`)
/// URL-encoded, where punctuation and line ends take three bytes each.
const MAX_BODY_BYTES: usize = 3 * change::MAX_FILE_BYTES + 4096;

/// Every console answer: never framed (clickjacking an Apply), never
/// cached (audit searches are personal data), no script, no plugins.
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub fn router() -> Router<Arc<Live>> {
    Router::new()
        .route("/console/session", get(sign_in_page).post(sign_in))
        .route("/console/session/end", post(sign_out))
        .route("/console", get(matrix_page))
        .route("/console/matrix", get(matrix_page))
        .route("/console/matrix.json", get(matrix_json))
        .route("/console/sources", get(sources_page))
        .route("/console/sources.json", get(sources_json))
        .route("/console/change", get(change_page))
        .route("/console/change.json", get(change_json))
        .route("/console/change/draft", post(change_draft))
        .route("/console/change/discard", post(change_discard))
        .route("/console/change/apply", post(change_apply))
        .route("/console/outbox", get(outbox_page))
        .route("/console/outbox.json", get(outbox_json))
        .route("/console/audit", get(audit::page))
        .route("/console/audit.json", get(audit::json))
        .route("/console/audit.csv", get(audit::csv))
        .route("/console/audit/verify", post(audit::verify_now))
        .layer(axum::middleware::map_response(hardened))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// How a console request wants its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Html,
    Json,
}

/// A page (GET) answers HTML unless the caller asks for JSON only.
fn answer(headers: &HeaderMap) -> Answer {
    let accept = accept(headers);
    if accept.contains("application/json") && !accept.contains("text/html") {
        Answer::Json
    } else {
        Answer::Html
    }
}

/// A form post (POST) answers HTML to a browser (which always accepts
/// text/html) and JSON to scripts.
fn answer_post(headers: &HeaderMap) -> Answer {
    if accept(headers).contains("text/html") {
        Answer::Html
    } else {
        Answer::Json
    }
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// An error as the caller wants it: the API's JSON error, or a page.
fn refuse(how: Answer, e: ApiError) -> Response {
    match how {
        Answer::Json => e.into_response(),
        Answer::Html if e.status == StatusCode::UNAUTHORIZED => {
            (e.status, Html(page::sign_in(Some(&e.message)))).into_response()
        }
        Answer::Html => (e.status, Html(page::message(&e.message))).into_response(),
    }
}

fn not_signed_in() -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        ..ApiError::new(
            ErrorCode::Unauthenticated,
            "sign in first: POST /console/session with an operator's token (Authorization: Bearer …, or the form at /console/session); the session lasts 30 minutes",
        )
    }
}

/// The request's session, holding `role`; else the 401 or 403 to answer.
fn signed_in(headers: &HeaderMap, role: &str) -> Result<Session, ApiError> {
    let session = session::current(headers).ok_or_else(not_signed_in)?;
    if !session.has_role(role) {
        return Err(ApiError::forbidden(
            "role_required",
            format!("this page needs the `{role}` role"),
            Vec::new(),
        ));
    }
    Ok(session)
}

/// A form (URL-encoded) or JSON object body as name → value.
fn form(headers: &HeaderMap, body: &Bytes) -> Result<BTreeMap<String, String>, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a JSON object: {e}")))?;
        return Ok(value
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect());
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a URL-encoded form: {e}")))?;
    Ok(pairs.into_iter().collect())
}

/// A change's session, form and CSRF check together.
fn changing(
    headers: &HeaderMap,
    body: &Bytes,
    role: &str,
) -> Result<(Session, BTreeMap<String, String>), ApiError> {
    let session = signed_in(headers, role)?;
    let fields = form(headers, body)?;
    session::same_origin_with_token(
        headers,
        &session,
        fields.get("csrf").map(String::as_str),
    )
    .map_err(|why| {
        tracing::warn!(principal = %session.principal.id, why, "console change refused as cross-site");
        ApiError::forbidden(
            "cross_site",
            format!("refused: {why}. Changes are made from the console's own pages, which carry the session's token"),
            Vec::new(),
        )
    })?;
    Ok((session, fields))
}

/// An audit record of a console action by the session's operator.
fn record(
    principal: Option<&lianqiao_policy::Principal>,
    method: &str,
    route: &str,
    query: String,
    policy_version: &str,
) -> AuditRecord {
    let mut r = AuditRecord {
        at: now_rfc3339(),
        request_id: crate::audit::request_id(),
        principal: "anonymous".into(),
        method: method.into(),
        route: route.into(),
        query,
        policy_version: policy_version.to_string(),
        ..AuditRecord::default()
    };
    if let Some(p) = principal {
        r.principal = p.id.clone();
        r.level = p.level.to_string();
        r.division = p.division.clone();
        r.purpose = p.purpose.clone();
        r.via = "console".into();
    }
    r
}

async fn sign_in_page() -> Html<String> {
    Html(page::sign_in(None))
}

/// `POST /console/session`: a token (`Authorization`, `X-API-Key`, or the
/// form's `token`), or the admin listener's client certificate, of an
/// operator (`policy-admin`) or auditor, for a session cookie. Every
/// attempt is audited.
async fn sign_in(
    State(live): State<Arc<Live>>,
    client_cert: Option<Extension<crate::tls::ClientCert>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let how = answer_post(&headers);
    let gateway = live.current();
    let version = gateway.config.enforcer.engine.version().to_string();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let mut audit = record(None, "POST", "/console/session", String::new(), &version);
    let outcome: Result<lianqiao_policy::authn::Identity, ApiError> = async {
        let fields = if body.is_empty() {
            BTreeMap::new()
        } else {
            form(&headers, &body)?
        };
        let bearer = fields.get("token").map(|t| format!("Bearer {}", t.trim()));
        if bearer.is_some() {
            // A sign-in form posted from another site would sign the
            // victim in as the attacker (login CSRF).
            if let Err(why) = session::same_origin(&headers) {
                return Err(ApiError::forbidden(
                    "cross_site",
                    format!("refused: {why} (the sign-in form is the console's own)"),
                    Vec::new(),
                ));
            }
        }
        let authorization = bearer.as_deref().or(header("authorization"));
        let certified = client_cert.and_then(|Extension(c)| c.0);
        let identity = match certified {
            Some(identity) if authorization.is_none() && header("x-api-key").is_none() => identity,
            _ => gateway
                .config
                .auth
                .authenticate(authorization, header("x-api-key"))
                .map_err(|e| ApiError::unauthenticated(&e))?,
        };
        audit.principal = identity.id.clone();
        audit.level = identity.level.to_string();
        audit.division = identity.division.clone();
        audit.via = identity.via.clone();
        let may = |role: &str| identity.roles.iter().any(|r| r == role);
        if !may(session::CONSOLE_ROLE) && !may(session::AUDITOR_ROLE) {
            return Err(ApiError::forbidden(
                "role_required",
                format!(
                    "the console is for operators and auditors: it needs the `{}` or `{}` role",
                    session::CONSOLE_ROLE,
                    session::AUDITOR_ROLE
                ),
                Vec::new(),
            ));
        }
        Ok(identity)
    }
    .await;
    let identity = match outcome {
        Ok(identity) => identity,
        Err(e) => {
            tracing::warn!(principal = %audit.principal, code = e.code.as_str(), "console sign-in refused");
            gateway.audit.refused(audit, &e).await;
            return refuse(how, e);
        }
    };
    // A session nobody can account for is not opened.
    if let Err(e) = gateway.audit.allowed(audit, "the sign-in").await {
        return refuse(how, e);
    }
    tracing::info!(principal = %identity.id, "console sign-in");
    let roles = identity.roles.clone();
    let id = identity.id.clone();
    let (cookie, csrf) = session::open(
        identity.with_purpose("administration"),
        gateway.config.telemetry.admin_tls,
    );
    let next = if roles.iter().any(|r| r == session::CONSOLE_ROLE) {
        "/console/matrix"
    } else {
        "/console/audit"
    };
    let mut response = match how {
        Answer::Json => Json(serde_json::json!({
            "signed_in": id,
            "roles": roles,
            "expires_in": session::TTL.as_secs(),
            "next": next,
            // Scripts send it back as X-CSRF-Token on every change.
            "csrf": csrf,
        }))
        .into_response(),
        Answer::Html => Redirect::to(next).into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn sign_out(headers: HeaderMap, body: Bytes) -> Response {
    let how = answer_post(&headers);
    let session = match session::current(&headers) {
        Some(s) => s,
        None => return refuse(how, not_signed_in()),
    };
    let token = form(&headers, &body)
        .ok()
        .and_then(|f| f.get("csrf").cloned());
    if let Err(why) = session::same_origin_with_token(&headers, &session, token.as_deref()) {
        return refuse(
            how,
            ApiError::forbidden("cross_site", format!("refused: {why}"), Vec::new()),
        );
    }
    session::close(&headers);
    let mut response = match how {
        Answer::Json => Json(serde_json::json!({ "signed_out": true })).into_response(),
        Answer::Html => Redirect::to("/console/session").into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&session::closed_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The sources page's data: the readiness report, with each source's
/// recent calls for the latency chart.
fn sources_report(gateway: &crate::state::Gateway) -> serde_json::Value {
    let mut report = crate::health::readiness(gateway);
    if let Some(sources) = report["sources"].as_array_mut() {
        for s in sources {
            let name = s["name"].as_str().unwrap_or("").to_string();
            let calls: Vec<serde_json::Value> = gateway
                .metrics
                .recent_calls(&name)
                .into_iter()
                .map(|(latency, failed)| {
                    serde_json::json!({
                        "latency_ms": (latency.as_secs_f64() * 10_000.0).round() / 10.0,
                        "failed": failed,
                    })
                })
                .collect();
            s["recent_calls"] = serde_json::Value::Array(calls);
        }
    }
    report
}

async fn sources_json(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(_) => Json(sources_report(&live.current())).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Each source's health, breaker, recent calls, plugin and limits: what
/// `/readyz` and `lianqiao status` report, as a page.
async fn sources_page(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    if answer(&headers) == Answer::Json {
        return sources_json(State(live), headers).await;
    }
    match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(session) => {
            Html(page::sources(&sources_report(&live.current()), &session)).into_response()
        }
        Err(e) => refuse(Answer::Html, e),
    }
}

/// The whistle outbox: rows per stage, unfinished rows oldest first, the
/// latest finished ones. Errors are masked as for logs (a city's reason
/// may quote the case); the case's text and reporter are not shown.
async fn outbox_report(gateway: &crate::state::Gateway) -> Result<serde_json::Value, ApiError> {
    let (counts, rows) = gateway.writes.overview(200).await.map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("the gateway's store cannot be read now: {e}"),
        )
    })?;
    let now = crate::audit::now_rfc3339();
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            let held = r.lease_until > now && !matches!(r.stage.as_str(), "done" | "failed");
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["error"] = serde_json::json!(crate::redact::mask_text(&r.error));
            v["held"] = serde_json::json!(held);
            v
        })
        .collect();
    Ok(serde_json::json!({
        "stages": counts.into_iter().collect::<BTreeMap<String, i64>>(),
        "rows": rows,
        "at": now,
    }))
}

async fn outbox_json(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let gateway = live.current();
    match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(_) => match outbox_report(&gateway).await {
            Ok(v) => Json(v).into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn outbox_page(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    if answer(&headers) == Answer::Json {
        return outbox_json(State(live), headers).await;
    }
    let gateway = live.current();
    let session = match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(s) => s,
        Err(e) => return refuse(Answer::Html, e),
    };
    match outbox_report(&gateway).await {
        Ok(v) => Html(page::outbox(&v, &session)).into_response(),
        Err(e) => refuse(Answer::Html, e),
    }
}

/// The matrix's parameters: `division` (a division code), `purpose` and
/// `roles` (comma-separated; the staff's roles, none by default).
struct View {
    division: String,
    purpose: String,
    roles: Vec<String>,
}

fn view(gateway: &crate::state::Gateway, raw: Option<&str>) -> Result<View, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let division = get("division")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| matrix::DEFAULT_DIVISION.to_string());
    if !crate::config::is_division_code(&division) {
        return Err(ApiError::invalid(format!(
            "`division` is a division code ({}), got `{division}`",
            lianqiao_policy::division::CONVENTION
        )));
    }
    let purposes = &gateway.config.policy.purposes;
    let purpose = get("purpose")
        .filter(|p| !p.is_empty())
        .or_else(|| purposes.first().cloned())
        .unwrap_or_default();
    if !purposes.contains(&purpose) {
        return Err(ApiError::invalid(format!(
            "`purpose` is one of {}",
            purposes.join(", ")
        )));
    }
    let roles: Vec<String> = get("roles")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = roles.iter().find(|r| {
        r.len() > 64
            || !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) {
        return Err(ApiError::invalid(format!(
            "`roles` is a comma-separated list of role names (a-z, 0-9, - and _), got `{bad}`"
        )));
    }
    Ok(View {
        division: lianqiao_policy::division::canonical(&division).to_string(),
        purpose,
        roles,
    })
}

async fn matrix_json(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let gateway = live.current();
    match signed_in(&headers, session::CONSOLE_ROLE).and_then(|_| view(&gateway, raw.as_deref())) {
        Ok(v) => Json(matrix::matrix(
            &gateway.config.enforcer,
            &v.division,
            &v.purpose,
            &v.roles,
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn matrix_page(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if answer(&headers) == Answer::Json {
        return matrix_json(State(live), headers, RawQuery(raw)).await;
    }
    let gateway = live.current();
    let session = match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(s) => s,
        Err(e) => return refuse(Answer::Html, e),
    };
    match view(&gateway, raw.as_deref()) {
        Ok(v) => {
            let m = matrix::matrix(&gateway.config.enforcer, &v.division, &v.purpose, &v.roles);
            Html(page::matrix(&m, &session, &gateway.config.policy.purposes)).into_response()
        }
        Err(e) => refuse(Answer::Html, e),
    }
}

/// The draft against the files as they are now (read once): its preview,
/// the files changed since it was drafted, and every file a change may
/// touch.
struct ChangeState {
    current: BTreeMap<String, String>,
    preview: change::Preview,
    conflicts: Vec<String>,
}

impl ChangeState {
    fn of(gateway: &crate::state::Gateway, draft: &change::Draft, v: &View) -> ChangeState {
        let current = change::current_files(&gateway.config);
        ChangeState {
            preview: change::preview(&gateway.config, &current, draft, &v.division, &v.roles),
            conflicts: change::conflicts(&current, draft),
            current,
        }
    }

    fn to_json(&self, division: &str) -> serde_json::Value {
        let mut value = self.preview.to_json();
        value["division"] = serde_json::json!(division);
        value["conflicts"] = serde_json::json!(self.conflicts);
        value["editable"] = serde_json::json!(self.current.keys().collect::<Vec<_>>());
        value
    }
}

async fn change_json(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let gateway = live.current();
    let session = match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match view(&gateway, raw.as_deref()) {
        Ok(v) => {
            Json(ChangeState::of(&gateway, &session.draft, &v).to_json(&v.division)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /console/change[?edit=<file>]`: the draft, its preview, and an
/// editor for one file (the draft's text, else the file's).
async fn change_page(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if answer(&headers) == Answer::Json {
        return change_json(State(live), headers, RawQuery(raw)).await;
    }
    let gateway = live.current();
    let session = match signed_in(&headers, session::CONSOLE_ROLE) {
        Ok(s) => s,
        Err(e) => return refuse(Answer::Html, e),
    };
    let v = match view(&gateway, raw.as_deref()) {
        Ok(v) => v,
        Err(e) => return refuse(Answer::Html, e),
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let state = ChangeState::of(&gateway, &session.draft, &v);
    let editing = pairs
        .iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v.clone())
        .or_else(|| session.draft.files.keys().next().cloned())
        .unwrap_or_else(|| "policy/default.cedar".to_string());
    if let Err(e) = change::path_of(&gateway.config, &editing) {
        return refuse(Answer::Html, ApiError::invalid(e));
    }
    let text = session
        .draft
        .files
        .get(&editing)
        .map(|e| e.text.clone())
        .or_else(|| state.current.get(&editing).cloned())
        .unwrap_or_default();
    Html(page::change(&page::ChangeView {
        session: &session,
        division: &v.division,
        editing: &editing,
        text: &text,
        files: state.current.keys().cloned().collect(),
        preview: &state.preview,
        conflicts: state.conflicts.clone(),
    }))
    .into_response()
}

/// `POST /console/change/draft` (`file`, `text`, `csrf`): put a file's
/// proposed text into the session's draft. Nothing changes live.
async fn change_draft(State(live): State<Arc<Live>>, headers: HeaderMap, body: Bytes) -> Response {
    let how = answer_post(&headers);
    let gateway = live.current();
    let (mut session, fields) = match changing(&headers, &body, session::CONSOLE_ROLE) {
        Ok(x) => x,
        Err(e) => return refuse(how, e),
    };
    let Some(file) = fields.get("file") else {
        return refuse(
            how,
            ApiError::new(
                ErrorCode::MissingParameter,
                "`file` names the file to change, e.g. policy/default.cedar",
            ),
        );
    };
    let text = fields.get("text").cloned().unwrap_or_default();
    // Edited under the sessions' lock: two tabs posting at once both land.
    match session::edit_draft(&headers, |draft| {
        change::edit(&gateway.config, draft, file, text)
    }) {
        Some(Ok(draft)) => session.draft = draft,
        Some(Err(e)) => return refuse(how, ApiError::invalid(e)),
        None => return refuse(how, not_signed_in()),
    }
    match how {
        Answer::Json => {
            let v = match view(&gateway, None) {
                Ok(v) => v,
                Err(e) => return e.into_response(),
            };
            Json(ChangeState::of(&gateway, &session.draft, &v).to_json(&v.division)).into_response()
        }
        Answer::Html => Redirect::to(&format!(
            "/console/change?edit={}",
            serde_urlencoded::to_string([("", file)])
                .unwrap_or_default()
                .trim_start_matches('=')
        ))
        .into_response(),
    }
}

async fn change_discard(headers: HeaderMap, body: Bytes) -> Response {
    let how = answer_post(&headers);
    if let Err(e) = changing(&headers, &body, session::CONSOLE_ROLE) {
        return refuse(how, e);
    }
    session::set_draft(&headers, change::Draft::default());
    match how {
        Answer::Json => Json(serde_json::json!({ "discarded": true })).into_response(),
        Answer::Html => Redirect::to("/console/change").into_response(),
    }
}

/// `POST /console/change/apply` (`csrf`): write the draft's files and
/// reload. Refused when the draft does not validate, a policy test fails
/// with it, or a file changed since it was drafted. Audited before the
/// files are written (a trail that is down refuses the change), and every
/// refusal is audited too.
async fn change_apply(State(live): State<Arc<Live>>, headers: HeaderMap, body: Bytes) -> Response {
    // Its own task: a client that goes away mid-apply drops this
    // handler, but not the write, the reload and the restore (or the
    // audit record of a refusal).
    match tokio::spawn(apply(live, headers.clone(), body)).await {
        Ok(response) => response,
        Err(e) => refuse(
            answer_post(&headers),
            ApiError::new(ErrorCode::Internal, format!("the apply stopped: {e}")),
        ),
    }
}

async fn apply(live: Arc<Live>, headers: HeaderMap, body: Bytes) -> Response {
    let how = answer_post(&headers);
    let gateway = live.current();
    let version = gateway.config.enforcer.engine.version().to_string();
    let signed = session::current(&headers);
    let mut audit = record(
        signed.as_ref().map(|s| &s.principal),
        "POST",
        "/console/change/apply",
        String::new(),
        &version,
    );
    let outcome: Result<(Vec<String>, String), ApiError> = async {
        let (session, _) = changing(&headers, &body, session::CONSOLE_ROLE)?;
        let draft = session.draft.clone();
        audit.query = format!("files={}", draft.files.keys().cloned().collect::<Vec<_>>().join(","));
        let _one_at_a_time = crate::state::CONFIG_CHANGE.lock().await;
        let current = change::current_files(&gateway.config);
        let stale = change::conflicts(&current, &draft);
        if !stale.is_empty() {
            return Err(ApiError::new(
                ErrorCode::PolicyChanged,
                format!(
                    "{} changed since you drafted; nothing was applied. Open the draft again, check the preview and apply",
                    stale.join(", ")
                ),
            ));
        }
        let preview = change::preview(
            &gateway.config,
            &current,
            &draft,
            matrix::DEFAULT_DIVISION,
            &[],
        );
        if !preview.applicable() {
            return Err(ApiError::new(
                ErrorCode::InvalidPolicy,
                format!("nothing was applied:\n{}", preview.refusal()),
            ));
        }
        let after = preview.version_after.clone().unwrap_or_default();
        audit.query.push_str(&format!("&policy_version={after}"));
        gateway.audit.allowed(audit.clone(), "the change").await?;
        let backup = change::write(&gateway.config, &draft)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e))?;
        if let Err(e) = live.reload().await {
            change::restore(&backup);
            return Err(ApiError::new(
                ErrorCode::InvalidPolicy,
                format!("the reload refused the change, so the files were put back and the running policy keeps serving: {e}"),
            ));
        }
        session::set_draft(&headers, change::Draft::default());
        tracing::info!(principal = %session.principal.id, version = %after, "policy change applied from the console");
        Ok((preview.files, after))
    }
    .await;
    match outcome {
        Ok((files, after)) => match how {
            Answer::Json => Json(serde_json::json!({
                "applied": files,
                "policy_version": after,
            }))
            .into_response(),
            Answer::Html => Html(page::applied(&files, &after)).into_response(),
        },
        Err(e) => {
            gateway.audit.refused(audit, &e).await;
            refuse(how, e)
        }
    }
}
