//! Property, over HTTP: whatever a caller asks, of any endpoint — lists
//! with filters, projections and cursors (its own and other callers'),
//! statistics with any grouping and filters, single divisions,
//! explanations — no value of a person it may not see in clear leaves the
//! gateway, in any part of any response (row cells, statistics keys, error
//! messages, cursors, ids).
//!
//! The oracle is DOMAIN.md's "who sees what", written here independently of
//! Cedar: which levels see which resources' records, which field classes in
//! clear for which level and purpose. The data is read once through the
//! real gateway by a principal that sees everything; every ID number,
//! phone, name and address in it is indexed with the records that hold it.
//! Each response is then searched for those values (whole strings, and
//! inside messages and keys digit runs shaped like ID numbers and phones
//! and the names a message might quote); every hit must be a value of some
//! record the caller may see in clear. Lists are also checked field by
//! field (withheld fields absent, masked fields masked), statistics keys
//! against the grouped field's values and counts against the protection.
//!
//! Cases are drawn from a seeded generator (`LIANQIAO_DISCLOSURE_SEED`,
//! printed on failure) and run 8 at a time; `LIANQIAO_DISCLOSURE_CASES`
//! (default 10,000) sets how many.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures::StreamExt;
use lianqiao_e2e::oracle::{Allowed, field_access as oracle, sees_rows};
use lianqiao_e2e::{ConfigDir, TestGateway, Upstreams, token};
use lianqiao_gateway::model;
use lianqiao_policy::Level;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const PURPOSES: [&str; 4] = [
    "case-handling",
    "statistics",
    "party-affairs",
    "grid-service",
];
const ENTITIES: [&str; 7] = [
    "members",
    "workers",
    "cases",
    "party-orgs",
    "grids",
    "divisions",
    "service-centers",
];
/// Fields whose values identify a person: what the search looks for.
/// (Dates of birth are checked field by field only: as bare dates they
/// collide with every other date of the data.)
const PERSONAL_FIELDS: [&str; 7] = [
    "name",
    "phone",
    "id_number",
    "address",
    "secretary_name",
    "reporter_name",
    "reporter_phone",
];

/// A record holding a personal value.
#[derive(Debug, Clone)]
struct Holder {
    entity: &'static str,
    field: &'static str,
    division: String,
    case_loop: Option<String>,
}

struct Data {
    /// Every personal value → the records holding it.
    secrets: HashMap<String, Vec<Holder>>,
    /// Names only (searched inside messages and keys).
    names: HashSet<String>,
    /// entity → rows, for filter values.
    rows: HashMap<&'static str, Vec<serde_json::Map<String, Value>>>,
    /// Division codes to pick principals and requests from.
    codes: Vec<String>,
    /// A case's loop by its id (a projection may leave `loop` out).
    loops: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct Caller {
    level: Level,
    division: String,
    purpose: &'static str,
    admin: bool,
}

impl Caller {
    fn token(&self) -> String {
        let roles: &[&str] = if self.admin { &["policy-admin"] } else { &[] };
        token(self.level.as_str(), &self.division, roles)
    }

    /// May this caller see `value` in clear: some record holding it is in
    /// its jurisdiction, of a resource it may list, in a field it sees clear.
    fn may_see(&self, holders: &[Holder], catalog: &lianqiao_policy::FieldCatalog) -> bool {
        holders.iter().any(|h| {
            h.division.starts_with(&self.division)
                && sees_rows(self.level, h.entity, h.case_loop.as_deref())
                && oracle(
                    self.level,
                    self.purpose,
                    catalog.class(h.entity, h.field),
                    h.field,
                ) == Allowed::Clear
        })
    }
}

async fn fetch_all(
    gw: &TestGateway,
    entity: &str,
    division: &str,
) -> Vec<serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = gw
            .get(&format!(
                "/v1/{entity}?division={division}&limit=1000{cursor}"
            ))
            .await;
        assert_eq!(status, 200, "{entity}: {body}");
        for row in body["data"].as_array().unwrap() {
            out.push(row.as_object().unwrap().clone());
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// Digit runs shaped like ID numbers (17 digits + digit/X) and phones (11
/// digits starting with 1), and — in free text — runs of Chinese
/// characters' substrings that are known names.
fn candidates(text: &str, free_text: bool, names: &HashSet<String>) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = vec![text.to_string()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == 'X') {
                j += 1;
            }
            let run: String = chars[i..j].iter().collect();
            for len in [18, 11] {
                if run.len() >= len {
                    for start in 0..=run.len() - len {
                        out.push(run[start..start + len].to_string());
                    }
                }
            }
            i = j;
        } else if free_text && is_cjk(chars[i]) {
            let mut j = i;
            while j < chars.len() && is_cjk(chars[j]) {
                j += 1;
            }
            for a in i..j {
                for b in (a + 2)..=(a + 6).min(j) {
                    let s: String = chars[a..b].iter().collect();
                    if names.contains(&s) {
                        out.push(s);
                    }
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// Every string in `body`, with whether it is free text (a message or a
/// statistics key, where a value could be embedded).
fn strings<'a>(body: &'a Value, free: bool, out: &mut Vec<(&'a str, bool)>) {
    match body {
        Value::String(s) => out.push((s, free)),
        Value::Array(items) => items.iter().for_each(|v| strings(v, free, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push((k, true));
                strings(v, free || k == "message" || k == "key", out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Request {
    List {
        path: String,
        follow: bool,
        hand_over: bool,
    },
    Stats {
        path: String,
        entity: &'static str,
        by: Option<&'static str>,
    },
    Division(String),
    Explain(String),
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("non-empty")
}

/// A filter drawn from the data: a field of `entity` and a value some row
/// has (or a made-up one), sometimes with an operator.
fn random_filter(
    rng: &mut ChaCha8Rng,
    data: &Data,
    entity: &'static str,
    category_bias: f64,
) -> Option<String> {
    let e = model::entity(entity)?;
    let categories: Vec<&model::Field> = e.fields.iter().filter(|f| !f.values.is_empty()).collect();
    let field = if !categories.is_empty() && rng.random_bool(category_bias) {
        *pick(rng, &categories)
    } else {
        pick(rng, e.fields)
    };
    if field.name == "division" {
        return None;
    }
    let rows = data.rows.get(entity)?;
    let value = rows
        .choose(rng)
        .and_then(|r| r.get(field.name))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "x".into());
    let encoded: String = url_encode(&value);
    Some(match rng.random_range(0..6) {
        0 => format!("{}[in]={encoded},{encoded}", field.name),
        1 if field.kind == lianqiao_host::contract::ValueKind::Text => {
            let prefix: String = value.chars().take(3).collect();
            format!("{}[prefix]={}", field.name, url_encode(&prefix))
        }
        _ => format!("{}={encoded}", field.name),
    })
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn random_request(rng: &mut ChaCha8Rng, data: &Data, caller: &Caller) -> Request {
    // Mostly near the caller, sometimes anywhere.
    let near: Vec<&String> = data
        .codes
        .iter()
        .filter(|c| c.starts_with(&caller.division) || caller.division.starts_with(c.as_str()))
        .collect();
    let division = if rng.random_bool(0.8) && !near.is_empty() {
        (*pick(rng, &near)).clone()
    } else {
        pick(rng, &data.codes).clone()
    };
    let entity = *pick(rng, &ENTITIES);
    let kind = rng.random_range(0..10);
    // Statistics mostly filter on categories (identifiers are refused).
    let bias = if (4..=7).contains(&kind) { 0.85 } else { 0.4 };
    let mut filters: Vec<String> = (0..rng.random_range(0..3))
        .filter_map(|_| random_filter(rng, data, entity, bias))
        .collect();
    filters.dedup_by(|a, b| a.split('=').next() == b.split('=').next());
    let extra = if filters.is_empty() {
        String::new()
    } else {
        format!("&{}", filters.join("&"))
    };
    match kind {
        0..=3 => {
            let e = model::entity(entity).expect("entity");
            let fields = if rng.random_bool(0.5) {
                let names: Vec<&str> = (0..rng.random_range(1..5))
                    .map(|_| pick(rng, e.fields).name)
                    .collect();
                format!("&fields={}", names.join(","))
            } else {
                String::new()
            };
            Request::List {
                path: format!(
                    "/v1/{entity}?division={division}&limit={}{fields}{extra}",
                    rng.random_range(1..60)
                ),
                follow: rng.random_bool(0.3),
                hand_over: rng.random_bool(0.15),
            }
        }
        4..=7 => {
            let e = model::entity(entity).expect("entity");
            let categories: Vec<&'static str> = e
                .fields
                .iter()
                .filter(|f| !f.values.is_empty())
                .map(|f| f.name)
                .collect();
            let by = match rng.random_range(0..10) {
                0..=4 if !categories.is_empty() => Some(*pick(rng, &categories)),
                5..=7 => Some(pick(rng, e.fields).name),
                _ => None,
            };
            let group = if rng.random_bool(0.5) {
                format!(
                    "&group_by={}",
                    pick(rng, &["district", "street", "community"])
                )
            } else {
                String::new()
            };
            let by_param = by.map_or(String::new(), |b| format!("&by={b}"));
            // Cases are also measured (loop statistics).
            let metric = if entity == "cases" && rng.random_bool(0.5) {
                pick(rng, &["resolve_hours", "on_time", "satisfaction"]).to_string()
            } else {
                "count".to_string()
            };
            Request::Stats {
                path: format!(
                    "/v1/stats?metric={entity}.{metric}&division={division}{group}{by_param}{extra}"
                ),
                entity,
                by,
            }
        }
        8 => Request::Division(format!("/v1/divisions/{division}")),
        _ => {
            let mut path = format!(
                "/v1/_explain?resource={entity}&division={division}&action={}",
                pick(rng, &["list", "aggregate"])
            );
            if rng.random_bool(0.3) {
                path.push_str(&format!(
                    "&as_level={}&as_division={}",
                    pick(rng, &Level::ALL).as_str(),
                    pick(rng, &data.codes)
                ));
            }
            Request::Explain(path)
        }
    }
}

struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    values_checked: AtomicU64,
    protected: AtomicU64,
}

/// Check one response; `Err` names the leak.
fn check(
    data: &Data,
    catalog: &lianqiao_policy::FieldCatalog,
    caller: &Caller,
    path: &str,
    status: u16,
    body: &Value,
    counters: &Counters,
) -> Result<(), String> {
    let mut all = Vec::new();
    strings(body, false, &mut all);
    for (text, free) in all {
        for candidate in candidates(text, free, &data.names) {
            counters.values_checked.fetch_add(1, Relaxed);
            if let Some(holders) = data.secrets.get(&candidate)
                && !caller.may_see(holders, catalog)
            {
                return Err(format!(
                    "`{candidate}` ({:?}) left for {caller:?} on {path} ({status}): {}",
                    holders.first(),
                    short(body)
                ));
            }
        }
    }
    if status >= 400 {
        let code = body["error"]["code"].as_str().unwrap_or("");
        if !lianqiao_gateway::api::error::ErrorCode::ALL
            .iter()
            .any(|c| c.as_str() == code)
        {
            return Err(format!("{path}: unknown code `{code}`: {}", short(body)));
        }
    }
    Ok(())
}

/// Row by row: records only of the caller's jurisdiction and resources it
/// may list; withheld fields absent, masked ones masked.
fn check_rows(
    data: &Data,
    catalog: &lianqiao_policy::FieldCatalog,
    caller: &Caller,
    entity: &str,
    path: &str,
    body: &Value,
) -> Result<(), String> {
    for row in body["data"].as_array().into_iter().flatten() {
        let division = row["division"].as_str();
        if let Some(d) = division
            && !d.starts_with(&caller.division)
        {
            return Err(format!(
                "{path}: a row in {d} left for {caller:?}: {}",
                short(row)
            ));
        }
        let case_loop = row["loop"]
            .as_str()
            .or_else(|| data.loops.get(row["id"].as_str()?).map(String::as_str));
        if !sees_rows(caller.level, entity, case_loop) {
            return Err(format!(
                "{path}: {caller:?} sees {entity} rows: {}",
                short(row)
            ));
        }
        for (field, value) in row.as_object().into_iter().flatten() {
            if field == "source" || value.is_null() {
                continue;
            }
            let allowed = oracle(
                caller.level,
                caller.purpose,
                catalog.class(entity, field),
                field,
            );
            match allowed {
                Allowed::Nothing => {
                    return Err(format!("{path}: {entity}.{field} = {value} for {caller:?}"));
                }
                Allowed::Masked if !value.as_str().is_some_and(|s| s.contains('*')) => {
                    return Err(format!(
                        "{path}: {entity}.{field} unmasked {value} for {caller:?}"
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The loop a statistics query keeps to, when its `loop` filter admits
/// only one.
fn loop_filter(path: &str) -> Option<&'static str> {
    const LOOPS: [&str; 4] = ["grid", "community", "street", "city"];
    let query = path.split_once('?')?.1;
    let (key, value) = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.starts_with("loop"))?;
    let admitted: Vec<&'static str> = LOOPS
        .into_iter()
        .filter(|l| match key {
            "loop" => value == *l,
            "loop[in]" => value.split(',').any(|v| v == *l),
            "loop[prefix]" => l.starts_with(value),
            _ => false,
        })
        .collect();
    (admitted.len() == 1).then(|| admitted[0])
}

/// A body, cut short for a failure message.
fn short(body: &Value) -> String {
    body.to_string().chars().take(400).collect()
}

fn entity_of(path: &str) -> &str {
    path.trim_start_matches("/v1/")
        .split('?')
        .next()
        .unwrap_or("")
}

#[tokio::test]
async fn no_value_leaves_for_a_caller_who_may_not_see_it_over_every_endpoint() {
    let up = Upstreams::start().await;
    let gw = ConfigDir::new()
        .with_huimin()
        .with_upstreams(&up)
        .with_cases_of_every_loop()
        .start()
        .await;
    let began = std::time::Instant::now();
    let catalog = gw.gateway.config.enforcer.catalog.clone();

    let mut data = Data {
        secrets: HashMap::new(),
        names: HashSet::new(),
        rows: HashMap::new(),
        codes: Vec::new(),
        loops: HashMap::new(),
    };
    for (entity, division) in [
        ("members", "15"),
        ("workers", "150103"),
        ("cases", "15"),
        ("party-orgs", "15"),
        ("grids", "150103"),
    ] {
        let rows = fetch_all(&gw, entity, division).await;
        assert!(!rows.is_empty(), "{entity} has rows");
        let entity: &'static str = ENTITIES.iter().find(|e| **e == entity).unwrap();
        for row in &rows {
            let division = row.get("division").and_then(Value::as_str).unwrap_or("");
            for field in PERSONAL_FIELDS {
                if let Some(Value::String(v)) = row.get(field)
                    && v.chars().count() >= 2
                {
                    data.secrets.entry(v.clone()).or_default().push(Holder {
                        entity,
                        field,
                        division: division.to_string(),
                        case_loop: row.get("loop").and_then(Value::as_str).map(str::to_string),
                    });
                    if field.ends_with("name") {
                        data.names.insert(v.clone());
                    }
                }
            }
            if entity != "members" || division.starts_with("150103") {
                for code in lianqiao_policy::division::ancestors(division)
                    .into_iter()
                    .chain([division])
                {
                    if code.len() <= 14 && !data.codes.iter().any(|c| c == code) {
                        data.codes.push(code.to_string());
                    }
                }
            }
        }
        if entity == "cases" {
            for row in &rows {
                if let (Some(id), Some(l)) = (row["id"].as_str(), row["loop"].as_str()) {
                    data.loops.insert(id.to_string(), l.to_string());
                }
            }
        }
        data.rows.insert(entity, rows);
    }
    data.codes
        .extend(["150105", "150105002", "1509", "150902"].map(String::from));
    let fetched = began.elapsed();
    let data = Arc::new(data);

    let cases: u64 = std::env::var("LIANQIAO_DISCLOSURE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("LIANQIAO_DISCLOSURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let levels_codes = |level: Level| -> Vec<String> {
        data.codes
            .iter()
            .filter(|c| lianqiao_policy::division::level_of(c) == Some(level))
            .cloned()
            .collect()
    };
    let by_level: HashMap<Level, Vec<String>> =
        Level::ALL.iter().map(|l| (*l, levels_codes(*l))).collect();
    let plan: Vec<(Caller, Caller, Request)> = (0..cases)
        .map(|_| {
            let mut caller = || {
                let level = *pick(&mut rng, &Level::ALL);
                Caller {
                    level,
                    division: pick(&mut rng, &by_level[&level]).clone(),
                    purpose: PURPOSES[rng.random_range(0..PURPOSES.len())],
                    admin: rng.random_bool(0.1),
                }
            };
            let (a, b) = (caller(), caller());
            let request = random_request(&mut rng, &data, &a);
            (a, b, request)
        })
        .collect();
    let counters = Arc::new(Counters {
        requests: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        values_checked: AtomicU64::new(0),
        protected: AtomicU64::new(0),
    });
    let gw = &gw;
    let failures: Vec<String> = futures::stream::iter(plan)
        .map(|(caller, other, request)| {
            let (data, catalog, counters) = (data.clone(), catalog.clone(), counters.clone());
            async move {
                let counters: &Counters = &counters;
                let get = |who: &Caller, path: String| {
                    let token = who.token();
                    let purpose = who.purpose;
                    async move {
                        counters.requests.fetch_add(1, Relaxed);
                        let (status, body) = gw.get_as(&token, purpose, &path).await;
                        (status.as_u16(), body, path)
                    }
                };
                let verdict = |who: &Caller, status: u16, body: &Value, path: &str| {
                    if status < 300 {
                        counters.ok.fetch_add(1, Relaxed);
                    } else {
                        counters.refused.fetch_add(1, Relaxed);
                    }
                    check(&data, &catalog, who, path, status, body, counters)
                };
                match request {
                    Request::List {
                        path,
                        follow,
                        hand_over,
                    } => {
                        let (status, body, path) = get(&caller, path).await;
                        verdict(&caller, status, &body, &path)?;
                        let entity = entity_of(&path).to_string();
                        if status == 200 {
                            check_rows(&data, &catalog, &caller, &entity, &path, &body)?;
                        }
                        if let Some(cursor) = body["page"]["next_cursor"].as_str() {
                            let next = format!("{path}&cursor={cursor}");
                            if follow {
                                let (status, body, next) = get(&caller, next.clone()).await;
                                verdict(&caller, status, &body, &next)?;
                                if status == 200 {
                                    check_rows(&data, &catalog, &caller, &entity, &next, &body)?;
                                }
                            }
                            if hand_over {
                                // Another caller replays it: refused, or (when it
                                // holds the very same grant) checked like any answer.
                                let (status, body, next) = get(&other, next).await;
                                verdict(&other, status, &body, &next)?;
                                if status == 200 {
                                    check_rows(&data, &catalog, &other, &entity, &next, &body)?;
                                }
                            }
                        }
                        Ok(())
                    }
                    Request::Stats { path, entity, by } => {
                        let (status, body, path) = get(&caller, path).await;
                        verdict(&caller, status, &body, &path)?;
                        if status != 200 {
                            return Ok(());
                        }
                        let field = by.and_then(|b| model::entity(entity)?.field(b));
                        let protected = body["policy"]["counts"] == "protected";
                        counters.protected.fetch_add(u64::from(protected), Relaxed);
                        if !sees_rows(caller.level, entity, loop_filter(&path)) && !protected {
                            return Err(format!(
                                "{path}: exact counts for {caller:?}: {}",
                                short(&body)
                            ));
                        }
                        for cell in body["data"].as_array().into_iter().flatten() {
                            if let (Some(f), Some(key)) = (field, cell["key"].as_str())
                                && !f.values.contains(&key)
                            {
                                return Err(format!(
                                    "{path}: key `{key}` is not a value of {}",
                                    f.name
                                ));
                            }
                            if protected && cell["value"].as_i64().is_some_and(|v| v < 5) {
                                return Err(format!("{path}: a small protected count: {cell}"));
                            }
                            // A measure only over enough cases, never on a
                            // cell whose count is withheld.
                            let floor =
                                body["policy"]["measure"]["min_cases"].as_i64().unwrap_or(0);
                            if !cell["measure"].is_null()
                                && (cell["suppressed"] == true
                                    || cell["value"]
                                        .as_i64()
                                        .is_none_or(|v| !protected && v < floor))
                            {
                                return Err(format!(
                                    "{path}: a measure over too few cases: {cell}"
                                ));
                            }
                        }
                        Ok(())
                    }
                    Request::Division(path) | Request::Explain(path) => {
                        let (status, body, path) = get(&caller, path).await;
                        verdict(&caller, status, &body, &path)
                    }
                }
            }
        })
        .buffer_unordered(8)
        .filter_map(|r: Result<(), String>| async move { r.err() })
        .collect()
        .await;
    println!(
        "seed {seed}: {cases} cases, {} requests ({} answered, {} refused), {} values checked, {} protected statistics; data fetched in {:.1?}, all in {:.1?}",
        counters.requests.load(Relaxed),
        counters.ok.load(Relaxed),
        counters.refused.load(Relaxed),
        counters.values_checked.load(Relaxed),
        counters.protected.load(Relaxed),
        fetched,
        began.elapsed(),
    );
    assert!(
        failures.is_empty(),
        "seed {seed} (LIANQIAO_DISCLOSURE_SEED={seed} repeats it): {} failures, the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (ok, refused) = (counters.ok.load(Relaxed), counters.refused.load(Relaxed));
    assert!(
        ok > cases / 4 && refused > cases / 20,
        "both outcomes exercised: {ok} / {refused}"
    );
    assert!(
        counters.protected.load(Relaxed) > cases / 200,
        "protected statistics exercised"
    );
}
