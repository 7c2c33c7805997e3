//! Cases across the loops: each district database keeps its cases in its
//! own shape; one plugin serves them by configuration.

use std::collections::BTreeMap;

use lianqiao_e2e::{
    ConfigDir, TestGateway, huimin, saihan_and_jining, saihan_jining_sqlite, sqlite_url, walk_pages,
};
use lianqiao_sim::generate::cases::cases;
use serde_json::Value;

#[tokio::test]
async fn every_district_schema_serves_its_cases_and_their_history() {
    let (saihan_db, jining_db) = saihan_jining_sqlite();
    let gw = ConfigDir::new()
        .with_huimin()
        .with_demo_source("saihan", &sqlite_url(saihan_db))
        .with_demo_source("jining", &sqlite_url(jining_db))
        .start()
        .await;
    let ((saihan, _), (jining, _)) = saihan_and_jining();
    for (code, district) in [
        ("150103", &huimin().0),
        ("150105", saihan),
        ("150902", jining),
    ] {
        let expected = cases(district);
        let rows = walk_pages(&gw, &format!("/v1/cases?division={code}&limit=1000")).await;
        assert_eq!(rows.len(), expected.len(), "{code}");
        let served: BTreeMap<&str, &Value> = rows
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r))
            .collect();
        for case in &expected {
            let row = served[case.id.as_str()];
            assert_eq!(row["loop"], case.loop_level, "{code} {}", case.id);
            assert_eq!(row["state"], case.state, "{code} {}", case.id);
            assert_eq!(row["division"], case.division.as_str());
            assert_eq!(row["opened_at"], case.opened_at.as_str());
        }
        // Time as time: one instant written three ways selects the same
        // cases (those opened at or after it: the sources all write
        // +08:00, so their text orders them here); before, `Z` compared
        // as text against `+08:00` and chose other rows.
        let mut opened: Vec<&str> = expected.iter().map(|c| c.opened_at.as_str()).collect();
        opened.sort();
        let bound = opened[opened.len() / 2];
        let oracle = opened.iter().filter(|o| **o >= bound).count();
        let instant = lianqiao_gateway::federation::instant::parse(bound).expect("RFC 3339");
        for form in [
            bound.to_string(),
            lianqiao_gateway::federation::instant::canonical(instant),
            bound.replace(":00+08:00", ":00.000000+08:00"),
        ] {
            let rows = walk_pages(
                &gw,
                &format!(
                    "/v1/cases?division={code}&opened_at[gte]={}&limit=1000",
                    form.replace('+', "%2B")
                ),
            )
            .await;
            assert_eq!(rows.len(), oracle, "{code}: opened_at[gte]={form}");
        }
        let (status, body) = gw
            .get(&format!(
                "/v1/cases?division={code}&opened_at[gte]=yesterday"
            ))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
        let steps = walk_pages(&gw, &format!("/v1/case-steps?division={code}&limit=1000")).await;
        let expected_steps: usize = expected.iter().map(|c| c.steps.len()).sum();
        assert_eq!(steps.len(), expected_steps, "{code}");
        let one = &expected[expected.len() / 2];
        let (status, body) = gw
            .get(&format!(
                "/v1/case-steps?division={code}&case_id={}",
                one.id
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        let states: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        let mut want: Vec<&str> = one.steps.iter().map(|s| s.state).collect();
        want.sort();
        let mut got = states.clone();
        got.sort();
        assert_eq!(got, want, "{code} {}", one.id);
    }
}

/// A copy of Huimin's database of this test's own (writes change it).
pub(crate) fn fresh_huimin_copy(name: &str) -> std::path::PathBuf {
    let dir = lianqiao_e2e::workspace_root().join("target/e2e-data");
    let path = dir.join(format!("huimin-{name}-{}.sqlite", std::process::id()));
    std::fs::copy(&huimin().1, &path).expect("copy the Huimin database");
    path
}

pub(crate) struct Caller<'a> {
    gw: &'a TestGateway,
    auth: String,
}

impl Caller<'_> {
    pub(crate) async fn post(&self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        let url = format!("http://{}{path}", self.gw.addr);
        let (status, text) = lianqiao_e2e::http_send(
            "POST",
            &url,
            &[
                ("authorization", &self.auth),
                ("x-purpose", "case-handling"),
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            &body.to_string(),
        )
        .await
        .expect("POST");
        let json = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        (status, json)
    }

    pub(crate) async fn move_to(&self, id: &str, key: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/v1/cases/{id}/transitions"), key, &body)
            .await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self
            .gw
            .get_with(path, &[("authorization", &self.auth)])
            .await;
        (status.as_u16(), body)
    }
}

pub(crate) fn caller<'a>(
    gw: &'a TestGateway,
    level: &str,
    division: &str,
    roles: &[&str],
) -> Caller<'a> {
    Caller {
        gw,
        auth: format!("Bearer {}", lianqiao_e2e::token(level, division, roles)),
    }
}

#[tokio::test]
async fn a_case_rises_through_grid_community_and_street_and_closes() {
    let db = fresh_huimin_copy("loops");
    let gw = ConfigDir::new()
        .with_demo_source("huimin", &sqlite_url(&db))
        .start()
        .await;
    let district = &huimin().0;
    let grid = district
        .grids
        .iter()
        .find(|g| g.code.len() == 14)
        .expect("a grid");
    let neighbour = district
        .grids
        .iter()
        .find(|g| g.code.len() == 14 && g.code != grid.code)
        .expect("another grid");
    let community = grid.community.clone();
    let street = community[..9].to_string();
    let worker = caller(&gw, "grid", &grid.code, &[]);
    let other_worker = caller(&gw, "grid", &neighbour.code, &[]);
    let community_staff = caller(&gw, "community", &community, &[]);
    let street_staff = caller(&gw, "street", &street, &[]);

    // Found in the grid.
    let new_case = serde_json::json!({
        "division": grid.code, "title": "楼道堆物清理", "category": "环境卫生",
        "reporter_name": "王秀英", "reporter_phone": "13947001234", "note": "巡查发现",
    });
    let (status, created) = worker.post("/v1/cases", "create-1", &new_case).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("an id").to_string();
    assert!(id.starts_with("150103-G"), "{id}");
    assert_eq!(created["data"]["state"], "discovered");
    assert_eq!(created["data"]["loop"], "grid");
    assert_eq!(
        created["data"]["reporter_name"], "王秀英",
        "a grid sees its people"
    );
    assert_eq!(created["timeline"].as_array().map(Vec::len), Some(1));

    // The same key and body: the first result, nothing new. Another body: 422.
    let (status, again) = worker.post("/v1/cases", "create-1", &new_case).await;
    assert_eq!(
        (status, &again["data"]["id"]),
        (201, &created["data"]["id"])
    );
    let mut other = new_case.clone();
    other["title"] = "路灯损坏".into();
    let (status, reused) = worker.post("/v1/cases", "create-1", &other).await;
    assert_eq!(status, 422, "{reused}");
    assert_eq!(reused["error"]["code"], "idempotency_key_reused");
    let (status, missing) = lianqiao_e2e::http_send(
        "POST",
        &format!("http://{}/v1/cases", gw.addr),
        &[
            ("authorization", &worker.auth),
            ("x-purpose", "case-handling"),
        ],
        &new_case.to_string(),
    )
    .await
    .expect("POST");
    assert_eq!(status, 400, "{missing}");
    assert!(missing.contains("Idempotency-Key"), "{missing}");

    // The grid assesses it.
    let (status, moved) = worker
        .move_to(&id, "t-1", serde_json::json!({"to": "assessed"}))
        .await;
    assert_eq!(
        (status, &moved["data"]["state"]),
        (200, &"assessed".into()),
        "{moved}"
    );

    // Another grid's worker may not touch it; a grid may not whistle.
    let (status, refused) = other_worker
        .move_to(&id, "t-x", serde_json::json!({"to": "accepted"}))
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["error"]["policies"],
        serde_json::json!(["no-case-writes-outside-jurisdiction"])
    );
    let (status, refused) = worker
        .move_to(&id, "t-w", serde_json::json!({"to": "whistled"}))
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(
        refused["error"]["policies"],
        serde_json::json!(["only-streets-whistle"])
    );

    // A move the loop does not have: 409 with the ones it has.
    let (status, invalid) = worker
        .move_to(&id, "t-e", serde_json::json!({"to": "evaluated"}))
        .await;
    assert_eq!(status, 409, "{invalid}");
    assert_eq!(invalid["error"]["code"], "invalid_transition");
    assert_eq!(
        invalid["error"]["allowed"],
        serde_json::json!(["accepted", "escalated", "closed"])
    );
    // Closing early needs a reason.
    let (status, why) = worker
        .move_to(&id, "t-c", serde_json::json!({"to": "closed"}))
        .await;
    assert_eq!(status, 400, "{why}");

    // Small matters stay in the grid — this one rises to the community …
    let (status, up) = worker
        .move_to(
            &id,
            "t-2",
            serde_json::json!({"to": "escalated", "note": "需社区协调"}),
        )
        .await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(
        (&up["data"]["loop"], &up["data"]["state"]),
        (&"community".into(), &"assessed".into())
    );
    // … after which the grid no longer moves it.
    let (status, _) = worker
        .move_to(&id, "t-3", serde_json::json!({"to": "accepted"}))
        .await;
    assert_eq!(status, 403);
    // The community cannot whistle either; it escalates to the street.
    let (status, _) = community_staff
        .move_to(&id, "c-w", serde_json::json!({"to": "whistled"}))
        .await;
    assert_eq!(status, 403);
    let (status, up) = community_staff
        .move_to(&id, "c-1", serde_json::json!({"to": "escalated"}))
        .await;
    assert_eq!(
        (status, &up["data"]["loop"]),
        (200, &"street".into()),
        "{up}"
    );
    assert_eq!(
        up["data"]["reporter_name"], "王秀英",
        "a community sees names"
    );

    // The street handles it to the end.
    for (n, body) in [
        serde_json::json!({"to": "accepted"}),
        serde_json::json!({"to": "feedback", "note": "已协调物业清理"}),
        serde_json::json!({"to": "evaluated", "satisfaction": 4}),
        serde_json::json!({"to": "closed"}),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, moved) = street_staff.move_to(&id, &format!("s-{n}"), body).await;
        assert_eq!(status, 200, "{moved}");
    }
    let (status, case) = street_staff.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(status, 200, "{case}");
    assert_eq!(case["data"]["state"], "closed");
    assert_eq!(case["data"]["satisfaction"], 4);
    let name = case["data"]["reporter_name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with('王') && name != "王秀英",
        "a street sees names masked: {name}"
    );
    let steps: Vec<(&str, &str)> = case["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|s| {
            (
                s["state"].as_str().unwrap(),
                s["by_level"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("discovered", "grid"),
            ("assessed", "grid"),
            ("escalated", "grid"),
            ("escalated", "community"),
            ("accepted", "street"),
            ("feedback", "street"),
            ("evaluated", "street"),
            ("closed", "street"),
        ]
    );
    // Nothing moves a closed case.
    let (status, done) = street_staff
        .move_to(&id, "s-9", serde_json::json!({"to": "accepted"}))
        .await;
    assert_eq!(status, 409, "{done}");
    assert_eq!(done["error"]["allowed"], serde_json::json!([]));
}

/// Saihan on PostgreSQL and Jining on MariaDB, each written afresh into a
/// database `db_name` of its server: (source name, URL, district). A server
/// whose URL is not set is skipped, loudly, for `test`.
async fn saihan_and_jining_databases(
    test: &str,
    db_name: &str,
) -> Vec<(
    &'static str,
    String,
    &'static lianqiao_sim::generate::District,
)> {
    let ((saihan, saihan_people), (jining, jining_people)) = saihan_and_jining();
    let mut out = Vec::new();
    for (var, name, district) in [
        ("LIANQIAO_TEST_POSTGRES_URL", "saihan", saihan),
        ("LIANQIAO_TEST_MYSQL_URL", "jining", jining),
    ] {
        let Some(url) = lianqiao_e2e::database_url(var, test) else {
            continue;
        };
        let db = lianqiao_e2e::fresh_database(&url, db_name).await;
        let mut conn = lianqiao_sim::generate::connect_any(&db)
            .await
            .expect("connect");
        match name {
            "saihan" => {
                lianqiao_sim::generate::schema_saihan::write(&mut conn, saihan, saihan_people)
                    .await
                    .expect("write Saihan")
            }
            _ => lianqiao_sim::generate::schema_jining::write(&mut conn, jining, jining_people)
                .await
                .expect("write Jining"),
        }
        out.push((name, db, district));
    }
    out
}

/// The same loop on Saihan's PostgreSQL and Jining's MariaDB schemas:
/// loop codes 1–4 and capital stages, state codes 10–90 and Chinese loop
/// names, each written back as the district writes them.
#[tokio::test]
async fn cases_move_on_postgresql_and_mariadb() {
    // A failing source statement is logged, not answered: show it here.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    for (name, db, district) in
        saihan_and_jining_databases("cases_move_on_postgresql_and_mariadb", "lq_cases").await
    {
        let gw = ConfigDir::new().with_demo_source(name, &db).start().await;
        let grid = district
            .grids
            .iter()
            .find(|g| g.code.len() == 14)
            .expect("a grid");
        let worker = caller(&gw, "grid", &grid.code, &[]);
        let community = caller(&gw, "community", &grid.community, &[]);
        let (status, created) = worker
            .post(
                "/v1/cases",
                &format!("{name}-create"),
                &serde_json::json!({"division": grid.code, "title": "单元门禁损坏", "category": "物业管理"}),
            )
            .await;
        assert_eq!(status, 201, "{name}: {created}");
        let id = created["data"]["id"].as_str().expect("id").to_string();
        for (who, to, extra) in [
            (&worker, "assessed", serde_json::json!({})),
            (&worker, "escalated", serde_json::json!({})),
            (&community, "accepted", serde_json::json!({})),
            (
                &community,
                "feedback",
                serde_json::json!({"note": "已更换门禁"}),
            ),
            (
                &community,
                "evaluated",
                serde_json::json!({"satisfaction": 5}),
            ),
            (&community, "closed", serde_json::json!({})),
        ] {
            let mut body = extra;
            body["to"] = to.into();
            let (status, moved) = who.move_to(&id, &format!("{name}-{to}"), body).await;
            assert_eq!(status, 200, "{name} → {to}: {moved}");
        }
        // A racing second move from a stale state is refused, not applied.
        let (status, _) = community
            .move_to(
                &id,
                &format!("{name}-again"),
                serde_json::json!({"to": "closed"}),
            )
            .await;
        assert_eq!(status, 409);
        let (status, case) = community.get(&format!("/v1/cases/{id}")).await;
        assert_eq!(status, 200, "{case}");
        assert_eq!(
            (
                &case["data"]["state"],
                &case["data"]["loop"],
                &case["data"]["satisfaction"]
            ),
            (&"closed".into(), &"community".into(), &5.into()),
            "{name}"
        );
        assert_eq!(
            case["timeline"].as_array().map(Vec::len),
            Some(7),
            "{name}: {case}"
        );
        // Stored in the district's own codes.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&db).await.expect("connect");
        let (sql, want) = match name {
            "saihan" => (
                format!(
                    "SELECT CAST(loop_code AS VARCHAR(8)) || ':' || stage FROM event_ticket WHERE ticket_id = '{id}'"
                ),
                "2:CLOSED",
            ),
            _ => (
                format!(
                    "SELECT CONCAT(clcj, ':', CAST(ajzt AS CHAR)) FROM t_event WHERE ajbh = '{id}'"
                ),
                "社区:90",
            ),
        };
        let stored: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .expect("read the row back");
        assert_eq!(stored, want, "{name}");
        pool.close().await;
    }
}

/// Every caller outside a case's jurisdiction, every target state, on the
/// write route and the read route: nothing of the case comes back — not
/// its division, loop, state, reporter or allowed moves — only a 403
/// naming the policy (inside the district) or a 404.
#[tokio::test]
async fn writes_and_reads_tell_outsiders_nothing_of_a_case() {
    let db = fresh_huimin_copy("outsiders");
    let gw = ConfigDir::new()
        .with_demo_source("huimin", &sqlite_url(&db))
        .start()
        .await;
    let district = &huimin().0;
    let mut grids = district.grids.iter().filter(|g| g.code.len() == 14);
    let home = grids.next().expect("a grid");
    let elsewhere = grids
        .find(|g| g.community[..9] != home.community[..9])
        .expect("a grid of another street");
    let worker = caller(&gw, "grid", &home.code, &[]);
    let (status, created) = worker
        .post(
            "/v1/cases",
            "outsiders-create",
            &serde_json::json!({"division": home.code, "title": "电动车楼道充电", "category": "安全隐患",
                                "reporter_name": "乌兰", "reporter_phone": "13847009876"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_string();
    let outsiders = [
        caller(&gw, "grid", &elsewhere.code, &[]),
        caller(&gw, "community", &elsewhere.community, &[]),
        caller(&gw, "street", &elsewhere.community[..9], &[]),
        caller(&gw, "city", "1501", &[]),
        caller(&gw, "city", "1501", &["city-platform"]),
        caller(&gw, "district", "150105", &[]),
    ];
    let secrets = [
        home.code.as_str(),
        &home.community,
        "乌兰",
        "13847009876",
        "\"allowed\"",
        "discovered",
    ];
    for (n, outsider) in outsiders.iter().enumerate() {
        for to in lianqiao_gateway::model::CASE_STATES {
            let (status, body) = outsider
                .move_to(
                    &id,
                    &format!("o-{n}-{to}"),
                    serde_json::json!({"to": to, "note": "x", "satisfaction": 3}),
                )
                .await;
            assert!(matches!(status, 403 | 404), "{n} → {to}: {status} {body}");
            let text = body.to_string();
            for secret in secrets {
                // `discovered` may only appear as what the caller itself asked for.
                if secret == "discovered" && *to == "discovered" {
                    continue;
                }
                assert!(!text.contains(secret), "{n} → {to} leaks {secret}: {text}");
            }
        }
        let (status, body) = outsider.get(&format!("/v1/cases/{id}")).await;
        assert_eq!(status, 404, "{n}: {body}");
        for secret in secrets {
            assert!(
                !body.to_string().contains(secret),
                "{n} GET leaks {secret}: {body}"
            );
        }
    }
    // The case is as it was.
    let (_, case) = worker.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(case["data"]["state"], "discovered");
    assert_eq!(case["timeline"].as_array().map(Vec::len), Some(1));
}

/// Loop statistics: median hours to resolve (opened → `feedback`), the
/// share resolved by the due time and mean satisfaction, matched against
/// the generator's cases; a cell with fewer cases than the protection
/// threshold shows no measure, however the caller narrows it.
#[tokio::test]
async fn loop_statistics_measure_resolve_time_on_time_share_and_satisfaction() {
    use lianqiao_gateway::federation::measures::epoch_seconds;
    let gw = ConfigDir::new().with_huimin().start().await;
    let district = lianqiao_e2e::token("district", "150103", &[]);
    let expected = cases(&huimin().0);
    let resolved_at = |c: &lianqiao_sim::generate::cases::DistrictCase| {
        c.steps
            .iter()
            .filter(|s| s.state == "feedback")
            .filter_map(|s| epoch_seconds(&s.at))
            .reduce(f64::min)
    };
    let round = |v: f64| (v * 100.0).round() / 100.0;
    let mut hours: Vec<f64> = expected
        .iter()
        .filter(|c| matches!(c.state, "feedback" | "evaluated" | "closed"))
        .filter_map(|c| Some((resolved_at(c)? - epoch_seconds(&c.opened_at)?) / 3600.0))
        .collect();
    hours.sort_by(f64::total_cmp);
    assert!(hours.len() > 20, "the generator resolves enough cases");
    let mid = hours.len() / 2;
    let median = if hours.len() % 2 == 1 {
        hours[mid]
    } else {
        (hours[mid - 1] + hours[mid]) / 2.0
    };
    let on_time: Vec<f64> = expected
        .iter()
        .filter(|c| matches!(c.state, "feedback" | "evaluated" | "closed"))
        .filter_map(|c| Some(f64::from(resolved_at(c)? <= epoch_seconds(&c.due_at)?)))
        .collect();
    let satisfaction: Vec<f64> = expected
        .iter()
        .filter(|c| matches!(c.state, "evaluated" | "closed"))
        .filter_map(|c| c.satisfaction.map(|s| s as f64))
        .collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    for (metric, want, n) in [
        ("resolve_hours", median, hours.len()),
        ("on_time", mean(&on_time), on_time.len()),
        ("satisfaction", mean(&satisfaction), satisfaction.len()),
    ] {
        let (status, body) = gw
            .get_as(
                &district,
                "statistics",
                &format!("/v1/stats?metric=cases.{metric}&division=150103"),
            )
            .await;
        assert_eq!(status, 200, "{metric}: {body}");
        let cell = &body["data"][0];
        assert_eq!(
            cell["value"], n as i64,
            "{metric}: the cases measured: {body}"
        );
        let got = cell["measure"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (got - round(want)).abs() < 0.011,
            "{metric}: {got} vs {want}: {body}"
        );
        assert_eq!(body["policy"]["measure"]["name"], metric);
    }
    // By street: a measure only where enough cases are behind it.
    let (status, body) = gw
        .get_as(
            &district,
            "statistics",
            "/v1/stats?metric=cases.resolve_hours&division=150103&group_by=street",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let floor = body["policy"]["measure"]["min_cases"]
        .as_i64()
        .expect("min_cases");
    let cells = body["data"].as_array().expect("cells");
    assert!(cells.len() > 1, "{body}");
    for cell in cells {
        let n = cell["value"].as_i64().unwrap_or(0);
        assert_eq!(
            cell["measure"].is_null(),
            n < floor,
            "{n} cases against a floor of {floor}: {cell}"
        );
    }
    // Narrowed to one case (a filter the district may use): no measure.
    let one = expected
        .iter()
        .find(|c| c.state == "closed")
        .expect("a closed case");
    let (status, body) = gw
        .get_as(
            &district,
            "statistics",
            &format!(
                "/v1/stats?metric=cases.resolve_hours&division={}&id={}",
                one.division, one.id
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["value"], 1, "{body}");
    assert!(body["data"][0]["measure"].is_null(), "{body}");
    // The city counts every loop only protected: its measure cells are
    // keyed on the cases behind them, so the same cases asked with a
    // tautology or a permuted list publish the same count and measure.
    let city = lianqiao_e2e::token("city", "1501", &[]);
    for metric in ["resolve_hours", "on_time", "satisfaction"] {
        let mut seen = Vec::new();
        for extra in [
            "",
            "&loop[in]=grid,community,street,city",
            "&loop[in]=city,street,community,grid",
            "&state[in]=closed,evaluated,feedback,reported_in,assessed,whistled,accepted,discovered,escalated",
        ] {
            let q =
                format!("/v1/stats?metric=cases.{metric}&division=150103&group_by=street{extra}");
            let (status, body) = gw.get_as(&city, "statistics", &q).await;
            assert_eq!(status, 200, "{q}: {body}");
            assert_eq!(body["policy"]["counts"], "protected", "{q}: {body}");
            seen.push((q, body["data"].clone()));
        }
        for (q, data) in &seen {
            assert_eq!(
                *data, seen[0].1,
                "{q} measures the same cases as {}",
                seen[0].0
            );
        }
    }
    // A measure of another resource is not one.
    let (status, body) = gw
        .get_as(
            &district,
            "statistics",
            "/v1/stats?metric=members.resolve_hours&division=150103",
        )
        .await;
    assert_eq!(status, 400, "{body}");
}

/// Every move of the transition table, at every loop it applies to, on
/// each district's own database (Huimin on SQLite, Saihan on PostgreSQL,
/// Jining on MariaDB), with whistling to the city simulator and the city's
/// moves coming back.
#[tokio::test]
async fn every_move_of_the_table_at_every_loop_on_every_district_database() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let up = lianqiao_e2e::Upstreams::start().await;
    let mut districts = vec![(
        "huimin",
        sqlite_url(&fresh_huimin_copy("table")),
        &huimin().0,
    )];
    districts.extend(
        saihan_and_jining_databases(
            "every_move_of_the_table_at_every_loop_on_every_district_database",
            "lq_table",
        )
        .await,
    );
    for (name, db, district) in districts {
        let gw = ConfigDir::new()
            .with_demo_source(name, &db)
            .with_upstreams(&up)
            .start()
            .await;
        let grid = district
            .grids
            .iter()
            .find(|g| g.code.len() == 14)
            .expect("a grid");
        let community = grid.community.clone();
        let street = community[..9].to_string();
        let staff = [
            ("grid", caller(&gw, "grid", &grid.code, &[])),
            ("community", caller(&gw, "community", &community, &[])),
            ("street", caller(&gw, "street", &street, &[])),
        ];
        let n = std::cell::Cell::new(0);
        let key = || {
            n.set(n.get() + 1);
            format!("{name}-table-{}", n.get())
        };
        // A new case in the grid, assessed, raised to `target`.
        let open = async |target: usize| -> String {
            let (status, created) = staff[0]
                .1
                .post(
                    "/v1/cases",
                    &key(),
                    &serde_json::json!({"division": grid.code, "title": "楼道照明损坏", "category": "物业管理"}),
                )
                .await;
            assert_eq!(status, 201, "{name}: {created}");
            let id = created["data"]["id"].as_str().expect("id").to_string();
            let (status, moved) = staff[0]
                .1
                .move_to(&id, &key(), serde_json::json!({"to": "assessed"}))
                .await;
            assert_eq!(status, 200, "{name}: {moved}");
            for (level, who) in staff.iter().take(target) {
                let (status, up) = who
                    .move_to(&id, &key(), serde_json::json!({"to": "escalated"}))
                    .await;
                assert_eq!(status, 200, "{name}: {level} escalates: {up}");
            }
            id
        };
        // Handled to the end at each loop.
        for (at, (level, who)) in staff.iter().enumerate() {
            let id = open(at).await;
            for body in [
                serde_json::json!({"to": "accepted"}),
                serde_json::json!({"to": "feedback", "note": "已处理"}),
                serde_json::json!({"to": "evaluated", "satisfaction": 4}),
                serde_json::json!({"to": "closed"}),
            ] {
                let (status, moved) = who.move_to(&id, &key(), body.clone()).await;
                assert_eq!(status, 200, "{name} {level} {body}: {moved}");
            }
            let (_, case) = who.get(&format!("/v1/cases/{id}")).await;
            assert_eq!(
                (&case["data"]["loop"], &case["data"]["state"]),
                (&(*level).into(), &"closed".into()),
                "{name}: {case}"
            );
            // Closed early, with a reason, from each open state.
            for from in ["discovered", "assessed", "accepted", "feedback"] {
                if from == "discovered" && at > 0 {
                    continue;
                }
                let id = if from == "discovered" {
                    let (_, created) = who
                        .post(
                            "/v1/cases",
                            &key(),
                            &serde_json::json!({"division": grid.code, "title": "误报", "category": "其他"}),
                        )
                        .await;
                    created["data"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                } else {
                    open(at).await
                };
                let accepted = serde_json::json!({"to": "accepted"});
                let feedback = serde_json::json!({"to": "feedback", "note": "处理中"});
                let walk = match from {
                    "accepted" => vec![accepted],
                    "feedback" => vec![accepted, feedback],
                    _ => vec![],
                };
                for body in walk {
                    let (status, moved) = who.move_to(&id, &key(), body.clone()).await;
                    assert_eq!(status, 200, "{name} {level} {body}: {moved}");
                }
                let (status, closed) = who
                    .move_to(
                        &id,
                        &key(),
                        serde_json::json!({"to": "closed", "note": "当事人撤回"}),
                    )
                    .await;
                assert_eq!(status, 200, "{name} {level} closes from {from}: {closed}");
                assert_eq!(closed["data"]["state"], "closed", "{name}: {closed}");
            }
        }
        // Whistled from the street, answered by the city, mirrored back.
        let id = open(2).await;
        let (status, whistled) = staff[2]
            .1
            .move_to(&id, &key(), serde_json::json!({"to": "whistled"}))
            .await;
        assert_eq!(status, 200, "{name}: {whistled}");
        assert_eq!(
            (&whistled["data"]["loop"], &whistled["data"]["state"]),
            (&"city".into(), &"accepted".into()),
            "{name}: {whistled}"
        );
        let platform = caller(&gw, "city", &grid.code[..4], &["city-platform"]);
        for body in [
            serde_json::json!({"to": "reported_in"}),
            serde_json::json!({"to": "feedback", "note": "住建局已处置"}),
            serde_json::json!({"to": "evaluated", "satisfaction": 5}),
            serde_json::json!({"to": "closed"}),
        ] {
            let (status, moved) = platform.move_to(&id, &key(), body.clone()).await;
            assert_eq!(status, 200, "{name} city {body}: {moved}");
        }
        let (_, case) = staff[2].1.get(&format!("/v1/cases/{id}")).await;
        assert_eq!(
            (
                &case["data"]["loop"],
                &case["data"]["state"],
                &case["data"]["satisfaction"]
            ),
            (&"city".into(), &"closed".into(), &5.into()),
            "{name}: {case}"
        );
    }
}

/// A create whose first attempt was cut short after the district wrote it
/// (its idempotency record lost, as a crash before it was finished and its
/// lease run out leave it) is retried under the same key: the same case
/// comes back, not a second one.
#[tokio::test]
async fn a_create_retried_after_a_crash_returns_the_case_it_made() {
    let db = fresh_huimin_copy("crash-create");
    let config = ConfigDir::new().with_demo_source("huimin", &sqlite_url(&db));
    let store = config.audit_url();
    let gw = config.start().await;
    let grid = lianqiao_e2e::huimin_grid();
    let worker = caller(&gw, "grid", &grid, &[]);
    let body = serde_json::json!({"division": grid, "title": "井盖缺失", "category": "市政设施"});
    let (status, first) = worker.post("/v1/cases", "crash-1", &body).await;
    assert_eq!(status, 201, "{first}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&store).await.expect("the store");
    let forgotten = sqlx::query("DELETE FROM lianqiao_idempotency WHERE idem_key = 'crash-1'")
        .execute(&pool)
        .await
        .expect("forget the key");
    assert_eq!(forgotten.rows_affected(), 1);
    let (status, again) = worker.post("/v1/cases", "crash-1", &body).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    assert_eq!(
        again["timeline"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    let (status, listed) = worker
        .get(&format!("/v1/cases?division={grid}&title=井盖缺失"))
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
}
