//! The HTTP API: routes, parameters and errors. Every `/v1` body is
//! built by the disclosure gate (`crate::disclosure`), never here.

/// The API's errors (`crate::error`), by the path clients of the crate know.
pub use crate::error;
pub use admin::{SOURCE_ADMIN_ROLE, admin_router};
mod admin;
mod cases;
mod explain;
mod guard;
mod openapi;
mod params;

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lianqiao_host::contract::{FilterOp, Value};
use lianqiao_host::trace::{SpanIds, TRACE_CONTEXT, TraceContext};
use opentelemetry::trace::{SpanId, TraceId};
use serde_json::json;

use crate::disclosure::counts::StatsGate;
use crate::disclosure::rows::ListGate;
use crate::disclosure::{Facts, Released};
use crate::error::{ApiError, ErrorCode};
use crate::federation::{self, FieldFilter, ListRequest, executor::ListError};
use crate::model::{self, Entity};
use crate::state::{Gateway, Live};
use lianqiao_policy::Principal;

/// Parse and validate a list query string for `entity`, as the API does
/// (exposed for property tests of bad input).
pub fn parse_list(
    entity: &'static Entity,
    raw: Option<&str>,
    server: &crate::config::ServerSection,
) -> Result<ListRequest, ApiError> {
    let pairs = params::pairs(raw, server)?;
    params::list_request(entity, &pairs, server, entity.name == model::DIVISIONS.name)
        .map(|(request, _cursor)| request)
}

/// Every route and the methods it answers: the router below, spelt out for
/// the `Allow` of a 405 and checked against the OpenAPI document. The
/// first pattern that matches a path wins, as in the router.
pub const ROUTES: &[(&str, &str)] = &[
    ("/v1/divisions/{code}", "GET, HEAD"),
    ("/v1/cases", "GET, HEAD, POST"),
    ("/v1/cases/{id}", "GET, HEAD"),
    ("/v1/cases/{id}/transitions", "POST"),
    ("/v1/stats", "GET, HEAD"),
    ("/v1/_explain", "GET, HEAD"),
    ("/v1/{resource}", "GET, HEAD"),
    ("/openapi.json", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/readyz", "GET, HEAD"),
];

/// Whether `path` fits a route `pattern` (`{name}` takes one segment).
fn route_matches(pattern: &str, path: &str) -> bool {
    let (mut a, mut b) = (pattern.split('/'), path.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p.starts_with('{') && !s.is_empty() => {}
            (Some(p), Some(s)) if p == s => {}
            _ => return false,
        }
    }
}

/// The methods the route serving `path` answers.
pub fn allowed_methods(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|(pattern, _)| route_matches(pattern, path))
        .map_or("GET, HEAD", |(_, methods)| methods)
}

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn router(gateway: Arc<Live>) -> Router {
    // Everything under /v1 is authenticated, decided by the policy and
    // audited; the documents and health checks are not.
    let v1 = Router::new()
        .route("/v1/divisions/{code}", get(get_division))
        .route("/v1/cases", post(cases::create).get(list_cases))
        .route("/v1/cases/{id}", get(cases::get))
        .route("/v1/cases/{id}/transitions", post(cases::transition))
        .route("/v1/stats", get(stats))
        .route("/v1/_explain", get(explain::explain))
        .route("/v1/{resource}", get(list_resource))
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            guard::guard,
        ));
    Router::new()
        .merge(v1)
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // Metrics and the access log for every matched route.
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            observe,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        // Bounded work: past the limit, 503 at once instead of a queue.
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), admit))
        // Only case writes have bodies, small ones: anything past
        // `MAX_BODY_BYTES` is refused (413) before it is read. Headers are bounded by hyper (431).
        .layer(axum::middleware::from_fn(limit_body))
        .with_state(gateway)
}

/// 413 `payload_too_large` for a declared body past `MAX_BODY_BYTES`, and
/// never read more than that of an undeclared one.
async fn limit_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes (case writes); reads take their parameters in the query string"),
        )
        .into_response();
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES));
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// Take the request's gateway snapshot, then refuse requests beyond
/// `server.max_concurrent_requests` with 503 `overloaded` and
/// `Retry-After` (health checks always pass).
///
/// One snapshot per request: every layer and handler after this one reads
/// the configuration, the policy and the sources from the snapshot in the
/// request's extensions (`snapshot`), so a reload in the middle of a
/// request changes nothing for it, and its audit record names the policy
/// version that decided it.
async fn admit(
    State(live): State<Arc<Live>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let gateway = live.current();
    request.extensions_mut().insert(gateway.clone());
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    match gateway.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::retry_after(
            ErrorCode::Overloaded,
            format!(
                "the gateway is serving its limit of {} requests; retry shortly",
                gateway.config.server.max_concurrent_requests
            ),
            1,
        )
        .into_response(),
    }
}

/// The gateway snapshot `admit` took for this request (the live one for
/// a request that came in another way, e.g. a test calling a router
/// without it).
pub(crate) fn snapshot(live: &Live, request: &axum::extract::Request) -> Arc<Gateway> {
    request
        .extensions()
        .get::<Arc<Gateway>>()
        .cloned()
        .unwrap_or_else(|| live.current())
}

/// Time the request, count it, and write one access-log line. The query
/// string is never logged: filters can carry personal data.
async fn observe(
    State(live): State<Arc<Live>>,
    route: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let gateway = snapshot(&live, &request);
    let began = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // One span per request; the caller's trace (W3C traceparent) is its
    // parent, and upstream requests carry the same trace id.
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {}", route.as_str()),
        otel.kind = "server",
        http.request.method = %method,
        http.route = route.as_str(),
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        // Filled by the guard: who asked and what left (never data).
        lianqiao.level = tracing::field::Empty,
        lianqiao.division = tracing::field::Empty,
        lianqiao.decision = tracing::field::Empty,
        lianqiao.rows = tracing::field::Empty,
        lianqiao.masked_cells = tracing::field::Empty,
        lianqiao.withheld_fields = tracing::field::Empty,
    );
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = traceparent.as_deref().and_then(TraceContext::parse);
    if let (Some(tc), Some(parent)) = (
        &caller,
        traceparent.as_deref().and_then(|t| t.split('-').nth(2)),
    ) && let (Ok(trace_id), Ok(parent)) =
        (TraceId::from_hex(&tc.trace_id), SpanId::from_hex(parent))
    {
        // W3C: bit 0 of the flags is "sampled".
        let sampled = u8::from_str_radix(&tc.flags, 16).is_ok_and(|f| f & 1 == 1);
        crate::telemetry::spans::join_caller_trace(&span, trace_id, parent, sampled);
    }
    // Without a caller's trace, the one the span recorder started (when
    // spans are exported), or a new one for the upstream requests.
    let trace = caller.unwrap_or_else(|| match SpanIds::of(&span) {
        Some(ids) => TraceContext {
            trace_id: ids.trace_id.to_string(),
            flags: if ids.sampled { "01" } else { "00" }.into(),
        },
        None => TraceContext::new_root(),
    });
    let trace_id = trace.trace_id.clone();
    // Every log line inside the request carries its trace id (the JSON
    // log layer keeps it from this record; telemetry/logline.rs).
    span.record("trace_id", trace_id.as_str());
    let response = tracing::Instrument::instrument(
        TRACE_CONTEXT.scope(trace, next.run(request)),
        span.clone(),
    )
    .await;
    let latency = began.elapsed();
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    gateway
        .metrics
        .record_request(route.as_str(), status, latency);
    if gateway.config.telemetry.access_log {
        // The exported request span's id, when spans are exported.
        let span_id = crate::telemetry::otel::exported_span_id(&span);
        tracing::info!(
            target: "lianqiao::access",
            %method,
            route = route.as_str(),
            path,
            trace_id,
            span_id = span_id.as_deref().unwrap_or(""),
            request_id = response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            status,
            latency_ms = latency.as_secs_f64() * 1e3,
        );
    }
    response
}

/// Count each source's outcome for `/metrics`.
fn record_sources(gateway: &Gateway, reports: &[federation::SourceReport]) {
    for r in reports {
        let code = r.error.as_ref().map_or("", |e| ErrorCode::of(e).as_str());
        gateway
            .metrics
            .record_source(&r.name, r.status.as_str(), code, r.latency);
    }
}

/// A handler's result with the facts its audit record needs. A body can
/// only be one the disclosure gate released.
fn respond(result: Result<Released, ApiError>, facts: Facts) -> Response {
    let mut response = match result {
        Ok(body) => body.into_response(),
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(facts);
    response
}

async fn list(
    gateway: &Gateway,
    principal: &Principal,
    entity: &'static Entity,
    raw: Option<String>,
    parent_mode: bool,
    facts: &mut Facts,
) -> Result<Released, ApiError> {
    let server = &gateway.config.server;
    let pairs = params::pairs(raw.as_deref(), server)?;
    let (mut request, cursor) = params::list_request(entity, &pairs, server, parent_mode)?;
    let gate = authorize(gateway, principal, &mut request, cursor.as_deref(), facts)?;
    let outcome = fetch(gateway, &request, facts).await?;
    Ok(gate.release(outcome, &request, facts))
}

/// Filters must be on fields a listing source has: fields that only an
/// enriching source knows are joined after the page is assembled, so a
/// filter on them would silently drop every row.
fn check_filterable(
    gateway: &Gateway,
    entity: &Entity,
    filters: &[FieldFilter],
) -> Result<(), ApiError> {
    for f in filters {
        let listed = gateway.sources.sources.iter().any(|s| {
            !s.config.enrich.iter().any(|e| e == entity.name)
                && s.plugin.manifest().entities.iter().any(|e| {
                    e.name == entity.name && e.fields.iter().any(|x| x.name == f.field.name)
                })
        });
        if !listed {
            return Err(ApiError::unsupported(format!(
                "`{}` of {} cannot be filtered on: it comes from records joined after the page is assembled",
                f.field.name, entity.name
            )));
        }
    }
    Ok(())
}

/// The API error for a federation that produced no answer; the sources
/// that were called are counted and go into the audit facts.
fn list_error(
    gateway: &Gateway,
    entity: &Entity,
    scope: &[String],
    e: ListError,
    facts: &mut Facts,
) -> ApiError {
    match e {
        ListError::NoSource => ApiError::not_found(format!(
            "no source serves `{}` in division {}; connected sources cover: {}",
            entity.name,
            scope.join(", "),
            gateway.coverage_summary()
        )),
        ListError::Failed(reports) => {
            record_sources(gateway, &reports);
            facts.sources = reports.iter().map(|r| r.name.clone()).collect();
            ApiError::sources_failed(reports)
        }
    }
}

/// Phase 1 of a list: the filters a source can answer, then the gate.
fn authorize<'g>(
    gateway: &'g Gateway,
    principal: &'g Principal,
    request: &mut ListRequest,
    cursor: Option<&str>,
    facts: &mut Facts,
) -> Result<ListGate<'g>, ApiError> {
    check_filterable(gateway, request.entity, &request.filters)?;
    ListGate::authorize(gateway.gate(), principal, request, cursor, facts)
}

/// Run an authorized list: fan out, merge, join enriching sources.
async fn fetch(
    gateway: &Gateway,
    request: &ListRequest,
    facts: &mut Facts,
) -> Result<federation::ListOutcome, ApiError> {
    match federation::execute(&gateway.sources, request).await {
        Ok(mut outcome) => {
            federation::enrich::enrich(
                &gateway.sources,
                &gateway.person_key,
                request,
                &mut outcome,
            )
            .await;
            record_sources(gateway, &outcome.reports);
            Ok(outcome)
        }
        Err(e) => Err(list_error(
            gateway,
            request.entity,
            &request.scope,
            e,
            facts,
        )),
    }
}

/// `GET /v1/{resource}`: a page of any resource of the unified model.
async fn list_resource(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    Path(resource): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let lane = lane_of(&gateway, &principal, raw.as_deref());
    lane.run(async move {
        let mut facts = Facts::default();
        let result = match model::entity(&resource) {
            None => Err(ApiError::not_found(format!(
                "no resource `{resource}`; the API serves: {}",
                model::ENTITIES
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            Some(entity) => {
                // `parent=<code>` lists a division's children.
                let parent_mode = entity.name == model::DIVISIONS.name;
                list(&gateway, &principal, entity, raw, parent_mode, &mut facts).await
            }
        };
        respond(result, facts)
    })
    .await
}

/// `GET /v1/cases`: the list, as for any resource (the route exists
/// apart because `POST /v1/cases` shares it).
async fn list_cases(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let lane = lane_of(&gateway, &principal, raw.as_deref());
    lane.run(async move {
        let mut facts = Facts::default();
        let result = list(&gateway, &principal, &model::CASES, raw, false, &mut facts).await;
        respond(result, facts)
    })
    .await
}

/// Where a request runs: a request whose division (`division=`, or
/// `parent=` for divisions; else the caller's jurisdiction) more than
/// `sources::WIDE` sources hold data in is wide, and runs whole on the
/// wide lane (`sources/lane.rs`), so the district users' requests beside
/// it keep their latency.
fn lane_of(gateway: &Gateway, principal: &Principal, raw: Option<&str>) -> Lane {
    let asked = raw
        .and_then(|raw| serde_urlencoded::from_str::<Vec<(String, String)>>(raw).ok())
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(k, _)| k == "division" || k == "parent")
        })
        .map(|(_, v)| lianqiao_policy::division::canonical(&v).to_string());
    let division = asked.as_deref().unwrap_or(&principal.division);
    Lane {
        wide: gateway.sources.width(division) > crate::sources::WIDE,
        lane: gateway.sources.fan_out.lane.clone(),
    }
}

struct Lane {
    wide: bool,
    lane: crate::sources::lane::WideLane,
}

impl Lane {
    async fn run(
        self,
        work: impl std::future::Future<Output = Response> + Send + 'static,
    ) -> Response {
        self.lane.run(self.wide, work).await
    }
}

/// `GET /v1/stats?metric=<resource>.count&division=<code>[&group_by=<level>][&by=<field>]`
async fn stats(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let lane = lane_of(&gateway, &principal, raw.as_deref());
    lane.run(async move {
        let mut facts = Facts::default();
        let result = stats_inner(&gateway, &principal, raw, &mut facts).await;
        respond(result, facts)
    })
    .await
}

async fn stats_inner(
    gateway: &Gateway,
    principal: &Principal,
    raw: Option<String>,
    facts: &mut Facts,
) -> Result<Released, ApiError> {
    let server = &gateway.config.server;
    let pairs = params::pairs(raw.as_deref(), server)?;
    let mut request = params::stats_request(&pairs, server)?;
    check_filterable(gateway, request.entity, &request.filters)?;
    let gate = StatsGate::authorize(gateway.gate(), principal, &mut request, facts)?;
    if let Some(measure) = request.measure {
        return match federation::measures::measure(&gateway.sources, &request, measure).await {
            Ok(measured) => {
                record_sources(gateway, &measured.counts.reports);
                gate.release_measured(measured, &request, facts)
            }
            Err(e) => Err(list_error(
                gateway,
                request.entity,
                &request.scope,
                e,
                facts,
            )),
        };
    }
    match federation::stats::stats(&gateway.sources, &request).await {
        Ok(outcome) => {
            record_sources(gateway, &outcome.reports);
            gate.release(outcome, &request, facts)
        }
        Err(e) => Err(list_error(
            gateway,
            request.entity,
            &request.scope,
            e,
            facts,
        )),
    }
}

/// The OpenAPI 3.1 document, generated from the same model the handlers use.
async fn openapi(State(live): State<Arc<Live>>) -> Json<serde_json::Value> {
    let gateway = live.current();
    let config = &gateway.config;
    Json(openapi::document(
        &config.field_classes,
        &config.policy.purposes,
        &config.server,
    ))
}

/// One division by code: `{data: {...}, sources: [...]}`.
async fn get_division(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(principal): Extension<Principal>,
    Path(code): Path<String>,
) -> Response {
    let mut facts = Facts::default();
    let result = division_inner(&gateway, &principal, code, &mut facts).await;
    respond(result, facts)
}

async fn division_inner(
    gateway: &Gateway,
    principal: &Principal,
    code: String,
    facts: &mut Facts,
) -> Result<Released, ApiError> {
    // In prefix form: `150100` is the national form of `1501`.
    let code = params::division_code("code", &code)?;
    let entity = &model::DIVISIONS;
    // By the row's unified code (`division`), not its `code` field: a
    // source may keep a local code there.
    let field = entity
        .field("division")
        .ok_or_else(|| ApiError::not_found("no division field"))?;
    let mut request = ListRequest {
        entity,
        scope: vec![code.clone()],
        filters: vec![FieldFilter {
            field,
            op: FilterOp::Eq,
            values: vec![Value::Text(code.clone())],
        }],
        projection: entity.field_names(),
        output: entity.field_names(),
        limit: 1,
        cursor: None,
        strict: false,
    };
    let gate = authorize(gateway, principal, &mut request, None, facts)?;
    let outcome = fetch(gateway, &request, facts).await?;
    gate.release_one(outcome, &request, facts, || {
        ApiError::not_found(format!("no division has the code {code}"))
    })
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when every source's plugin loaded (the gateway does not start
/// otherwise). Each source's state is its last background health check
/// (`up`, `down`, or `unchecked` before the first one or with checks off)
/// and its breaker; with a source down the gateway is `degraded` but still
/// ready (answers are partial, not wrong), so the status stays 200.
async fn readyz(State(live): State<Arc<Live>>) -> impl IntoResponse {
    Json(crate::health::readiness(&live.current()))
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such route: {}; see /openapi.json for the API",
        uri.path()
    ))
}

async fn no_method(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let allow = allowed_methods(path);
    let mut response = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {path}; it answers {allow}"),
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static(allow),
    );
    response
}
