//! `party-link`: the region's party–masses link system (党群连心桥) as the
//! unified `party-orgs` and `members`.
//!
//! The upstream takes HMAC-signed POSTs (the host signs: this plugin only
//! names the credential), pages by `pageNo`/`pageSize` ≤ 200 in its own
//! order, and speaks pinyin abbreviations and GB code tables. It cannot
//! sort by division, so the plugin fetches a scope once, sorts it, keeps it
//! in the host's cache, and pages through it.

use lianqiao_sdk::snapshot::{self, Record};
use lianqiao_sdk::{
    AggregateCell, ChangePage, ChangesQuery, Command, CommandError, CommandResult, CountQuery,
    Description, Guest, Manifest, Page, Query, SDK_VERSION, SourceError, ValueKind, settings,
};
use serde_json::{Map, Value as Json, json};

/// Base URL, credential name and snapshot lifetime.
type Settings = settings::UpstreamSettings;

use ValueKind::{Date, Integer, Text};

/// Unified fields and kinds per entity.
const ORG_FIELDS: &[(&str, ValueKind)] = &[
    ("id", Text),
    ("name", Text),
    ("kind", Text),
    ("parent_org", Text),
    ("division", Text),
    ("member_count", Integer),
    ("secretary_name", Text),
    ("founded_on", Date),
];
const MEMBER_FIELDS: &[(&str, ValueKind)] = &[
    ("id", Text),
    ("name", Text),
    ("gender", Text),
    ("birth_date", Date),
    ("ethnicity", Text),
    ("id_number", Text),
    ("phone", Text),
    ("org", Text),
    ("joined_on", Date),
    ("status", Text),
    ("division", Text),
    ("address", Text),
];

fn fields(entity: &str) -> Result<&'static [(&'static str, ValueKind)], SourceError> {
    match entity {
        "party-orgs" => Ok(ORG_FIELDS),
        "members" => Ok(MEMBER_FIELDS),
        other => Err(SourceError::Unsupported(format!(
            "entity `{other}` is not served"
        ))),
    }
}

/// GB 3304 ethnicity codes the system uses.
fn ethnicity(code: &str) -> &'static str {
    match code {
        "01" => "汉族",
        "02" => "蒙古族",
        "03" => "回族",
        "04" => "藏族",
        "08" => "壮族",
        "10" => "朝鲜族",
        "11" => "满族",
        "15" => "土家族",
        "31" => "达斡尔族",
        "45" => "鄂温克族",
        _ => "其他",
    }
}

fn text<'a>(item: &'a Json, key: &str) -> Option<&'a str> {
    item.get(key).and_then(Json::as_str)
}

/// An upstream record in unified field names.
fn record(entity: &str, item: &Json) -> Option<Record> {
    let mut f = Map::new();
    let id = text(item, if entity == "members" { "dyid" } else { "dzzdm" })?.to_string();
    let division = text(item, "xzqhdm")?.to_string();
    if entity == "members" {
        f.insert("name".into(), json!(text(item, "xm")));
        f.insert(
            "gender".into(),
            json!(match text(item, "xb") {
                Some("1") => Some("male"),
                Some("2") => Some("female"),
                _ => None,
            }),
        );
        f.insert("birth_date".into(), json!(text(item, "csrq")));
        f.insert("ethnicity".into(), json!(text(item, "mz").map(ethnicity)));
        f.insert("id_number".into(), json!(text(item, "sfzh")));
        f.insert("phone".into(), json!(text(item, "lxdh")));
        f.insert("org".into(), json!(text(item, "szdzzdm")));
        f.insert("joined_on".into(), json!(text(item, "rdrq")));
        f.insert(
            "status".into(),
            json!(match text(item, "dyzt") {
                Some("在职党员") => Some("in_service_registered"),
                Some("离退休党员") => Some("retired"),
                Some(_) => Some("regular"),
                None => None,
            }),
        );
        f.insert("address".into(), json!(text(item, "jzdz")));
    } else {
        f.insert("name".into(), json!(text(item, "dzzmc")));
        f.insert(
            "kind".into(),
            json!(match text(item, "dzzlb") {
                Some("611") => Some("committee"),
                Some("621") => Some("general_branch"),
                Some("631") => Some("branch"),
                Some("641") => Some("group"),
                Some("632") => Some("functional"),
                Some("633") => Some("red_property"),
                _ => None,
            }),
        );
        f.insert("parent_org".into(), json!(text(item, "sjdzzdm")));
        f.insert(
            "member_count".into(),
            item.get("dysl").cloned().unwrap_or(Json::Null),
        );
        f.insert("secretary_name".into(), json!(text(item, "dzsj")));
        f.insert("founded_on".into(), json!(text(item, "clrq")));
    }
    Some((division, id, f))
}

/// One signed POST; the upstream's own error codes become source errors.
fn post(settings: &Settings, path: &str, body: &Json) -> Result<Json, SourceError> {
    let response = settings.send(
        "POST",
        path,
        vec![("content-type".into(), "application/json".into())],
        Some(body.to_string().into_bytes()),
    )?;
    if response.status != 200 {
        return Err(SourceError::UpstreamError(format!(
            "{path} answered HTTP {}",
            response.status
        )));
    }
    let envelope: Json = serde_json::from_slice(&response.body)
        .map_err(|e| SourceError::UpstreamError(format!("{path} answered malformed JSON: {e}")))?;
    match envelope.get("code").and_then(Json::as_i64) {
        Some(0) => Ok(envelope),
        Some(code) => Err(SourceError::UpstreamError(format!(
            "{path} refused with code {code}: {}",
            text(&envelope, "msg").unwrap_or("")
        ))),
        None => Err(SourceError::UpstreamError(format!(
            "{path} answered without a code"
        ))),
    }
}

/// Every record of `entity` under `code` (the SDK sorts and caches them).
fn fetch(settings: &Settings, entity: &str, code: &str) -> Result<Vec<Record>, SourceError> {
    let path = if entity == "members" {
        "/api/v1/dy/list"
    } else {
        "/api/v1/dzz/list"
    };
    let mut records = Vec::new();
    let mut page = 1;
    loop {
        let envelope = post(
            settings,
            path,
            &json!({ "xzqhdm": code, "pageNo": page, "pageSize": 200 }),
        )?;
        let data = &envelope["data"];
        let list = data["list"].as_array().cloned().unwrap_or_default();
        let total = data["total"].as_u64().unwrap_or(0) as usize;
        for item in &list {
            records.push(record(entity, item).ok_or_else(|| {
                SourceError::UpstreamError(format!("{path}: a record without id or xzqhdm"))
            })?);
        }
        if list.is_empty() || records.len() >= total {
            return Ok(records);
        }
        page += 1;
    }
}

struct PartyLink;

impl Guest for PartyLink {
    fn describe() -> Result<Description, SourceError> {
        let _: Settings = settings::load()?;
        let spec = snapshot::entity_spec;
        Ok(lianqiao_sdk::describe_only(Manifest {
            name: "party-link".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: SDK_VERSION.into(),
            entities: vec![
                spec("party-orgs", ORG_FIELDS),
                spec("members", MEMBER_FIELDS),
            ],
        }))
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        snapshot::serve(&query.entity, fields, fetch, |snapshots| {
            snapshots.page(&query)
        })
    }

    fn changes(query: ChangesQuery) -> Result<ChangePage, SourceError> {
        Err(SourceError::Unsupported(format!(
            "the party-link system keeps no change times for `{}`",
            query.entity
        )))
    }

    fn command(_: Command, _: String) -> Result<CommandResult, CommandError> {
        Err(CommandError::Unsupported(
            "the party-link system takes no writes through Lianqiao".into(),
        ))
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

lianqiao_sdk::export_source!(PartyLink);
