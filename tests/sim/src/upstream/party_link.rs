//! The autonomous region's party–masses link system (党群连心桥), as a
//! simulator with that kind of system's conventions: POST JSON list
//! endpoints, pinyin-abbreviation field names, `{"code":0,"msg":…,"data":…}`
//! with errors as non-zero codes under HTTP 200, `pageNo`/`pageSize`
//! paging (at most 200), and HMAC-signed requests with replay protection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::faults::{self, Faults};
use super::world::World;
use crate::generate::people::{Member, MemberStatus, OrgKind};

/// Requests older (or newer) than this are refused as stale.
const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// Stable error codes of the party-link system.
pub mod codes {
    pub const MISSING_AUTH: i64 = 40001;
    pub const BAD_SIGNATURE: i64 = 40002;
    pub const STALE_TIMESTAMP: i64 = 40003;
    pub const REPLAYED_NONCE: i64 = 40004;
    pub const UNKNOWN_APP: i64 = 40005;
    pub const BAD_PARAMS: i64 = 40010;
    pub const NO_SUCH_API: i64 = 40400;
}

#[derive(Clone)]
pub struct PartyLink {
    world: Arc<World>,
    index: Arc<Index>,
    apps: Arc<HashMap<String, String>>,
    nonces: Arc<Mutex<HashMap<String, i64>>>,
}

/// The world as the lists read it, built once: a region's 25,000
/// organizations and 200,000 members are not re-encoded, re-counted and
/// re-sorted for every page of 200 (a real system keeps indexes too).
struct Index {
    /// (division, kind code, the record) in id order.
    orgs: Vec<(String, &'static str, Value)>,
    /// (district index, member index, the member's division) in id order,
    /// district by district in code order.
    members: Vec<(usize, usize, String)>,
}

impl Index {
    fn of(world: &World) -> Index {
        let mut orgs = Vec::new();
        let mut members = Vec::new();
        for (di, d) in world.districts.iter().enumerate() {
            let mut members_of: HashMap<&str, usize> = HashMap::new();
            for m in &d.people.members {
                *members_of.entry(m.org.as_str()).or_default() += 1;
            }
            for o in &d.people.orgs {
                let (code, label) = kind_code(o.kind);
                orgs.push((
                    o.division.clone(),
                    code,
                    json!({
                        "dzzdm": o.id, "dzzmc": o.name, "sjdzzdm": o.parent, "dzzlb": code, "dzzlbmc": label,
                        "xzqhdm": o.division, "dzsj": o.secretary_name, "clrq": o.founded_on,
                        "dysl": members_of.get(o.id.as_str()).copied().unwrap_or(0),
                    }),
                ));
            }
            let division_of: HashMap<&str, &str> = d
                .people
                .orgs
                .iter()
                .map(|o| (o.id.as_str(), o.division.as_str()))
                .collect();
            for (mi, m) in d.people.members.iter().enumerate() {
                let division = division_of.get(m.org.as_str()).copied().unwrap_or_default();
                members.push((di, mi, division.to_string()));
            }
        }
        orgs.sort_by(|a, b| a.2["dzzdm"].as_str().cmp(&b.2["dzzdm"].as_str()));
        Index { orgs, members }
    }
}

pub fn router(world: Arc<World>, apps: HashMap<String, String>, faults: Faults) -> Router {
    let state = PartyLink {
        index: Arc::new(Index::of(&world)),
        world,
        apps: Arc::new(apps),
        nonces: Arc::default(),
    };
    let api = Router::new()
        .route("/api/v1/dzz/list", post(dzz_list))
        .route("/api/v1/dy/list", post(dy_list))
        .route("/api/v1/sbd/list", post(sbd_list))
        .fallback(|| async { Json(fail(codes::NO_SUCH_API, "接口不存在 (no such API)")) })
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

fn fail(code: i64, msg: &str) -> Value {
    json!({ "code": code, "msg": msg, "data": null })
}

/// The canonical string a request's signature covers.
pub fn canonical(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    format!(
        "{method}\n{path}\n{}\n{}\n{timestamp}\n{nonce}",
        pairs.join("&"),
        hex::encode(Sha256::digest(body))
    )
}

/// hex(HMAC-SHA256(secret, canonical)).
pub fn sign(secret: &str, canonical: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl PartyLink {
    /// Check appKey, timestamp, nonce and signature, in that order.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
        body: &[u8],
    ) -> Result<(), Value> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(app), Some(ts), Some(nonce), Some(signature)) = (
            header("appKey"),
            header("timestamp"),
            header("nonce"),
            header("sign"),
        ) else {
            return Err(fail(
                codes::MISSING_AUTH,
                "缺少签名参数 appKey/timestamp/nonce/sign",
            ));
        };
        let secret = self
            .apps
            .get(app)
            .ok_or_else(|| fail(codes::UNKNOWN_APP, "appKey 不存在"))?;
        let ts_ms: i64 = ts
            .parse()
            .map_err(|_| fail(codes::STALE_TIMESTAMP, "timestamp 格式错误"))?;
        let now = now_ms();
        if (now - ts_ms).abs() > MAX_SKEW_MS {
            return Err(fail(
                codes::STALE_TIMESTAMP,
                "请求已过期 (timestamp older than 5 minutes)",
            ));
        }
        let expected = sign(
            secret,
            &canonical(
                "POST",
                uri.path(),
                uri.query().unwrap_or(""),
                body,
                ts,
                nonce,
            ),
        );
        let same = expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.to_ascii_lowercase().bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(fail(codes::BAD_SIGNATURE, "签名错误 (bad signature)"));
        }
        let mut nonces = self
            .nonces
            .lock()
            .map_err(|_| fail(50000, "internal error"))?;
        nonces.retain(|_, seen| now - *seen <= MAX_SKEW_MS);
        if nonces.insert(format!("{app}:{nonce}"), now).is_some() {
            return Err(fail(codes::REPLAYED_NONCE, "nonce 重复 (replayed request)"));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(default)]
    xzqhdm: Option<String>,
    #[serde(default = "one")]
    page_no: i64,
    #[serde(default = "twenty")]
    page_size: i64,
    #[serde(default)]
    szdzzdm: Option<String>,
    #[serde(default)]
    sfzh: Option<String>,
    #[serde(default)]
    dzzlb: Option<String>,
}

fn one() -> i64 {
    1
}
fn twenty() -> i64 {
    20
}

/// Authenticate, parse and validate a list request.
fn prepare(
    state: &PartyLink,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    body: &Bytes,
) -> Result<ListParams, Value> {
    state.authenticate(headers, uri, body)?;
    let params: ListParams = serde_json::from_slice(body)
        .map_err(|e| fail(codes::BAD_PARAMS, &format!("请求体不是合法 JSON: {e}")))?;
    if !(1..=200).contains(&params.page_size) || params.page_no < 1 {
        return Err(fail(
            codes::BAD_PARAMS,
            "pageNo 从 1 开始, pageSize 取值 1-200",
        ));
    }
    if let Some(code) = &params.xzqhdm
        && !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(fail(codes::BAD_PARAMS, "xzqhdm 必须为数字"));
    }
    Ok(params)
}

fn page(params: &ListParams, items: Vec<Value>) -> Value {
    page_lazy(params, items.iter(), Value::clone)
}

/// Page over matching items without encoding the ones outside the page
/// (the member list is large; items come in id order already).
fn page_lazy<'a, T: 'a>(
    params: &ListParams,
    items: impl Iterator<Item = &'a T>,
    encode: impl Fn(&T) -> Value,
) -> Value {
    let start = ((params.page_no - 1) * params.page_size) as usize;
    let mut total = 0usize;
    let mut list = Vec::new();
    for item in items {
        if total >= start && list.len() < params.page_size as usize {
            list.push(encode(item));
        }
        total += 1;
    }
    json!({ "code": 0, "msg": "success", "data": { "total": total, "list": list } })
}

fn kind_code(kind: OrgKind) -> (&'static str, &'static str) {
    match kind {
        OrgKind::Committee => ("611", "党委"),
        OrgKind::Branch => ("631", "党支部"),
        OrgKind::Group => ("641", "党小组"),
        OrgKind::Functional => ("632", "功能型党支部"),
        OrgKind::RedProperty => ("633", "红色物业党支部"),
    }
}

/// GB 3304 ethnicity codes.
pub fn ethnicity_code(name: &str) -> &'static str {
    match name {
        "汉族" => "01",
        "蒙古族" => "02",
        "回族" => "03",
        "藏族" => "04",
        "壮族" => "08",
        "朝鲜族" => "10",
        "满族" => "11",
        "土家族" => "15",
        "达斡尔族" => "31",
        "鄂温克族" => "45",
        _ => "97",
    }
}

fn in_scope(division: &str, params: &ListParams) -> bool {
    params
        .xzqhdm
        .as_deref()
        .is_none_or(|code| division.starts_with(code))
}

async fn dzz_list(
    State(state): State<PartyLink>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let params = match prepare(&state, &headers, &uri, &body) {
        Ok(p) => p,
        Err(e) => return Json(e),
    };
    let matching = state.index.orgs.iter().filter(|(division, code, _)| {
        in_scope(division, &params) && params.dzzlb.as_deref().is_none_or(|k| k == *code)
    });
    Json(page_lazy(&params, matching, |(_, _, org)| org.clone()))
}

fn member_json(m: &Member, division: &str) -> Value {
    let status = match m.status {
        MemberStatus::Regular => "正式党员",
        MemberStatus::InServiceRegistered => "在职党员",
        MemberStatus::Retired => "离退休党员",
    };
    json!({
        "dyid": m.id, "xm": m.name, "xb": if m.male { "1" } else { "2" }, "mz": ethnicity_code(m.ethnicity),
        "csrq": m.birth_date, "sfzh": m.id_number, "lxdh": m.phone, "rdrq": m.joined_on,
        "szdzzdm": m.org, "jzdz": m.address, "dyzt": status, "xzqhdm": division,
    })
}

async fn dy_list(
    State(state): State<PartyLink>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let params = match prepare(&state, &headers, &uri, &body) {
        Ok(p) => p,
        Err(e) => return Json(e),
    };
    // Members are generated in id order, district by district in code order.
    let world = &state.world;
    let matching = state.index.members.iter().filter_map(|(di, mi, division)| {
        let m = &world.districts[*di].people.members[*mi];
        let keep = in_scope(division, &params)
            && params.szdzzdm.as_deref().is_none_or(|o| o == m.org)
            && params.sfzh.as_deref().is_none_or(|s| s == m.id_number);
        keep.then_some((m, division))
    });
    let matching: Vec<(&Member, &String)> = matching.collect();
    Json(page_lazy(&params, matching.iter(), |(m, division)| {
        member_json(m, division)
    }))
}

const WORKPLACES: &[&str] = &[
    "市税务局",
    "内蒙古电力公司",
    "市第一医院",
    "内蒙古大学",
    "市教育局",
    "自治区财政厅",
    "市公安局",
    "呼和浩特铁路局",
];

async fn sbd_list(
    State(state): State<PartyLink>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let params = match prepare(&state, &headers, &uri, &body) {
        Ok(p) => p,
        Err(e) => return Json(e),
    };
    let mut items = Vec::new();
    for d in &state.world.districts {
        for (n, m) in d
            .people
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.status == MemberStatus::InServiceRegistered)
        {
            // Registered with the community they live in.
            let community = m.grid.get(..12).unwrap_or(&m.grid).to_string();
            if !in_scope(&community, &params) {
                continue;
            }
            let committee = d
                .people
                .orgs
                .iter()
                .find(|o| o.kind == OrgKind::Committee && o.division == community)
                .map(|o| o.id.clone());
            items.push(json!({
                "dyid": m.id, "xm": m.name, "sfzh": m.id_number, "gzdw": WORKPLACES[n % WORKPLACES.len()],
                "bddzzdm": committee, "bdsqdm": community, "gwmc": m.post, "bdrq": m.joined_on,
            }));
        }
    }
    items.sort_by(|a, b| a["dyid"].as_str().cmp(&b["dyid"].as_str()));
    Json(page(&params, items))
}
