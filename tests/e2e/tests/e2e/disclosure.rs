//! The disclosure gate against the attacks that found it missing (issue
//! 15). Each test is named for an attack that worked against the gateway
//! before the gate (statistics keys in clear, identifying filters, an
//! existence oracle, loop-blind statistics, data in error messages,
//! readable cursors, hostile clients) and shows it refused or harmless now.
//! `disclosure_props.rs` attacks every endpoint at random; `differencing.rs`
//! measures what differencing recovers of protected counts.

use std::time::{Duration, Instant};

use base64::Engine as _;
use lianqiao_e2e::{ConfigDir, Upstreams, cases_of_every_loop, huimin_with_members, token};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COMMUNITY: &str = "150103001001";

/// What the misbehaving plugins quote (`tattle`: an ID number, a phone, a
/// name; `wrongkind`: an ID number as a number).
const QUOTED: [&str; 4] = [
    "15010319850312123X",
    "13812345678",
    "张三丰",
    "150103198503121234",
];

fn cells(body: &Value) -> &Vec<Value> {
    body["data"].as_array().expect("data")
}

/// 18-character ID numbers (17 digits and a digit or X) anywhere in `text`.
fn id_numbers_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for w in chars.windows(18) {
        if w[..17].iter().all(char::is_ascii_digit) && (w[17].is_ascii_digit() || w[17] == 'X') {
            found.push(w.iter().collect());
        }
    }
    found
}

#[tokio::test]
async fn the_city_cannot_count_members_by_id_number_or_phone() {
    let (gw, _up) = huimin_with_members().await;
    let city = token("city", "1501", &[]);
    for by in ["id_number", "phone", "name", "id", "birth_date", "address"] {
        let (status, body) = gw
            .get_as(
                &city,
                "statistics",
                &format!("/v1/stats?metric=members.count&division=1501&by={by}"),
            )
            .await;
        assert_eq!(status, 400, "by={by}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("cannot be grouped") && message.contains("gender"),
            "the message says what can be: {message}"
        );
        assert!(id_numbers_in(&body.to_string()).is_empty(), "{body}");
    }
    // What the city may do: counts by a category, protected.
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=members.count&division=1501&by=gender",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "protected");
    for c in cells(&body) {
        assert!(
            c["key"] == "male" || c["key"] == "female",
            "keys are values of the field: {c}"
        );
    }
}

#[tokio::test]
async fn a_street_cannot_read_withheld_id_numbers_through_statistics() {
    let (gw, _up) = huimin_with_members().await;
    // An ID number the street's lists withhold (the default principal sees all).
    let (_, body) = gw
        .get("/v1/members?division=150103001&limit=1&fields=id_number")
        .await;
    let id_number = cells(&body)[0]["id_number"].as_str().unwrap().to_string();
    let street = token("street", "150103001", &[]);
    let (status, body) = gw
        .get_as(
            &street,
            "case-handling",
            "/v1/stats?metric=members.count&division=150103001&by=id_number",
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Nor can it test a guess of one, as a filter.
    let (status, body) = gw
        .get_as(
            &street,
            "case-handling",
            &format!("/v1/stats?metric=members.count&division=150103001&id_number={id_number}"),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains(&id_number[6..]), "{body}");
}

#[tokio::test]
async fn a_community_cannot_unmask_a_named_person_by_grouping() {
    let (gw, _up) = huimin_with_members().await;
    let community = token("community", COMMUNITY, &[]);
    let (status, body) = gw
        .get_as(
            &community,
            "case-handling",
            &format!("/v1/members?division={COMMUNITY}&limit=20&fields=name,id_number,phone"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let person = cells(&body)
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| !n.contains('*')))
        .expect("the community sees names in clear")
        .clone();
    assert!(
        person["id_number"].as_str().unwrap().contains('*'),
        "and ID numbers masked: {person}"
    );
    let name = person["name"].as_str().unwrap();
    let ask = |by: &str| {
        format!("/v1/stats?metric=members.count&division={COMMUNITY}&name={name}&by={by}")
    };
    for (by, status) in [
        ("id_number", 400),
        ("phone", 400),
        ("birth_date", 400),
        ("ethnicity", 403),
    ] {
        let (got, body) = gw.get_as(&community, "case-handling", &ask(by)).await;
        assert_eq!(got, status, "by={by}: {body}");
        assert!(id_numbers_in(&body.to_string()).is_empty(), "{body}");
    }
    // Counting the person by what the community sees anyway stays exact.
    let (status, body) = gw.get_as(&community, "case-handling", &ask("gender")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "exact");
}

#[tokio::test]
async fn a_withheld_sensitive_field_is_not_counted_per_worker() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (_, body) = gw
        .get("/v1/workers?division=150103001&limit=1&fields=id")
        .await;
    let worker = cells(&body)[0]["id"].as_str().unwrap().to_string();
    let street = token("street", "150103001", &[]);
    let (status, body) = gw
        .get_as(
            &street,
            "case-handling",
            &format!(
                "/v1/stats?metric=workers.count&division=150103001&id={worker}&by=is_party_member"
            ),
        )
        .await;
    assert_eq!(status, 400, "party membership is never groupable: {body}");
    let (status, body) = gw
        .get_as(
            &street,
            "case-handling",
            &format!(
                "/v1/stats?metric=workers.count&division=150103001&id={worker}&is_party_member=true"
            ),
        )
        .await;
    assert_eq!(status, 403, "nor a filter the street cannot see: {body}");
}

#[tokio::test]
async fn statistics_only_callers_filter_only_on_the_division_and_groupable_fields() {
    let (gw, _up) = huimin_with_members().await;
    let (_, body) = gw
        .get("/v1/members?division=150103001&limit=1&fields=id,name,org")
        .await;
    let row = cells(&body)[0].clone();
    let city = token("city", "1501", &[]);
    for filter in [
        format!("id={}", row["id"].as_str().unwrap()),
        format!("name={}", row["name"].as_str().unwrap()),
        format!("org={}", row["org"].as_str().unwrap()),
        "joined_on[gte]=2000-01-01".to_string(),
    ] {
        let (status, body) = gw
            .get_as(
                &city,
                "statistics",
                &format!("/v1/stats?metric=members.count&division=150103&{filter}"),
            )
            .await;
        assert_eq!(status, 403, "{filter}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=members.count&division=150103&gender=female&by=status",
        )
        .await;
    assert_eq!(status, 200, "groupable fields filter: {body}");
}

#[tokio::test]
async fn an_empty_cell_and_a_small_cell_look_the_same() {
    let (gw, _up) = huimin_with_members().await;
    // The truth, from a principal that sees everything (exact counts).
    let path = "/v1/stats?metric=members.count&division=150103&group_by=community&by=ethnicity";
    let (status, truth) = gw.get(path).await;
    assert_eq!(status, 200, "{truth}");
    assert_eq!(truth["policy"]["counts"], "exact");
    let small: Vec<(String, String)> = cells(&truth)
        .iter()
        .filter(|c| (1..5).contains(&c["value"].as_i64().unwrap_or(0)))
        .map(|c| {
            (
                c["division"].as_str().unwrap().into(),
                c["key"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(!small.is_empty(), "Huimin has small minority cells");
    let city = token("city", "1501", &[]);
    let (status, body) = gw.get_as(&city, "statistics", path).await;
    assert_eq!(status, 200, "{body}");
    let shown: std::collections::HashMap<(String, String), Value> = cells(&body)
        .iter()
        .filter_map(|c| {
            Some((
                (
                    c["division"].as_str()?.to_string(),
                    c["key"].as_str()?.to_string(),
                ),
                c.clone(),
            ))
        })
        .collect();
    for cell in &small {
        assert_eq!(shown[cell]["suppressed"], true, "{cell:?}");
    }
    // A community listed with any cell shows every ethnic group, and one
    // nobody belongs to looks exactly like one a few belong to.
    let (division, key) = &small[0];
    let present: std::collections::HashSet<&str> = cells(&truth)
        .iter()
        .filter(|c| c["division"] == division.as_str())
        .filter_map(|c| c["key"].as_str())
        .collect();
    let absent = shown
        .keys()
        .find(|(d, k)| d == division && !present.contains(k.as_str()))
        .expect("a group with no member in that community is listed too");
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("key");
        v
    };
    assert_eq!(
        strip(&shown[absent]),
        strip(&shown[&(division.clone(), key.clone())]),
        "0 and 1–4 are published alike"
    );
}

#[tokio::test]
async fn protected_counts_carry_the_same_noise_however_they_are_asked() {
    let (gw, _up) = huimin_with_members().await;
    let city = token("city", "1501", &[]);
    let by_community = "/v1/stats?metric=members.count&division=150103&group_by=community";
    let (_, first) = gw.get_as(&city, "statistics", by_community).await;
    let (_, again) = gw.get_as(&city, "statistics", by_community).await;
    assert_eq!(first["data"], again["data"], "repeating gains nothing");
    let (_, truth) = gw
        .get_with(by_community, &[("x-purpose", "statistics")])
        .await;
    let mut differ = 0;
    for (shown, exact) in cells(&first).iter().zip(cells(&truth)) {
        assert_eq!(shown["division"], exact["division"]);
        let (Some(s), Some(t)) = (shown["value"].as_i64(), exact["value"].as_i64()) else {
            continue;
        };
        assert!(
            (s - t).abs() <= 3,
            "noise within max_noise: {shown} vs {exact}"
        );
        differ += usize::from(s != t);
        // The same cell asked alone, or through a filter that admits every
        // status, gets the same published value.
        let d = shown["division"].as_str().unwrap();
        for alone in [
            format!("/v1/stats?metric=members.count&division={d}"),
            format!(
                "/v1/stats?metric=members.count&division={d}&status[in]=regular,in_service_registered,retired"
            ),
        ] {
            let (_, body) = gw.get_as(&city, "statistics", &alone).await;
            assert_eq!(cells(&body)[0]["value"], shown["value"], "{alone}");
        }
    }
    assert!(differ > 0, "counts are perturbed");
}

#[tokio::test]
async fn the_city_does_not_count_cases_outside_its_loop_exactly() {
    let gw = ConfigDir::new()
        .with_huimin()
        .with_cases_of_every_loop()
        .start()
        .await;
    let (cases, _) = cases_of_every_loop();
    let city = token("city", "1501", &[]);
    let (status, body) = gw
        .get_as(
            &city,
            "case-handling",
            "/v1/cases?division=150103&limit=1000",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let city_cases = cases.iter().filter(|c| c.case_loop == "city").count();
    assert_eq!(cells(&body).len(), city_cases);
    assert!(cells(&body).iter().all(|r| r["loop"] == "city"));
    // Counting every loop: the city may, but only protected …
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=cases.count&division=150103&group_by=community&by=loop",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "protected", "{}", body["policy"]);
    for c in cells(&body) {
        assert!(c["value"].as_i64().is_none_or(|v| v >= 5), "{c}");
    }
    // … while the city loop, which it may list, is exact.
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=cases.count&division=150103&loop=city",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "exact");
    assert_eq!(cells(&body)[0]["value"], city_cases as i64);
}

#[tokio::test]
async fn source_errors_do_not_quote_the_data_they_failed_on() {
    let dir = ConfigDir::new()
        .with_misbehaving("tattler", "tattle", "150197", "")
        .with_misbehaving("mistyped", "wrongkind", "150198", "")
        .with_misbehaving("leaker", "leak", "150199", "");
    let gw = dir.start().await;
    for (division, code) in [
        ("150197", "source_error"),
        ("150198", "source_error"),
        ("150199", "source_error"),
    ] {
        let (status, body) = gw
            .get(&format!("/v1/grids?division={division}&limit=5"))
            .await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        let text = body.to_string();
        // and the leaker's row id, outside the scope
        for secret in QUOTED.iter().chain(&["150105999"]) {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[tokio::test]
async fn the_operators_log_gets_source_errors_masked() {
    let dir = ConfigDir::new()
        .with_misbehaving("tattler", "tattle", "150197", "")
        .with_misbehaving("mistyped", "wrongkind", "150198", "");
    let mut gateway = dir.spawn_binary(&[("RUST_LOG", "info")]).await;
    for division in ["150197", "150198"] {
        let (status, body) = lianqiao_e2e::http_get_with(
            &format!(
                "http://127.0.0.1:{}/v1/grids?division={division}&limit=5",
                gateway.port
            ),
            &[
                ("authorization", lianqiao_e2e::default_auth()),
                ("x-purpose", "case-handling"),
            ],
        )
        .await
        .expect("request");
        assert_eq!(status, 502, "{body}");
    }
    gateway.terminate();
    let log = gateway.log();
    assert!(
        log.contains("source failed"),
        "the failures are logged: {log}"
    );
    for secret in QUOTED {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(
        log.contains("150***************") && log.contains("居****"),
        "the detail is there, masked:\n{log}"
    );
}

#[tokio::test]
async fn cursors_are_sealed_and_bound_to_their_caller() {
    let (gw, _up) = huimin_with_members().await;
    let district = token("district", "150103", &[]);
    let path = "/v1/grids?division=150103&limit=5";
    let (status, body) = gw.get_as(&district, "case-handling", path).await;
    assert_eq!(status, 200, "{body}");
    let cursor = body["page"]["next_cursor"].as_str().unwrap().to_string();
    let last = cells(&body).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&cursor)
        .expect("base64url");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains("150103") && !text.contains(&last) && !text.contains("huimin"),
        "a cursor shows nothing of its positions: {text}"
    );
    let next = format!("{path}&cursor={cursor}");
    let (status, _) = gw.get_as(&district, "case-handling", &next).await;
    assert_eq!(status, 200);
    let other = token("district", "150103", &["another-role"]);
    let (status, body) = gw.get_as(&other, "case-handling", &next).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_cursor");
}

#[tokio::test]
async fn a_spent_statistics_budget_answers_429_with_retry_after() {
    let (_, up) = (0, Upstreams::start().await);
    let gw = ConfigDir::new()
        .with_huimin()
        .with_upstreams(&up)
        .edit_main(
            "burst = 1000000\nqueries_per_hour = 1000000",
            "burst = 3\nqueries_per_hour = 60",
        )
        .start()
        .await;
    let city = token("city", "1501", &[]);
    let ask =
        |division: &str| format!("/v1/stats?metric=members.count&division={division}&by=gender");
    let auth = format!("Bearer {city}");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-purpose", "statistics"),
    ];
    // An answer the caller already has costs nothing: the first one is
    // charged, its repeats are not.
    let (status, _, first) = gw.get_full(&ask("150103"), &headers).await;
    assert_eq!(status, 200, "{first}");
    for _ in 0..5 {
        let (status, _, again) = gw.get_full(&ask("150103"), &headers).await;
        assert_eq!(status, 200, "a repeat is free: {again}");
        assert_eq!(again["data"], first["data"]);
    }
    // New answers are charged: two more spend the burst of three.
    for division in ["150103001", "150103002"] {
        let (status, _, body) = gw.get_full(&ask(division), &headers).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, response_headers, body) = gw.get_full(&ask("150103003"), &headers).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    let retry: u64 = response_headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // A spent budget refuses repeats too: answering only those would tell
    // which reformulations count the same records as an earlier answer.
    let (status, _, body) = gw.get_full(&ask("150103"), &headers).await;
    assert_eq!(status, 429, "{body}");
    let district = token("district", "150103", &[]);
    let (status, _) = gw.get_as(&district, "statistics", &ask("150103")).await;
    assert_eq!(status, 200, "budgets are per principal");
}

/// Read until the peer closes or `wait` passes: `Some(bytes)` when it
/// closed, `None` when it was still open.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_slow_client_is_cut_off_after_the_header_timeout() {
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main(
            "plaintext = true\n",
            "plaintext = true\nheader_read_timeout_ms = 300\n",
        )
        .start()
        .await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"GET /v1/grids?division=150103 HTTP/1.1\r\nHost: lianqiao\r\n")
        .await
        .unwrap();
    let began = Instant::now();
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "half a request is not held open");
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "{:?}",
        began.elapsed()
    );
    // An idle kept-alive connection is closed the same way.
    let mut idle = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: lianqiao\r\n\r\n")
        .await
        .unwrap();
    let answered = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("closed after the answer and the idle timeout");
    assert!(String::from_utf8_lossy(&answered).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main(
            "plaintext = true\n",
            "plaintext = true\nmax_connections = 3\n",
        )
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        // A request in progress: the connection counts.
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: lianqiao\r\n\r\n")
        .await;
    let got = closed_within(&mut extra, Duration::from_secs(2))
        .await
        .expect("the fourth connection is closed");
    assert!(
        got.is_empty(),
        "and answered nothing: {:?}",
        String::from_utf8_lossy(&got)
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = gw.get("/healthz").await;
    assert_eq!(status, 200, "room again once they go");
}

#[tokio::test]
async fn a_huge_in_list_is_refused_with_the_limit() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let ids: Vec<String> = (0..2000).map(|i| format!("15010300100{i:04}")).collect();
    let (status, body) = gw
        .get(&format!(
            "/v1/grids?division=150103&id[in]={}",
            ids[..200].join(",")
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100"),
        "{body}"
    );
    let (status, body) = gw
        .get(&format!(
            "/v1/grids?division=150103&id[in]={}",
            ids.join(",")
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 4096"),
        "{body}"
    );
}

#[tokio::test]
async fn a_plugin_sleeping_past_its_deadline_gives_back_its_instance() {
    let gw = ConfigDir::new()
        .with_misbehaving("sleepy", "slow", "150199", "")
        .edit_source(
            "sleepy",
            "mode = \"slow\"",
            "mode = \"slow\"\ndelay_ms = 5000",
        )
        .start()
        .await;
    let began = Instant::now();
    let (status, body) = gw.get("/v1/grids?division=150199&limit=1").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "source_timeout");
    let source = gw
        .gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == "sleepy")
        .unwrap()
        .clone();
    // The instance comes back at the deadline, not when the sleep would end.
    let mut in_use = source
        .plugin
        .stats()
        .in_use
        .load(std::sync::atomic::Ordering::Relaxed);
    while in_use != 0 && began.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        in_use = source
            .plugin
            .stats()
            .in_use
            .load(std::sync::atomic::Ordering::Relaxed);
    }
    assert_eq!(in_use, 0);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "freed after {:?}, not after the 5 s sleep",
        began.elapsed()
    );
    // A short sleep inside the deadline is still granted.
    let gw = ConfigDir::new()
        .with_misbehaving("napper", "slow", "150199", "")
        .edit_source(
            "napper",
            "mode = \"slow\"",
            "mode = \"slow\"\ndelay_ms = 50",
        )
        .start()
        .await;
    let (status, body) = gw.get("/v1/grids?division=150199&limit=1").await;
    assert_eq!(status, 200, "{body}");
}
