//! Property: over random principals × random queries on the demo data, no
//! row leaves outside the caller's jurisdiction and no personal or
//! sensitive field leaves in a form the level may not see.
//!
//! The demo data is fetched once through the real gateway (Huimin's
//! database, the party-link and city-platform simulators). Each case then
//! runs the disclosure gate's two phases (`disclosure::rows`) on a page
//! of those rows, as a source would return it — plus rows from outside the
//! scope, as a misbehaving source might — and checks the released body
//! against an oracle written from DOMAIN.md's "who sees what", independent
//! of Cedar. `disclosure.rs` drives every endpoint the same way over HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use lianqiao_e2e::huimin_with_members;
use lianqiao_e2e::oracle::{Allowed, field_access as oracle};
use lianqiao_gateway::api::parse_list;
use lianqiao_gateway::disclosure::{Facts, rows::ListGate};
use lianqiao_gateway::federation::{ListOutcome, MergedRow};
use lianqiao_gateway::model;
use lianqiao_host::contract::Value;
use lianqiao_policy::{Level, Principal};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const ENTITIES: [&str; 5] = ["members", "workers", "cases", "party-orgs", "grids"];
const PURPOSES: [&str; 4] = [
    "case-handling",
    "statistics",
    "party-affairs",
    "grid-service",
];

/// Whether a level may see records of `entity` (the row's loop for cases).
fn sees_rows(level: Level, entity: &str, row: &HashMap<String, serde_json::Value>) -> bool {
    lianqiao_e2e::oracle::sees_rows(level, entity, row.get("loop").and_then(|v| v.as_str()))
}

fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::String(s) => Value::Text(s.clone()),
        serde_json::Value::Number(n) => n.as_i64().map_or(Value::Null, Value::Integer),
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        _ => Value::Null,
    }
}

struct Data {
    /// entity → rows (field → value), as the sources hold them.
    rows: HashMap<&'static str, Vec<HashMap<String, serde_json::Value>>>,
    /// Division codes seen in the data, by level.
    codes: HashMap<Level, Vec<String>>,
}

async fn fetch_all(
    gw: &lianqiao_e2e::TestGateway,
    entity: &str,
) -> Vec<HashMap<String, serde_json::Value>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = gw
            .get(&format!("/v1/{entity}?division=150103&limit=1000{cursor}"))
            .await;
        assert_eq!(status, 200, "{entity}: {body}");
        for row in body["data"].as_array().unwrap() {
            let row: HashMap<String, serde_json::Value> =
                serde_json::from_value(row.clone()).unwrap();
            out.push(row);
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

#[tokio::test]
async fn no_row_outside_scope_and_no_unmasked_field_over_10000_cases() {
    let (gw, _up) = huimin_with_members().await;
    let mut data = Data {
        rows: HashMap::new(),
        codes: HashMap::new(),
    };
    for entity in ENTITIES {
        let rows = fetch_all(&gw, entity).await;
        assert!(!rows.is_empty(), "{entity} has rows in the demo data");
        data.rows.insert(entity, rows);
    }
    for row in data.rows.values().flatten() {
        if let Some(d) = row.get("division").and_then(|d| d.as_str()) {
            for code in lianqiao_policy::division::ancestors(d)
                .into_iter()
                .chain([d])
            {
                if let Some(level) = lianqiao_policy::division::level_of(code) {
                    let list = data.codes.entry(level).or_default();
                    if !list.iter().any(|c| c == code) {
                        list.push(code.to_string());
                    }
                }
            }
        }
    }
    // Outsiders too: the neighbouring district and another city.
    data.codes
        .entry(Level::District)
        .or_default()
        .push("150105".into());
    data.codes
        .entry(Level::City)
        .or_default()
        .push("1509".into());
    data.codes
        .entry(Level::Street)
        .or_default()
        .push("150105002".into());
    let all_codes: Vec<String> = data.codes.values().flatten().cloned().collect();
    let data = Arc::new(data);
    let gateway = gw.gateway.clone();

    let principals = (
        0..6usize,
        any::<prop::sample::Index>(),
        0..PURPOSES.len(),
        any::<bool>(),
    );
    let queries = (
        0..ENTITIES.len(),
        (0..4usize, any::<prop::sample::Index>()),
        prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        any::<prop::sample::Index>(),
        1usize..300,
    );
    let cases: u32 = std::env::var("LIANQIAO_POLICY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let (served, denied, dropped, checked_cells) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let result = runner.run(
        &(principals, queries),
        |((lvl, div, purpose, admin), (e, asked, fields, offset, page))| {
            let level = Level::ALL[lvl];
            let own = &data.codes[&level];
            let principal = Principal::new(
                "prop",
                level,
                div.get(own).clone(),
                admin.then(|| "policy-admin".to_string()),
                PURPOSES[purpose],
            );
            let entity_name = ENTITIES[e];
            let entity = model::entity(entity_name).unwrap();
            // Mostly near the principal's own division, sometimes anywhere.
            let (mode, pick) = asked;
            let inside: Vec<&String> = all_codes
                .iter()
                .filter(|c| c.starts_with(&principal.division))
                .collect();
            let above = lianqiao_policy::division::ancestors(&principal.division);
            let requested: String = match mode {
                0 => pick.get(&all_codes).clone(),
                1 => principal.division.clone(),
                2 if !above.is_empty() => pick.get(&above).to_string(),
                _ => pick.get(&inside).to_string(),
            };
            let projection: Vec<&str> = fields.iter().map(|i| i.get(entity.fields).name).collect();
            let query = if projection.is_empty() {
                format!("division={requested}&limit=1000")
            } else {
                format!(
                    "division={requested}&limit=1000&fields={}",
                    projection.join(",")
                )
            };
            let mut request = parse_list(entity, Some(&query), &gateway.config.server).unwrap();
            let mut facts = Facts::default();
            let gate = match ListGate::authorize(
                gateway.gate(),
                &principal,
                &mut request,
                None,
                &mut facts,
            ) {
                Ok(g) => g,
                Err(_) => {
                    denied.fetch_add(1, Relaxed);
                    return Ok(());
                }
            };
            let granted_scope = gateway
                .config
                .enforcer
                .authorize_list(&principal, entity_name, &requested)
                .map(|g| g.scope)
                .unwrap_or_default();
            served.fetch_add(1, Relaxed);
            // A page as the sources would return it for the granted scope, and
            // a few rows from elsewhere, as a source ignoring the scope would.
            let rows = &data.rows[entity_name];
            let inside: Vec<&HashMap<String, serde_json::Value>> = rows
                .iter()
                .filter(|r| {
                    r["division"]
                        .as_str()
                        .is_some_and(|d| d.starts_with(&granted_scope))
                })
                .collect();
            let start = if inside.is_empty() {
                0
            } else {
                offset.index(inside.len())
            };
            let mut page: Vec<&HashMap<String, serde_json::Value>> =
                inside.iter().skip(start).take(page).copied().collect();
            page.extend(rows.iter().step_by(rows.len() / 4 + 1).take(4));
            let outcome = ListOutcome {
                rows: page
                    .iter()
                    .map(|r| MergedRow {
                        source: Arc::from("prop"),
                        division: r["division"].as_str().unwrap_or("").to_string(),
                        id: r["id"].as_str().unwrap_or("").to_string(),
                        cells: request
                            .projection
                            .iter()
                            .chain(request.output.iter())
                            .filter_map(|f| r.get(*f).map(|v| (f.to_string(), json_value(v))))
                            .collect(),
                    })
                    .collect(),
                next: None,
                reports: vec![],
            };
            let released = gate.release(outcome, &request, &mut facts);
            dropped.fetch_add(facts.dropped, Relaxed);
            let by_id: HashMap<&str, &HashMap<String, serde_json::Value>> = page
                .iter()
                .map(|r| (r["id"].as_str().unwrap_or(""), *r))
                .collect();
            let body = released.body();
            let rows = body["data"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(rows.len() as u64, facts.rows);
            for row in &rows {
                let id = row["id"].as_str().unwrap_or("");
                let original = by_id[id];
                let division = original["division"].as_str().unwrap_or("");
                prop_assert!(
                    division.starts_with(&principal.division),
                    "{} row in {} left for {:?}",
                    entity_name,
                    division,
                    principal
                );
                prop_assert!(
                    sees_rows(level, entity_name, original),
                    "{level} saw a {entity_name} row: {original:?}"
                );
                for (field, value) in row.as_object().into_iter().flatten() {
                    if field == "source" {
                        continue;
                    }
                    let class = gateway.config.enforcer.catalog.class(entity_name, field);
                    let allowed = oracle(level, PURPOSES[purpose], class, field);
                    let Some(shown) = value.as_str() else {
                        prop_assert!(
                            value.is_null() || allowed == Allowed::Clear,
                            "{field} ({class:?}) shown as {value:?} to {principal:?}"
                        );
                        continue;
                    };
                    checked_cells.fetch_add(1, Relaxed);
                    let clear = original.get(field).and_then(|v| v.as_str()) == Some(shown);
                    if clear {
                        prop_assert!(
                            allowed == Allowed::Clear || !shown.chars().any(|c| c != '*'),
                            "{entity_name}.{field} ({class:?}) in clear `{shown}` for {principal:?}"
                        );
                    } else {
                        prop_assert!(
                            allowed >= Allowed::Masked && shown.contains('*'),
                            "{entity_name}.{field} ({class:?}) shown as `{shown}` for {principal:?}"
                        );
                    }
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    let (served, denied, dropped, checked_cells) = (
        served.load(Relaxed),
        denied.load(Relaxed),
        dropped.load(Relaxed),
        checked_cells.load(Relaxed),
    );
    println!(
        "{cases} cases: {served} served, {denied} denied, {dropped} out-of-scope rows dropped, {checked_cells} text cells checked"
    );
    assert!(
        served > cases as u64 / 4 && denied > cases as u64 / 10,
        "both outcomes are exercised"
    );
    assert!(
        dropped > 0,
        "the out-of-scope rows were offered and dropped"
    );
}
