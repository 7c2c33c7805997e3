//! Hohhot's integrated information platform (一体化信息平台), as a
//! simulator with REST conventions of its own: camelCase JSON, cursor
//! paging (`limit`, `cursor` → `nextCursor`), OAuth2 client credentials
//! with expiring bearer tokens, RFC 7807 problem details with real HTTP
//! statuses, and rate limiting (429 + `Retry-After`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::{Value, json};

use super::faults::{self, Faults};
use super::world::World;
use crate::generate::Level;

/// How the platform is run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// client_id → client_secret.
    pub clients: HashMap<String, String>,
    pub token_ttl: Duration,
    /// Requests per second per client before 429.
    pub rate_limit: u32,
}

/// Cases filed through the write API (the generated world's cases are
/// read-only history), and the platform's own request ids.
#[derive(Default)]
struct Filed {
    cases: Vec<Value>,
    /// (client, `X-Request-ID`) → (body digest, status, first answer).
    requests: HashMap<(String, String), (String, u16, Value)>,
}

#[derive(Clone)]
struct Platform {
    world: Arc<World>,
    filed: Arc<Mutex<Filed>>,
    settings: Arc<Settings>,
    tokens: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    windows: Arc<Mutex<HashMap<String, (u64, u32)>>>,
    started: Instant,
}

pub fn router(world: Arc<World>, settings: Settings, faults: Faults) -> Router {
    let state = Platform {
        world,
        filed: Arc::default(),
        settings: Arc::new(settings),
        tokens: Arc::default(),
        windows: Arc::default(),
        started: Instant::now(),
    };
    let api = Router::new()
        .route("/oauth/token", post(token))
        .route("/divisions", get(divisions))
        .route("/cases", get(cases).post(file_case))
        .route("/cases/{case_id}/actions", post(act_on_case))
        .route("/service-centers", get(service_centers))
        .fallback(|uri: axum::http::Uri| async move {
            problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not Found",
                &format!("no resource at {}", uri.path()),
            )
        })
        .with_state(state);
    let admin = Router::new()
        .route(
            "/__admin/faults",
            get(faults::admin_list)
                .post(faults::admin_set)
                .delete(faults::admin_clear),
        )
        .route("/__admin/requests", get(faults::admin_received))
        .with_state(faults.clone());
    api.merge(admin)
        .layer(axum::middleware::from_fn_with_state(faults, faults::inject))
}

/// An RFC 7807 problem response.
struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    retry_after: bool,
}

fn problem(status: StatusCode, kind: &'static str, title: &'static str, detail: &str) -> Problem {
    Problem {
        status,
        kind,
        title,
        detail: detail.to_string(),
        retry_after: false,
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("urn:hohhot-platform:problem:{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `POST /oauth/token` (form): client credentials → bearer token.
async fn token(State(p): State<Platform>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return problem(
            StatusCode::BAD_REQUEST,
            "unsupported-grant-type",
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        )
        .into_response();
    }
    // Client credentials from HTTP Basic or the form.
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if p.settings.clients.get(&id) != Some(&secret) {
        return problem(
            StatusCode::UNAUTHORIZED,
            "invalid-client",
            "invalid_client",
            "unknown client or wrong secret",
        )
        .into_response();
    }
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let access_token = URL_SAFE_NO_PAD.encode(raw);
    if let Ok(mut tokens) = p.tokens.lock() {
        let now = Instant::now();
        tokens.retain(|_, (_, exp)| *exp > now);
        tokens.insert(access_token.clone(), (id, now + p.settings.token_ttl));
    }
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": p.settings.token_ttl.as_secs(),
    }))
    .into_response()
}

impl Platform {
    /// The caller's client id, or the problem to answer with.
    fn authorize(&self, headers: &HeaderMap) -> Result<String, Problem> {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(problem(
                StatusCode::UNAUTHORIZED,
                "missing-token",
                "Unauthorized",
                "send Authorization: Bearer <token> from POST /oauth/token",
            ));
        };
        let client = {
            let tokens = self.tokens.lock().map_err(|_| {
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal",
                    "lock",
                )
            })?;
            match tokens.get(token) {
                Some((client, exp)) if *exp > Instant::now() => client.clone(),
                Some(_) => {
                    return Err(problem(
                        StatusCode::UNAUTHORIZED,
                        "expired-token",
                        "Unauthorized",
                        "the access token has expired; request a new one",
                    ));
                }
                None => {
                    return Err(problem(
                        StatusCode::UNAUTHORIZED,
                        "invalid-token",
                        "Unauthorized",
                        "unknown access token",
                    ));
                }
            }
        };
        // A fixed one-second window per client.
        let second = self.started.elapsed().as_secs();
        let mut windows = self.windows.lock().map_err(|_| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal",
                "lock",
            )
        })?;
        let window = windows.entry(client.clone()).or_insert((second, 0));
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 += 1;
        if window.1 > self.settings.rate_limit {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too Many Requests",
                &format!("at most {} requests per second", self.settings.rate_limit),
            );
            response.retry_after = true;
            return Err(response);
        }
        Ok(client)
    }
}

/// Offset-backed cursor, opaque to clients.
fn paginate(items: Vec<Value>, params: &HashMap<String, String>) -> Result<Value, Problem> {
    let limit: usize = match params.get("limit") {
        Some(l) => l
            .parse()
            .ok()
            .filter(|l| (1..=500).contains(l))
            .ok_or_else(|| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "invalid-parameter",
                    "Bad Request",
                    "limit must be 1–500",
                )
            })?,
        None => 100,
    };
    let offset: usize = match params.get("cursor") {
        Some(c) => URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "invalid-cursor",
                    "Bad Request",
                    "cursor was not issued by this API",
                )
            })?,
        None => 0,
    };
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let next = (offset + page.len() < total)
        .then(|| URL_SAFE_NO_PAD.encode(format!("o:{}", offset + page.len())));
    Ok(json!({ "items": page, "nextCursor": next, "total": total }))
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Problem> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            problem(
                StatusCode::BAD_REQUEST,
                "invalid-parameter",
                "Bad Request",
                &format!("{name} is required and must be a numeric division code"),
            )
        })
}

/// The shape every listing shares: authorize, read the required division
/// parameter, build the items, sort them by `key`, page them.
fn listing(
    p: &Platform,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    param: &str,
    key: &str,
    items: impl FnOnce(&str) -> Vec<Value>,
) -> Response {
    let run = || -> Result<Value, Problem> {
        p.authorize(headers)?;
        let code = required(params, param)?;
        let mut items = items(code);
        items.sort_by(|a, b| a[key].as_str().cmp(&b[key].as_str()));
        paginate(items, params)
    };
    run().map_or_else(IntoResponse::into_response, |v| Json(v).into_response())
}

async fn divisions(
    State(p): State<Platform>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    listing(&p, &headers, &params, "parentCode", "code", |parent| {
        let mut items = Vec::new();
        // The region lists its cities.
        if parent == "150000" {
            let mut cities: Vec<&str> = p.world.districts.iter().map(|d| d.city).collect();
            cities.dedup();
            for code in cities {
                let name = crate::generate::region::CITIES
                    .iter()
                    .find(|(c, _, _)| *c == code)
                    .map_or("", |(_, n, _)| *n);
                items.push(
                    json!({ "code": code, "name": name, "level": "city", "parentCode": parent }),
                );
            }
        }
        for d in &p.world.districts {
            if parent == d.city {
                items.push(json!({ "code": d.district.code, "name": d.district.name, "level": "district", "parentCode": d.city }));
            }
            for x in d
                .district
                .divisions
                .iter()
                .filter(|x| x.parent.as_deref() == Some(parent) && x.level != Level::District)
            {
                items.push(json!({
                    "code": x.code, "name": x.name, "level": x.level.as_str(), "parentCode": parent,
                    "households": x.households, "population": x.population,
                }));
            }
        }
        items
    })
}

async fn cases(
    State(p): State<Platform>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let since = params.get("updatedSince").cloned().unwrap_or_default();
    listing(
        &p,
        &headers,
        &params,
        "divisionCode",
        "caseId",
        |division| {
            p.world
            .districts
            .iter()
            .flat_map(|d| &d.cases)
            .filter(|c| c.division.starts_with(division) && c.updated_at >= since)
            .map(|c| {
                json!({
                    "caseId": c.id, "title": c.title, "category": c.category, "loop": c.loop_level, "state": c.state,
                    "divisionCode": c.division, "openedAt": c.opened_at, "updatedAt": c.updated_at, "dueAt": c.due_at,
                    "reporterName": c.reporter_name, "reporterPhone": c.reporter_phone, "departments": c.departments,
                    "history": c.history.iter().map(|(s, at, by)| json!({ "state": s, "at": at, "byLevel": by })).collect::<Vec<_>>(),
                    "satisfaction": c.satisfaction,
                })
            })
            .chain(p.filed.lock().map(|f| f.cases.clone()).unwrap_or_default().into_iter().filter(|c| {
                c["divisionCode"].as_str().is_some_and(|d| d.starts_with(division))
                    && c["updatedAt"].as_str().is_some_and(|u| u >= since.as_str())
            }))
            .collect()
        },
    )
}

async fn service_centers(
    State(p): State<Platform>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    listing(
        &p,
        &headers,
        &params,
        "divisionCode",
        "centerId",
        |division| {
            p.world
            .districts
            .iter()
            .flat_map(|d| &d.centers)
            .filter(|c| c.division.starts_with(division))
            .map(|c| {
                json!({
                    "centerId": c.id, "name": c.name, "tier": c.tier, "divisionCode": c.division,
                    "address": c.address, "areaM2": c.area_m2, "openHours": c.open_hours,
                })
            })
            .collect()
        },
    )
}

/// Local time in Inner Mongolia (UTC+8), as the platform stamps records.
fn now_local() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + 8 * 3600;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}+08:00",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn unprocessable(kind: &'static str, detail: &str) -> Problem {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        kind,
        "Unprocessable Entity",
        detail,
    )
}

/// `POST /cases`: a district whistles a case to the city (吹哨). The
/// platform's own idempotency: `X-Request-ID` (required); the same id and
/// body answer the first result (200, `X-Idempotent-Replay: true`), the same
/// id with another body is 409 `request-id-reused`.
async fn file_case(State(p): State<Platform>, headers: HeaderMap, body: Bytes) -> Response {
    let run = || -> Result<(u16, Value, bool), Problem> {
        let client = p.authorize(&headers)?;
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .ok_or_else(|| {
                problem(
                    StatusCode::BAD_REQUEST,
                    "missing-request-id",
                    "Bad Request",
                    "send X-Request-ID (unique per case filed; a retry sends the same)",
                )
            })?
            .to_string();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        let mut filed = p.filed.lock().map_err(|_| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal",
                "lock",
            )
        })?;
        if let Some((first, status, answer)) =
            filed.requests.get(&(client.clone(), request_id.clone()))
        {
            if *first != digest {
                return Err(problem(
                    StatusCode::CONFLICT,
                    "request-id-reused",
                    "Conflict",
                    "this X-Request-ID was used for another case",
                ));
            }
            return Ok((*status, answer.clone(), true));
        }
        let input: Value = serde_json::from_slice(&body)
            .map_err(|e| unprocessable("malformed-body", &format!("not JSON: {e}")))?;
        let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_string);
        let division = text("divisionCode").unwrap_or_default();
        // A street, community or grid of one of the city's districts.
        let well_formed = division.len() >= 9 && division.bytes().all(|b| b.is_ascii_digit());
        if !well_formed
            || !p
                .world
                .districts
                .iter()
                .any(|d| division.starts_with(&d.district.code))
        {
            return Err(unprocessable(
                "unknown-division",
                &format!("divisionCode `{division}` is not a division of this city"),
            ));
        }
        let title = text("title")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| unprocessable("missing-title", "title is required"))?;
        let at = now_local();
        let case_id = format!(
            "HH{}{:05}",
            at[..10].replace('-', ""),
            filed.cases.len() + 1
        );
        let case = json!({
            "caseId": case_id, "title": title, "category": text("category").unwrap_or_default(),
            "loop": "city", "state": "accepted", "divisionCode": division,
            "openedAt": at, "updatedAt": at, "dueAt": text("dueAt"),
            "reporterName": text("reporterName"), "reporterPhone": text("reporterPhone"),
            "departments": [], "externalId": text("externalId"),
            "history": [{ "state": "accepted", "at": at, "byLevel": "city" }],
            "satisfaction": null,
        });
        filed.cases.push(case.clone());
        filed
            .requests
            .insert((client, request_id), (digest, 201, case.clone()));
        Ok((201, case, false))
    };
    match run() {
        Ok((status, case, replay)) => {
            let status =
                StatusCode::from_u16(if replay { 200 } else { status }).unwrap_or(StatusCode::OK);
            let mut response = (status, Json(case)).into_response();
            if replay {
                response
                    .headers_mut()
                    .insert("x-idempotent-replay", HeaderValue::from_static("true"));
            }
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// `POST /cases/{caseId}/actions` (`{"action": "report-in" | "feedback" |
/// "evaluate" | "close", "satisfaction": 1–5}`): the departments answer a
/// filed case (接诉即办). Moves out of order are 409 `invalid-state`.
async fn act_on_case(
    State(p): State<Platform>,
    headers: HeaderMap,
    axum::extract::Path(case_id): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let run = || -> Result<Value, Problem> {
        p.authorize(&headers)?;
        let input: Value = serde_json::from_slice(&body)
            .map_err(|e| unprocessable("malformed-body", &format!("not JSON: {e}")))?;
        let action = input
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (from, to) = match action {
            "report-in" => ("accepted", "reported_in"),
            "feedback" => ("reported_in", "feedback"),
            "evaluate" => ("feedback", "evaluated"),
            "close" => ("evaluated", "closed"),
            other => {
                return Err(unprocessable(
                    "unknown-action",
                    &format!("action `{other}` is not one of report-in, feedback, evaluate, close"),
                ));
            }
        };
        let mut filed = p.filed.lock().map_err(|_| {
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal",
                "lock",
            )
        })?;
        let case = filed
            .cases
            .iter_mut()
            .find(|c| c["caseId"] == case_id.as_str())
            .ok_or_else(|| {
                problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "Not Found",
                    &format!("no filed case {case_id}"),
                )
            })?;
        if case["state"] != from {
            return Err(problem(
                StatusCode::CONFLICT,
                "invalid-state",
                "Conflict",
                &format!("case {case_id} is {}, not {from}", case["state"]),
            ));
        }
        let at = now_local();
        case["state"] = json!(to);
        case["updatedAt"] = json!(at);
        if to == "evaluated" {
            case["satisfaction"] = input.get("satisfaction").cloned().unwrap_or(json!(5));
        }
        if let Some(history) = case["history"].as_array_mut() {
            history.push(json!({ "state": to, "at": at, "byLevel": "city" }));
        }
        Ok(case.clone())
    };
    run().map_or_else(IntoResponse::into_response, |v| Json(v).into_response())
}
