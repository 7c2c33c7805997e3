//! The escalation saga (吹哨): a street whistles a case to the city
//! platform (the simulator, over HTTP, through the city-platform plugin);
//! the city files exactly one linked case, and the district record mirrors
//! it — through lost answers, 5xx, crashes between any two stages and two
//! workers racing.

use lianqiao_e2e::{ConfigDir, TestGateway, Upstreams, huimin, sqlite_url};
use lianqiao_gateway::cases::outbox::{Stage, Whistle};
use lianqiao_gateway::escalation::saga::{self, Worker};
use lianqiao_sim::upstream::faults::Fault;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::time::Duration;

use super::cases::{caller, fresh_huimin_copy};

/// A bearer token of the city platform simulator (its own OAuth).
async fn city_bearer(up: &Upstreams) -> String {
    let (status, token) = lianqiao_e2e::http_send(
        "POST",
        &format!("http://{}/oauth/token", up.city_platform),
        &[("content-type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
    )
    .await
    .expect("token");
    assert_eq!(status, 200, "{token}");
    let token: Value = serde_json::from_str(&token).expect("token JSON");
    format!("Bearer {}", token["access_token"].as_str().unwrap_or(""))
}

/// The city platform's cases linked to district case `id`, read from the
/// simulator itself (its own OAuth and API).
async fn city_cases_linked_to(up: &Upstreams, division: &str, id: &str) -> Vec<Value> {
    let base = format!("http://{}", up.city_platform);
    let bearer = city_bearer(up).await;
    let (status, page) = lianqiao_e2e::http_send(
        "GET",
        &format!("{base}/cases?divisionCode={division}&limit=500"),
        &[("authorization", &bearer)],
        "",
    )
    .await
    .expect("cases");
    assert_eq!(status, 200, "{page}");
    let page: Value = serde_json::from_str(&page).expect("cases JSON");
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["externalId"] == id)
        .cloned()
        .collect()
}

/// The departments' move of a city case, on the platform itself.
async fn city_action(up: &Upstreams, case: &str, body: &Value) -> (u16, String) {
    let base = format!("http://{}", up.city_platform);
    let bearer = city_bearer(up).await;
    lianqiao_e2e::http_send(
        "POST",
        &format!("{base}/cases/{case}/actions"),
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await
    .expect("action")
}

async fn gateway_with_city(name: &str) -> (Upstreams, TestGateway, std::path::PathBuf) {
    let up = Upstreams::start().await;
    let db = fresh_huimin_copy(name);
    let gw = ConfigDir::new()
        .with_demo_source("huimin", &sqlite_url(&db))
        .with_upstreams(&up)
        .start()
        .await;
    (up, gw, db)
}

#[tokio::test]
async fn a_street_whistles_a_case_and_the_city_files_it_once() {
    let (up, gw, _db) = gateway_with_city("whistle").await;
    let grid = first_grid();
    let community = grid.community.clone();
    let street = community[..9].to_string();
    let worker = caller(&gw, "grid", &grid.code, &[]);
    let community_staff = caller(&gw, "community", &community, &[]);
    let street_staff = caller(&gw, "street", &street, &[]);

    let (status, created) = worker
        .post(
            "/v1/cases",
            "w-create",
            &json!({"division": grid.code, "title": "排水管网堵塞", "category": "市政设施"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().expect("id").to_string();
    for (who, to, key) in [
        (&worker, "assessed", "w-1"),
        (&worker, "escalated", "w-2"),
        (&community_staff, "escalated", "w-3"),
    ] {
        let (status, moved) = who.move_to(&id, key, json!({"to": to})).await;
        assert_eq!(status, 200, "{to}: {moved}");
    }
    // The city files the case but its answer is lost (504 after the write):
    // the retry under the same request id finds it, it files no second.
    up.city_faults.set(
        "POST /cases",
        Fault {
            lose_first: 1,
            ..Fault::default()
        },
    );
    let (status, whistled) = street_staff
        .move_to(
            &id,
            "w-whistle",
            json!({"to": "whistled", "note": "需住建部门协调"}),
        )
        .await;
    // The lost answer is retried after a backoff: finished now or by the
    // worker shortly.
    assert!(status == 200 || status == 202, "{status}: {whistled}");
    let mut case = whistled;
    for _ in 0..100 {
        if case["data"]["state"] == "accepted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        case = street_staff.get(&format!("/v1/cases/{id}")).await.1;
    }
    assert_eq!(
        (&case["data"]["loop"], &case["data"]["state"]),
        (&"city".into(), &"accepted".into()),
        "{case}"
    );
    let linked = case["data"]["linked_case"].as_str().unwrap_or_default();
    assert!(linked.starts_with("HH"), "linked to the city case: {case}");
    let filed = city_cases_linked_to(&up, &grid.code, &id).await;
    assert_eq!(filed.len(), 1, "exactly one city case: {filed:?}");
    assert_eq!(filed[0]["caseId"], linked);
    assert_eq!(filed[0]["title"], "排水管网堵塞");
    let steps: Vec<(&str, &str, &str)> = case["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .map(|s| {
            (
                s["state"].as_str().unwrap_or(""),
                s["loop"].as_str().unwrap_or(""),
                s["by_level"].as_str().unwrap_or(""),
            )
        })
        .filter(|(state, _, _)| matches!(*state, "whistled" | "accepted"))
        .collect();
    assert_eq!(
        steps,
        [("whistled", "city", "street"), ("accepted", "city", "city")],
        "{case}"
    );
    // The city platform's system principal reports in through the gateway:
    // the move is made on the platform, the district record follows.
    let platform = caller(&gw, "city", "1501", &["city-platform"]);
    let (status, moved) = platform
        .move_to(&id, "city-1", json!({"to": "reported_in"}))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["data"]["state"], "reported_in", "{moved}");
    let on_city = city_cases_linked_to(&up, &grid.code, &id).await;
    assert_eq!(on_city[0]["state"], "reported_in", "moved on the platform");
    // Street staff do not move city-loop cases.
    let (status, _) = street_staff
        .move_to(&id, "w-city", json!({"to": "feedback"}))
        .await;
    assert_eq!(status, 403);
    // The departments answer on the platform itself (接诉即办); the
    // district record mirrors each move.
    for (action, extra) in [
        ("feedback", json!({})),
        ("evaluate", json!({"satisfaction": 4})),
        ("close", json!({})),
    ] {
        let mut body = extra;
        body["action"] = action.into();
        let (status, answer) = city_action(&up, linked, &body).await;
        assert_eq!(status, 200, "{action}: {answer}");
    }
    let mut case = case.clone();
    for _ in 0..150 {
        if case["data"]["state"] == "closed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        case = street_staff.get(&format!("/v1/cases/{id}")).await.1;
    }
    assert_eq!(
        (
            &case["data"]["loop"],
            &case["data"]["state"],
            &case["data"]["satisfaction"]
        ),
        (&"city".into(), &"closed".into(), &4.into()),
        "mirrored: {case}"
    );
    let city_steps: Vec<&str> = case["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|s| s["by_level"] == "city")
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(
        city_steps,
        ["accepted", "reported_in", "feedback", "evaluated", "closed"],
        "{case}"
    );

    // The client's retry of the whistle: the first result, no second case.
    let (status, _) = street_staff
        .move_to(
            &id,
            "w-whistle",
            json!({"to": "whistled", "note": "需住建部门协调"}),
        )
        .await;
    assert!(status == 200 || status == 202);
    assert_eq!(city_cases_linked_to(&up, &grid.code, &id).await.len(), 1);
}

#[tokio::test]
async fn a_whistle_the_city_refuses_is_undone() {
    let (up, gw, db) = gateway_with_city("refused").await;
    let grid = first_grid();
    let street = grid.community[..9].to_string();
    let id = street_case(&db, &grid.code, 0).await;
    up.city_faults.set(
        "POST /cases",
        Fault {
            fail_first: 100,
            status: Some(422),
            ..Fault::default()
        },
    );
    let street_staff = caller(&gw, "street", &street, &[]);
    let (status, refused) = street_staff
        .move_to(&id, "r-1", json!({"to": "whistled"}))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "source_rejected");
    let (_, case) = street_staff.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(
        (&case["data"]["loop"], &case["data"]["state"]),
        (&"street".into(), &"assessed".into()),
        "back where it was: {case}"
    );
    let last = case["timeline"]
        .as_array()
        .and_then(|t| t.last())
        .cloned()
        .unwrap_or_default();
    assert!(
        last["note"].as_str().unwrap_or("").contains("吹哨未成"),
        "the reason is on the record: {last}"
    );
    assert!(city_cases_linked_to(&up, &grid.code, &id).await.is_empty());
}

/// Huimin's first grid (a grid code has 14 digits).
fn first_grid() -> lianqiao_sim::generate::Grid {
    huimin()
        .0
        .grids
        .iter()
        .find(|g| g.code.len() == 14)
        .expect("a grid")
        .clone()
}

/// A street-loop case in `assessed`, written straight into the test's own
/// copy of Huimin's database (as the district's system would hold it).
async fn street_case(db: &std::path::Path, grid: &str, n: usize) -> String {
    let id = format!("150103-S{n:05}-{}", std::process::id());
    let source = sqlite_url(db);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&source).await.expect("connect");
    sqlx::query(
        "INSERT INTO problem_case (case_no, title, category, loop_level, status, grid_code, reporter, reporter_tel, opened, updated, due, city_case_no)
         VALUES (?, '道路塌陷', '市政设施', '街道', '研判', ?, NULL, NULL, '2026-12-01T09:00:00+08:00', '2026-12-01T09:00:00+08:00', NULL, NULL)",
    )
    .bind(id.clone())
    .bind(grid.to_string())
    .execute(&pool)
    .await
    .expect("insert a street case");
    pool.close().await;
    id
}

/// ≥100 seeded fault schedules: the city losing answers, failing with 5xx
/// for a while or refusing; the gateway "crashing" (its worker stopping,
/// lease held) after any stage; a second worker racing the first. Each ends
/// with exactly one city case and the district record linked to it, or —
/// when the city refused — none and the record back at `assessed`.
#[tokio::test]
async fn whistles_end_consistent_under_seeded_fault_schedules() {
    let seed: u64 = std::env::var("LIANQIAO_SAGA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261203);
    let schedules: usize = std::env::var("LIANQIAO_SAGA_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let (up, gw, db) = gateway_with_city("schedules").await;
    let grid = first_grid().code;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for n in 0..schedules {
        let id = street_case(&db, &grid, n).await;
        // The schedule.
        let crash_after = rng.random_range(0..4usize);
        let fault = match rng.random_range(0..10) {
            0..=2 => Fault::default(),
            3..=4 => Fault {
                fail_first: rng.random_range(1..4),
                status: Some(if rng.random_bool(0.5) { 500 } else { 503 }),
                ..Fault::default()
            },
            5..=7 => Fault {
                lose_first: rng.random_range(1..3),
                ..Fault::default()
            },
            8 => Fault {
                fail_first: 1,
                status: Some(500),
                lose_first: 1,
                ..Fault::default()
            },
            _ => Fault {
                fail_first: 100,
                status: Some(422),
                ..Fault::default()
            },
        };
        let refused = fault.status == Some(422);
        let racing = rng.random_bool(0.3);
        let context = format!(
            "seed {seed} (LIANQIAO_SAGA_SEED), schedule {n}: crash after {crash_after} stage(s), {fault:?}, racing {racing}"
        );
        up.city_faults.clear();
        up.city_faults.set("POST /cases", fault);

        let gateway = &gw.gateway;
        let entry_id = saga::entry_id("schedule", &format!("k{n}"));
        let whistle = Whistle {
            case_id: id.clone(),
            division: grid.clone(),
            district_source: "huimin".into(),
            title: "道路塌陷".into(),
            category: "市政设施".into(),
            due_at: None,
            reporter_name: None,
            reporter_phone: None,
            note: Some(format!("schedule {n}")),
            step_id: format!("{id}.w"),
            at: "2026-12-02T10:00:00.000+08:00".into(),
        };
        assert!(
            gateway
                .writes
                .enqueue(&entry_id, &whistle)
                .await
                .expect("enqueue"),
            "{context}"
        );
        // A client retry records nothing twice.
        assert!(
            !gateway
                .writes
                .enqueue(&entry_id, &whistle)
                .await
                .expect("enqueue again")
        );
        let short = |name: &str| Worker {
            owner: format!("{name}-{n}"),
            lease: Duration::from_millis(150),
        };
        // The first worker stops after `crash_after` stages, its lease held.
        saga::drive(gateway, &short("crashing"), &entry_id, crash_after)
            .await
            .expect("first worker");
        // Then the restarted gateway (and maybe a racing replica) go on,
        // beside this process's own background worker.
        let mut finished = None;
        for _ in 0..300 {
            let (restarted, replica) = (short("restarted"), short("replica"));
            let resume = saga::drive(gateway, &restarted, &entry_id, usize::MAX);
            if racing {
                let race = saga::drive(gateway, &replica, &entry_id, usize::MAX);
                let (a, b) = tokio::join!(resume, race);
                a.expect("restarted worker");
                b.expect("racing worker");
            } else {
                resume.await.expect("restarted worker");
            }
            let entry = gateway
                .writes
                .entry(&entry_id)
                .await
                .expect("read the outbox")
                .expect("the row");
            if entry.stage.finished() {
                finished = Some(entry);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let entry = finished.unwrap_or_else(|| panic!("not finished: {context}"));
        let filed = city_cases_linked_to(&up, &grid, &id).await;
        let street = caller(&gw, "street", &grid[..9], &[]);
        let (status, case) = street.get(&format!("/v1/cases/{id}")).await;
        assert_eq!(status, 200, "{context}: {case}");
        if refused {
            assert_eq!(entry.stage, Stage::Failed, "{context}");
            assert!(filed.is_empty(), "{context}: {filed:?}");
            assert_eq!(
                (&case["data"]["loop"], &case["data"]["state"]),
                (&"street".into(), &"assessed".into()),
                "{context}"
            );
        } else {
            assert_eq!(entry.stage, Stage::Done, "{context}: {}", entry.error);
            assert_eq!(filed.len(), 1, "{context}: {filed:?}");
            assert_eq!(
                (
                    &case["data"]["loop"],
                    &case["data"]["state"],
                    &case["data"]["linked_case"]
                ),
                (&"city".into(), &"accepted".into(), &filed[0]["caseId"]),
                "{context}"
            );
        }
        let states: Vec<&str> = case["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["state"].as_str())
            .collect();
        let whistles = states.iter().filter(|s| **s == "whistled").count();
        assert_eq!(whistles, 1, "one whistled step: {context}: {states:?}");
    }
}

/// Two gateways sharing one PostgreSQL store (audit with a chain each,
/// idempotency keys, the outbox) behave as one: a write retried on the
/// other replica gets the first result; a whistle sent to both at once,
/// and an outbox row worked by both, file one city case.
#[tokio::test]
async fn two_replicas_sharing_postgresql_act_as_one() {
    let Some(url) = lianqiao_e2e::database_url(
        "LIANQIAO_TEST_POSTGRES_URL",
        "two_replicas_sharing_postgresql_act_as_one",
    ) else {
        return;
    };
    let store = lianqiao_e2e::fresh_database(&url, "lq_replicas").await;
    let up = Upstreams::start().await;
    let db = fresh_huimin_copy("replicas");
    let replica = |chain: &str| {
        ConfigDir::new()
            .with_demo_source("huimin", &sqlite_url(&db))
            .with_upstreams(&up)
            .edit_main(
                "url = \"sqlite://audit.db\"\nchain = \"test\"",
                &format!("url = \"{store}\"\nchain = \"{chain}\""),
            )
            .start()
    };
    let a = replica("replica-a").await;
    let b = replica("replica-b").await;
    let grid = first_grid().code;

    // Created on one replica, retried on the other: the first result.
    let body = json!({"division": grid, "title": "路灯不亮", "category": "市政设施"});
    let (status, first) = caller(&a, "grid", &grid, &[])
        .post("/v1/cases", "rep-create", &body)
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = caller(&b, "grid", &grid, &[])
        .post("/v1/cases", "rep-create", &body)
        .await;
    assert_eq!((status, &again["data"]["id"]), (201, &first["data"]["id"]));

    // A street whistles through both at once with one key: one city case.
    let id = street_case(&db, &grid, 900).await;
    let street = &grid[..9];
    let whistle = json!({"to": "whistled"});
    let (sa, sb) = (
        caller(&a, "street", street, &[]),
        caller(&b, "street", street, &[]),
    );
    let ((status_a, answer_a), (status_b, answer_b)) = tokio::join!(
        sa.move_to(&id, "rep-whistle", whistle.clone()),
        sb.move_to(&id, "rep-whistle", whistle.clone()),
    );
    for (status, answer) in [(status_a, &answer_a), (status_b, &answer_b)] {
        assert!(
            matches!(status, 200 | 202) || answer["error"]["code"] == "write_in_progress",
            "{status}: {answer}"
        );
    }
    let mut case = Value::Null;
    for _ in 0..100 {
        case = sa.get(&format!("/v1/cases/{id}")).await.1;
        if case["data"]["state"] == "accepted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(case["data"]["loop"], "city", "{case}");
    assert_eq!(city_cases_linked_to(&up, &grid, &id).await.len(), 1);

    // One outbox row, worked by a worker of each replica at once.
    let id = street_case(&db, &grid, 901).await;
    let entry_id = saga::entry_id("replicas", "k901");
    let whistle = Whistle {
        case_id: id.clone(),
        division: grid.clone(),
        district_source: "huimin".into(),
        title: "道路塌陷".into(),
        category: "市政设施".into(),
        due_at: None,
        reporter_name: None,
        reporter_phone: None,
        note: None,
        step_id: format!("{id}.w"),
        at: "2026-12-02T10:00:00.000+08:00".into(),
    };
    assert!(
        a.gateway
            .writes
            .enqueue(&entry_id, &whistle)
            .await
            .expect("enqueue")
    );
    assert!(
        !b.gateway
            .writes
            .enqueue(&entry_id, &whistle)
            .await
            .expect("enqueue on b")
    );
    let (wa, wb) = (
        Worker {
            owner: "replica-a".into(),
            lease: Duration::from_secs(30),
        },
        Worker {
            owner: "replica-b".into(),
            lease: Duration::from_secs(30),
        },
    );
    let (ra, rb) = tokio::join!(
        saga::drive(&a.gateway, &wa, &entry_id, usize::MAX),
        saga::drive(&b.gateway, &wb, &entry_id, usize::MAX),
    );
    ra.expect("replica a");
    rb.expect("replica b");
    let mut entry = None;
    for _ in 0..100 {
        entry = a.gateway.writes.entry(&entry_id).await.expect("outbox");
        if entry.as_ref().is_some_and(|e| e.stage.finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entry.map(|e| e.stage), Some(Stage::Done));
    assert_eq!(city_cases_linked_to(&up, &grid, &id).await.len(), 1);
}

/// The real gateway process, SIGKILLed while a whistle is with the city
/// (the platform slow to answer), then started again on the same store:
/// the restarted process finishes the saga — one city case, the district
/// record linked — at kill times drawn from a seed.
#[tokio::test]
async fn a_gateway_killed_mid_whistle_finishes_it_after_a_restart() {
    let seed: u64 = std::env::var("LIANQIAO_SAGA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261203);
    let up = Upstreams::start().await;
    let db = fresh_huimin_copy("sigkill");
    let config = ConfigDir::new()
        .with_demo_source("huimin", &sqlite_url(&db))
        .with_upstreams(&up);
    // A short lease, so the restarted process takes the row over at once.
    let shipped = std::fs::read_to_string(lianqiao_e2e::workspace_root().join("config/cases.toml"))
        .expect("cases.toml");
    std::fs::write(
        config.main_file().with_file_name("cases.toml"),
        shipped.replace("saga_lease_s = 30", "saga_lease_s = 1"),
    )
    .expect("write cases.toml");
    let grid = first_grid().code;
    let street = format!("Bearer {}", lianqiao_e2e::token("street", &grid[..9], &[]));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for round in 0..3 {
        let id = street_case(&db, &grid, 500 + round).await;
        let kill_after = Duration::from_millis(rng.random_range(100..900));
        let context =
            format!("seed {seed}, round {round}: killed {kill_after:?} into the city call");
        up.city_faults.clear();
        // The platform takes a second to answer (and then applies the write).
        up.city_faults.set(
            "POST /cases",
            Fault {
                latency_ms: 1000,
                ..Fault::default()
            },
        );
        let posts = || {
            up.city_faults
                .received()
                .iter()
                .filter(|r| r.method == "POST" && r.path == "/cases")
                .count()
        };
        let before = posts();
        let mut first = config.spawn_binary(&[]).await;
        let url = format!("http://127.0.0.1:{}/v1/cases/{id}/transitions", first.port);
        let auth = street.clone();
        let key = format!("kill-{round}");
        let whistle = tokio::spawn(async move {
            lianqiao_e2e::http_send(
                "POST",
                &url,
                &[
                    ("authorization", &auth),
                    ("x-purpose", "case-handling"),
                    ("content-type", "application/json"),
                    ("idempotency-key", &key),
                ],
                r#"{"to":"whistled"}"#,
            )
            .await
        });
        // Once the city has the request, kill the gateway where it stands.
        for _ in 0..250 {
            if posts() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(posts() > before, "{context}: the city never got the case");
        tokio::time::sleep(kill_after).await;
        first.child.kill().expect("SIGKILL");
        let _ = first.child.wait();
        // The client lost its answer (or, rarely, had it): either way the
        // saga is the gateway's to finish.
        let _ = whistle.await;
        up.city_faults.clear();

        let second = config.spawn_binary(&[]).await;
        let read = format!("http://127.0.0.1:{}/v1/cases/{id}", second.port);
        let mut case = Value::Null;
        for _ in 0..100 {
            let (status, body) = lianqiao_e2e::http_get_with(
                &read,
                &[("authorization", &street), ("x-purpose", "case-handling")],
            )
            .await
            .expect("GET");
            case = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && case["data"]["state"] == "accepted" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let filed = city_cases_linked_to(&up, &grid, &id).await;
        assert_eq!(filed.len(), 1, "{context}: {filed:?}\n{}", second.log());
        assert_eq!(
            (&case["data"]["loop"], &case["data"]["linked_case"]),
            (&"city".into(), &filed[0]["caseId"]),
            "{context}: {case}"
        );
        drop(second);
    }
}

/// Calls made to `source` so far, from the admin listener's /metrics.
async fn calls_to(gw: &TestGateway, source: &str) -> u64 {
    let (status, text) = lianqiao_e2e::http_get_with(&format!("http://{}/metrics", gw.admin), &[])
        .await
        .expect("metrics");
    assert_eq!(status, 200, "{text}");
    let prefix = format!("lianqiao_source_calls_total{{source=\"{source}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The city reads one case by id without paging through the city
/// platform's cases: its plugin declares a lookup by id, answered from its
/// snapshot, so each source is called once, not once per page of cases.
#[tokio::test]
async fn the_city_finds_a_case_by_id_with_one_call_to_each_source() {
    let (_up, gw, _db) = gateway_with_city("lookup").await;
    let city = caller(&gw, "city", "1501", &[]);
    let (status, page) = city.get("/v1/cases?division=1501&limit=500").await;
    assert_eq!(status, 200, "{page}");
    let rows = page["data"].as_array().expect("data");
    assert!(
        rows.len() > 16,
        "enough cases that a lookup paging 8 at a time would take several calls: {}",
        rows.len()
    );
    // The case that sorts last: a lookup that paged through the city
    // platform's cases (its plugin could not filter by id) read every
    // page before it, and its first pages came back empty.
    let id = rows.last().and_then(|r| r["id"].as_str()).expect("an id");
    let (city_before, huimin_before) = (
        calls_to(&gw, "city-platform").await,
        calls_to(&gw, "huimin").await,
    );
    // Asked as a filter over the whole city, as the city platform asks.
    let (status, found) = city
        .get(&format!("/v1/cases?division=1501&id={id}&limit=1"))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["data"][0]["id"], id, "on the first page: {found}");
    assert!(found["page"]["next_cursor"].is_null(), "{found}");
    let city_calls = calls_to(&gw, "city-platform").await - city_before;
    let huimin_calls = calls_to(&gw, "huimin").await - huimin_before;
    assert!(
        city_calls == 1 && huimin_calls == 1,
        "{city_calls} calls to the city platform, {huimin_calls} to Huimin, for one case"
    );
    // And by its path.
    let (status, case) = city.get(&format!("/v1/cases/{id}")).await;
    assert_eq!(status, 200, "{case}");
    assert_eq!(case["data"]["id"], id);
}

/// Operators see where each whistle is on the console's outbox page: a
/// whistle the city cannot take for now is there with its stage, attempts
/// and error (never the case's text), and done once the city is back.
#[tokio::test]
async fn operators_see_a_stuck_whistle_on_the_console_until_the_city_takes_it() {
    let (up, gw, db) = gateway_with_city("outbox").await;
    let grid = first_grid();
    let street = grid.community[..9].to_string();
    let id = street_case(&db, &grid.code, 7).await;
    up.city_faults.set(
        "POST /cases",
        Fault {
            fail_first: 1_000_000,
            status: Some(503),
            ..Fault::default()
        },
    );
    let street_staff = caller(&gw, "street", &street, &[]);
    let (status, answer) = street_staff
        .move_to(&id, "stuck-1", json!({"to": "whistled"}))
        .await;
    assert!(matches!(status, 200 | 202 | 503), "{status}: {answer}");

    let admin = format!("http://{}", gw.admin);
    let (cookie, _) = lianqiao_e2e::console_sign_in(
        &admin,
        &lianqiao_e2e::token("region", "15", &["policy-admin"]),
    )
    .await;
    let row_of = |report: &Value| {
        report["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["case_id"] == id.as_str())
            .cloned()
    };
    let outbox = || async {
        let (status, _, body) = lianqiao_e2e::http_request(
            "GET",
            &format!("{admin}/console/outbox.json"),
            &[("cookie", &cookie)],
        )
        .await
        .expect("outbox");
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains("道路塌陷"),
            "the case's text stays out: {body}"
        );
        serde_json::from_str::<Value>(&body).expect("JSON")
    };
    // Stuck at the city's stage, retried, the error said.
    let mut row = None;
    for _ in 0..100 {
        let report = outbox().await;
        if let Some(r) = row_of(&report)
            && r["attempts"].as_i64().unwrap_or(0) >= 1
        {
            row = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = row.expect("the whistle's row, tried at least once");
    assert_eq!(row["stage"], "city", "{row}");
    assert!(!row["error"].as_str().unwrap_or("").is_empty(), "{row}");
    assert_eq!(row["division"], grid.code.as_str());
    let (status, _, page) = lianqiao_e2e::http_request(
        "GET",
        &format!("{admin}/console/outbox"),
        &[("cookie", &cookie)],
    )
    .await
    .expect("page");
    assert_eq!(status, 200);
    assert!(page.contains(&format!("data-case=\"{id}\"")), "{page}");

    // The city is back: the worker finishes it, and the page says so.
    up.city_faults.clear();
    let mut done = false;
    for _ in 0..300 {
        if row_of(&outbox().await).is_some_and(|r| r["stage"] == "done") {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "{}", outbox().await);
    // Not for anyone else.
    let (status, _, _) =
        lianqiao_e2e::http_request("GET", &format!("{admin}/console/outbox.json"), &[])
            .await
            .expect("outbox");
    assert_eq!(status, 401);
}
