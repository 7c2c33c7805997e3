//! `city-platform`: Hohhot's integrated information platform (一体化信息
//! 平台) as the unified `divisions` (the authoritative registry down to
//! communities), `cases` (the city loop) and `service-centers`.
//!
//! The upstream speaks camelCase REST with OAuth2 bearer tokens (the host
//! obtains and refreshes them: this plugin only names the credential),
//! pages with `limit`/`cursor`/`nextCursor` in its own order, lists a
//! division's children one level at a time, and answers errors as RFC 7807
//! problems. Scopes are fetched once, sorted and cached in the host.

use lianqiao_sdk::keyset::Position;
use lianqiao_sdk::snapshot::{self, Record};
use lianqiao_sdk::{
    AggregateCell, ChangeFeed, ChangePage, ChangesQuery, Command, CommandError, CommandResult,
    CountQuery, Description, Filter, FilterOp, FilterSupport, Guest, Manifest, Page, Query,
    SDK_VERSION, SourceError, Value, ValueKind, settings,
};
use serde_json::{Map, Value as Json, json};

/// Base URL, credential name and snapshot lifetime.
type Settings = settings::UpstreamSettings;

use ValueKind::{Integer, Text, Timestamp};

const DIVISION_FIELDS: &[(&str, ValueKind)] = &[
    ("id", Text),
    ("code", Text),
    ("name", Text),
    ("level", Text),
    ("parent", Text),
    ("division", Text),
    ("households", Integer),
    ("population", Integer),
];
const CASE_FIELDS: &[(&str, ValueKind)] = &[
    ("id", Text),
    ("title", Text),
    ("category", Text),
    ("loop", Text),
    ("state", Text),
    ("division", Text),
    ("opened_at", Timestamp),
    ("updated_at", Timestamp),
    ("due_at", Timestamp),
    ("reporter_name", Text),
    ("reporter_phone", Text),
    ("departments", Text),
    ("satisfaction", Integer),
];
const CENTER_FIELDS: &[(&str, ValueKind)] = &[
    ("id", Text),
    ("name", Text),
    ("level", Text),
    ("division", Text),
    ("address", Text),
    ("area_m2", Integer),
    ("open_hours", Text),
];

fn fields(entity: &str) -> Result<&'static [(&'static str, ValueKind)], SourceError> {
    match entity {
        "divisions" => Ok(DIVISION_FIELDS),
        "cases" => Ok(CASE_FIELDS),
        "service-centers" => Ok(CENTER_FIELDS),
        other => Err(SourceError::Unsupported(format!(
            "entity `{other}` is not served"
        ))),
    }
}

/// One authorized GET, following the platform's error conventions.
fn get(settings: &Settings, path_and_query: &str) -> Result<Json, SourceError> {
    let response = settings.send(
        "GET",
        path_and_query,
        vec![("accept".into(), "application/json".into())],
        None,
    )?;
    let body: Result<Json, _> = serde_json::from_slice(&response.body);
    match (response.status, body) {
        (200, Ok(json)) => Ok(json),
        (200, Err(e)) => Err(SourceError::UpstreamError(format!(
            "{path_and_query}: malformed JSON: {e}"
        ))),
        (429, _) => Err(SourceError::UpstreamUnavailable(
            "the city platform is rate limiting us (429)".into(),
        )),
        (status, Ok(problem)) => Err(SourceError::UpstreamError(format!(
            "{path_and_query}: HTTP {status}: {}",
            problem
                .get("detail")
                .and_then(Json::as_str)
                .unwrap_or("no detail")
        ))),
        (status, Err(_)) => Err(SourceError::UpstreamError(format!(
            "{path_and_query}: HTTP {status}"
        ))),
    }
}

/// Every item of a cursor-paged listing.
fn all_items(settings: &Settings, path: &str) -> Result<Vec<Json>, SourceError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit=500&cursor={c}"),
            None => format!("{path}&limit=500"),
        };
        let page = get(settings, &url)?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(items),
        }
    }
    Err(SourceError::UpstreamError(format!(
        "{path}: more than 10000 pages"
    )))
}

fn s<'a>(item: &'a Json, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Json::as_str)
}

/// The code whose children include `code` in the platform's registry.
fn registry_parent(code: &str) -> Option<String> {
    match code.len() {
        6 if code.ends_with("0000") => None,
        6 if code.ends_with("00") => Some(format!("{}0000", &code[..2])),
        6 => Some(format!("{}00", &code[..4])),
        9 => Some(code[..6].to_string()),
        12 => Some(code[..9].to_string()),
        _ => None,
    }
}

fn division_record(item: &Json) -> Option<Record> {
    let code = s(item, "code")?.to_string();
    let mut f = Map::new();
    f.insert("code".into(), json!(code));
    f.insert("name".into(), json!(s(item, "name")));
    f.insert("level".into(), json!(s(item, "level")));
    f.insert("parent".into(), json!(s(item, "parentCode")));
    f.insert(
        "households".into(),
        item.get("households").cloned().unwrap_or(Json::Null),
    );
    f.insert(
        "population".into(),
        item.get("population").cloned().unwrap_or(Json::Null),
    );
    Some((code.clone(), code, f))
}

/// The registry under `scope`: the scope's own node, then its children
/// level by level down to communities.
fn divisions_under(settings: &Settings, scope: &str) -> Result<Vec<Record>, SourceError> {
    // A prefix shorter than a code ("1501") stands for its padded code.
    let root = if scope.len() < 6 {
        format!("{scope:0<6}")
    } else {
        scope.to_string()
    };
    let mut records = Vec::new();
    if let Some(parent) = registry_parent(&root) {
        for item in all_items(settings, &format!("/divisions?parentCode={parent}"))? {
            if let Some(r) = division_record(&item).filter(|r| r.0 == root) {
                records.push(r);
            }
        }
    }
    let mut frontier = vec![root];
    while let Some(code) = frontier.pop() {
        if code.len() >= 12 {
            continue;
        }
        for item in all_items(settings, &format!("/divisions?parentCode={code}"))? {
            if let Some(r) = division_record(&item) {
                frontier.push(r.0.clone());
                records.push(r);
            }
        }
    }
    records.retain(|r| r.0.starts_with(scope));
    Ok(records)
}

fn case_record(item: &Json) -> Option<Record> {
    let mut f = Map::new();
    for (to, from) in [
        ("title", "title"),
        ("category", "category"),
        ("loop", "loop"),
        ("state", "state"),
        ("opened_at", "openedAt"),
        ("updated_at", "updatedAt"),
        ("due_at", "dueAt"),
        ("reporter_name", "reporterName"),
        ("reporter_phone", "reporterPhone"),
    ] {
        f.insert(to.into(), json!(s(item, from)));
    }
    let departments: Vec<&str> = item["departments"]
        .as_array()
        .map(|d| d.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    f.insert("departments".into(), json!(departments.join("、")));
    f.insert(
        "satisfaction".into(),
        item.get("satisfaction").cloned().unwrap_or(Json::Null),
    );
    Some((
        s(item, "divisionCode")?.to_string(),
        s(item, "caseId")?.to_string(),
        f,
    ))
}

fn center_record(item: &Json) -> Option<Record> {
    let mut f = Map::new();
    f.insert("name".into(), json!(s(item, "name")));
    f.insert("level".into(), json!(s(item, "tier")));
    f.insert("address".into(), json!(s(item, "address")));
    f.insert(
        "area_m2".into(),
        item.get("areaM2").cloned().unwrap_or(Json::Null),
    );
    f.insert("open_hours".into(), json!(s(item, "openHours")));
    Some((
        s(item, "divisionCode")?.to_string(),
        s(item, "centerId")?.to_string(),
        f,
    ))
}

/// Every record of `entity` under `code` (the SDK sorts and caches them).
fn fetch(settings: &Settings, entity: &str, code: &str) -> Result<Vec<Record>, SourceError> {
    match entity {
        "divisions" => divisions_under(settings, code),
        "cases" | "service-centers" => {
            let (path, map): (_, fn(&Json) -> Option<Record>) = if entity == "cases" {
                ("/cases", case_record)
            } else {
                ("/service-centers", center_record)
            };
            let digits: String = code.chars().filter(char::is_ascii_digit).collect();
            all_items(settings, &format!("{path}?divisionCode={digits}"))?
                .iter()
                .map(|i| {
                    map(i).ok_or_else(|| {
                        SourceError::UpstreamError(format!("{path}: an item without ids"))
                    })
                })
                .collect()
        }
        other => Err(SourceError::Unsupported(format!("entity `{other}`"))),
    }
}

/// File a whistled case on the platform (`POST /cases`), under the
/// platform's own idempotency header: a retry after a lost answer gets the
/// same case back, never a second one.
fn file_case(
    settings: &Settings,
    case: lianqiao_sdk::NewCase,
    idempotency_key: &str,
) -> Result<CommandResult, CommandError> {
    let body = json!({
        "externalId": case.linked_case,
        "divisionCode": case.division,
        "title": case.title,
        "category": case.category,
        "reporterName": case.reporter_name,
        "reporterPhone": case.reporter_phone,
        "dueAt": case.due_at,
        "note": case.first.note,
    });
    let response = settings
        .send(
            "POST",
            "/cases",
            vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
                ("x-request-id".into(), idempotency_key.to_string()),
            ],
            Some(body.to_string().into_bytes()),
        )
        .map_err(command_error)?;
    let answer: Json = serde_json::from_slice(&response.body).unwrap_or(Json::Null);
    match response.status {
        200 | 201 => answer
            .get("caseId")
            .and_then(Json::as_str)
            .map(|id| CommandResult {
                id: id.to_string(),
                replayed: response.status == 200,
            })
            .ok_or_else(|| {
                CommandError::UpstreamError("POST /cases: no caseId in the answer".into())
            }),
        status => Err(status_error(status, &answer)),
    }
}

fn case_kind(field: &str) -> Option<ValueKind> {
    CASE_FIELDS
        .iter()
        .find(|(n, _)| *n == field)
        .map(|(_, k)| *k)
}

/// The `updated_at >= T` filter of a cases query, as the latest T; none
/// when there is none.
fn updated_since(entity: &str, filters: &[Filter]) -> Result<Option<String>, SourceError> {
    let mut since: Option<String> = None;
    // A lookup by id is the snapshot's (`snapshot::wanted_ids`).
    for f in filters.iter().filter(|f| f.field != "id") {
        if entity != "cases" || f.field != "updated_at" || f.op != FilterOp::Gte {
            return Err(SourceError::Unsupported(format!(
                "filter on `{}` (only `updated_at >=` on cases is declared)",
                f.field
            )));
        }
        for v in &f.values {
            let (Value::Timestamp(t) | Value::Text(t)) = v else {
                return Err(SourceError::Unsupported(
                    "updated_at takes a timestamp".into(),
                ));
            };
            if since.as_ref().is_none_or(|s| t > s) {
                since = Some(t.clone());
            }
        }
    }
    Ok(since)
}

/// Percent-encode a query value (`+` and `:` of a timestamp included).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Cases changed since `since` under `scope`, read from the platform's
/// `updatedSince` feed now, sorted as the contract orders rows.
fn changed_cases(
    settings: &Settings,
    scope: &[String],
    since: &str,
) -> Result<Vec<Record>, SourceError> {
    let mut records = Vec::new();
    for code in scope {
        let digits: String = code.chars().filter(char::is_ascii_digit).collect();
        for item in all_items(
            settings,
            &format!(
                "/cases?divisionCode={digits}&updatedSince={}",
                encode(since)
            ),
        )? {
            // The platform compares as text; the contract compares times.
            let fresh = s(&item, "updatedAt").is_some_and(|u| u >= since);
            if let (true, Some(record)) = (fresh, case_record(&item)) {
                records.push(record);
            }
        }
    }
    snapshot::sort(&mut records);
    records.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    Ok(records)
}

/// Move a filed case on the platform (`POST /cases/{id}/actions`), for
/// the city platform's system principal acting through the gateway: the
/// platform checks the case is where the move starts (409 otherwise).
fn act_on_case(
    settings: &Settings,
    t: lianqiao_sdk::Transition,
    idempotency_key: &str,
) -> Result<CommandResult, CommandError> {
    let action = match t.to_state.as_str() {
        "reported_in" => "report-in",
        "feedback" => "feedback",
        "evaluated" => "evaluate",
        "closed" => "close",
        other => {
            return Err(CommandError::Unsupported(format!(
                "the city platform has no action for `{other}`"
            )));
        }
    };
    let mut body = json!({ "action": action });
    if let Some(s) = t.satisfaction {
        body["satisfaction"] = json!(s);
    }
    let id: String =
        t.id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
    let response = settings
        .send(
            "POST",
            &format!("/cases/{id}/actions"),
            vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), "application/json".into()),
                ("x-request-id".into(), idempotency_key.to_string()),
            ],
            Some(body.to_string().into_bytes()),
        )
        .map_err(command_error)?;
    let answer: Json = serde_json::from_slice(&response.body).unwrap_or(Json::Null);
    match response.status {
        200 => Ok(CommandResult {
            id: t.id,
            replayed: false,
        }),
        404 => Err(CommandError::NotFound(format!(
            "the city platform: {}",
            detail(&answer)
        ))),
        status => Err(status_error(status, &answer)),
    }
}

/// A transport failure of a command, as the contract names it.
fn command_error(e: SourceError) -> CommandError {
    match e {
        SourceError::UpstreamTimeout(m) => CommandError::UpstreamTimeout(m),
        SourceError::UpstreamUnavailable(m) => CommandError::UpstreamUnavailable(m),
        SourceError::Denied(m) => CommandError::Denied(m),
        other => CommandError::UpstreamError(other.to_string()),
    }
}

fn detail(answer: &Json) -> String {
    answer
        .get("detail")
        .and_then(Json::as_str)
        .unwrap_or("no detail")
        .to_string()
}

/// A command's answer that is not a success, as the contract names it.
fn status_error(status: u16, answer: &Json) -> CommandError {
    match status {
        400 | 422 => CommandError::Rejected(format!("the city platform: {}", detail(answer))),
        409 => CommandError::Conflict(format!("the city platform: {}", detail(answer))),
        429 | 502 | 503 => {
            CommandError::UpstreamUnavailable(format!("the city platform answered {status}"))
        }
        504 => CommandError::UpstreamTimeout("the city platform answered 504".into()),
        status => CommandError::UpstreamError(format!(
            "the city platform answered {status}: {}",
            detail(answer)
        )),
    }
}

struct CityPlatform;

impl Guest for CityPlatform {
    fn describe() -> Result<Description, SourceError> {
        let _: Settings = settings::load()?;
        let spec = snapshot::entity_spec;
        let manifest = Manifest {
            name: "city-platform".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: SDK_VERSION.into(),
            // Every entity answers a lookup by id from its snapshot, so
            // the gateway finds one case without paging through them all.
            entities: vec![
                lianqiao_sdk::EntitySpec {
                    filters: vec![snapshot::id_lookup()],
                    ..spec("divisions", DIVISION_FIELDS)
                },
                lianqiao_sdk::EntitySpec {
                    // `updated_at >= T` is the platform's `updatedSince`
                    // feed, read fresh (never from a snapshot older than T).
                    filters: vec![
                        FilterSupport {
                            field: "updated_at".into(),
                            ops: vec![FilterOp::Gte],
                        },
                        snapshot::id_lookup(),
                    ],
                    ..spec("cases", CASE_FIELDS)
                },
                lianqiao_sdk::EntitySpec {
                    filters: vec![snapshot::id_lookup()],
                    ..spec("service-centers", CENTER_FIELDS)
                },
            ],
        };
        Ok(Description {
            manifest,
            // Cases from the platform's `updatedSince` feed; it does not
            // report deletions (a closed case stays, with its state).
            change_feeds: vec![ChangeFeed {
                entity: "cases".into(),
                tombstones: false,
            }],
        })
    }

    fn changes(query: ChangesQuery) -> Result<ChangePage, SourceError> {
        if query.entity != "cases" {
            return Err(SourceError::Unsupported(format!(
                "the city platform lists changes of cases only, not `{}`",
                query.entity
            )));
        }
        let settings: Settings = settings::load()?;
        // The watermark: the last change time seen (as the platform wrote
        // it) and the id of the last case at that time.
        let after = match query.since.as_deref() {
            None | Some("") => None,
            Some(w) => Some(Position::decode(w)?),
        };
        let from = after
            .as_ref()
            .map_or("1970-01-01T00:00:00+08:00", |p| p.division.as_str());
        let updated = |r: &Record| {
            r.2.get("updated_at")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut records: Vec<(String, Record)> = changed_cases(&settings, &query.scope, from)?
            .into_iter()
            .map(|r| (updated(&r), r))
            .filter(|(time, r)| {
                after.as_ref().is_none_or(|p| {
                    (time.as_str(), r.1.as_str()) > (p.division.as_str(), p.id.as_str())
                })
            })
            .collect();
        records.sort_by(|a, b| (&a.0, &a.1.1).cmp(&(&b.0, &b.1.1)));
        let more = records.len() > query.limit as usize;
        records.truncate(query.limit as usize);
        let watermark = match records.last() {
            Some((time, r)) => Position {
                division: time.clone(),
                id: r.1.clone(),
            }
            .encode(),
            None => query.since.clone().unwrap_or_default(),
        };
        let ordered: Vec<Record> = records.into_iter().map(|(_, r)| r).collect();
        let page = snapshot::page_of(
            &ordered,
            &Query {
                entity: query.entity,
                scope: query.scope,
                filters: vec![],
                projection: query.projection,
                limit: u32::MAX,
                cursor: None,
            },
            case_kind,
        )?;
        Ok(ChangePage {
            rows: lianqiao_sdk::row_buffer(page.columns, &page.rows)?,
            deleted: vec![],
            watermark,
            more,
        })
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        if let Some(since) = updated_since(&query.entity, &query.filters)? {
            let settings: Settings = settings::load()?;
            let mut records = changed_cases(&settings, &query.scope, &since)?;
            let ids: Vec<Filter> = query
                .filters
                .iter()
                .filter(|f| f.field == "id")
                .cloned()
                .collect();
            if let Some(ids) = snapshot::wanted_ids(&ids)? {
                records.retain(|r| ids.contains(&r.1));
            }
            return snapshot::page_of(&records, &query, case_kind)?.into_buffer();
        }
        // Lookups by id are answered from the snapshot.
        snapshot::serve(&query.entity, fields, fetch, |snapshots| {
            snapshots.page(&query)
        })
    }

    fn command(command: Command, idempotency_key: String) -> Result<CommandResult, CommandError> {
        let settings: Settings =
            settings::load().map_err(|e| CommandError::BadConfig(e.to_string()))?;
        match command {
            Command::CreateCase(case) => file_case(&settings, case, &idempotency_key),
            // The departments move city cases on the platform itself; the
            // gateway mirrors those moves, it does not make them.
            Command::TransitionCase(t) => act_on_case(&settings, t, &idempotency_key),
        }
    }

    fn aggregate(asked: CountQuery) -> Result<Vec<AggregateCell>, SourceError> {
        // Snapshots count with digests from their records, asked or not.
        let query = asked.query;
        // Counted here, from the snapshot: no rows cross to the gateway.
        snapshot::serve(&query.entity, fields, fetch, |snapshots| {
            snapshots.count(&query)
        })
    }
}

lianqiao_sdk::export_source!(CityPlatform);
