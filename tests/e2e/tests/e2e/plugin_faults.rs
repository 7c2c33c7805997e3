//! Plugins that trap, loop forever or allocate past their cap fail their
//! own request with the right status and code, within the deadline; the
//! gateway keeps serving.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lianqiao_e2e::ConfigDir;

async fn faulty_gateway() -> lianqiao_e2e::TestGateway {
    ConfigDir::new()
        .with_huimin()
        .with_misbehaving("trapper", "trap", "159901", "")
        .with_misbehaving("spinner", "spin", "159902", "")
        .with_misbehaving("hog", "hog", "159903", "")
        .with_misbehaving("steady", "ok", "159904", "")
        .start()
        .await
}

#[tokio::test]
async fn each_fault_fails_only_its_request_and_the_next_one_succeeds() {
    let gw = faulty_gateway().await;
    // (division, status, code); the misbehaving sources' deadline is 300 ms.
    let cases = [
        ("159901", 502, "plugin_trap"),
        ("159902", 504, "source_timeout"),
        ("159903", 502, "plugin_limit"),
    ];
    for round in 0..2 {
        for (division, status, code) in cases {
            let began = Instant::now();
            let (got, body) = gw.get(&format!("/v1/grids?division={division}")).await;
            let took = began.elapsed();
            assert_eq!(got.as_u16(), status, "round {round}, {division}: {body}");
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["source"].is_string(), "{body}");
            assert!(
                took < Duration::from_secs(2),
                "{division} took {took:?}, past its deadline"
            );

            let (ok, body) = gw.get("/v1/grids?division=150103001&limit=3").await;
            assert_eq!(ok, 200, "after {division}: {body}");
            assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
        }
    }
    let (ok, body) = gw.get("/v1/grids?division=159904").await;
    assert_eq!(ok, 200, "{body}");
    assert_eq!(body["data"][0]["name"], "测试网格");
}

/// The on-demand allocator (for valgrind and small address spaces) keeps
/// every guarantee the pool gives: caps, deadlines, traps, isolation.
#[tokio::test]
async fn the_on_demand_allocator_enforces_the_same_limits() {
    let gw = ConfigDir::new()
        .edit_main("[plugins]\n", "[plugins]\nallocator = \"on-demand\"\n")
        .with_huimin()
        .with_misbehaving("trapper", "trap", "159901", "")
        .with_misbehaving("spinner", "spin", "159902", "")
        .with_misbehaving("hog", "hog", "159903", "")
        .start()
        .await;
    for (division, status, code) in [
        ("159901", 502, "plugin_trap"),
        ("159902", 504, "source_timeout"),
        ("159903", 502, "plugin_limit"),
    ] {
        let (got, body) = gw.get(&format!("/v1/grids?division={division}")).await;
        assert_eq!(got.as_u16(), status, "{division}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let (_, body) = gw.get("/v1/grids?division=159903").await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory cap of 16 MiB"), "{message}");
    let (ok, body) = gw.get("/v1/grids?division=150103001&limit=3").await;
    assert_eq!(ok, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn memory_is_reported_with_the_cap() {
    let gw = faulty_gateway().await;
    let (_, body) = gw.get("/v1/grids?division=159903").await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("memory cap of 16 MiB"), "{message}");
    assert_eq!(body["sources"][0]["status"], "error");
    // Metrics: the hog hit its cap; a well-behaved source used some memory.
    assert_eq!(gw.get("/v1/grids?division=159904").await.0, 200);
    let (_, metrics) = gw.admin_text("/metrics").await;
    assert!(
        metrics.contains("lianqiao_plugin_memory_limit_hits_total{source=\"hog\"} 1"),
        "{metrics}"
    );
    let steady: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lianqiao_plugin_memory_peak_bytes{source=\"steady\"} "))
        .and_then(|v| v.parse().ok())
        .expect("a memory gauge for steady");
    assert!(steady > 0 && steady <= 16 << 20, "{steady}");
    assert!(
        metrics.contains("lianqiao_audit_records_total "),
        "{metrics}"
    );
    assert!(
        metrics.contains("lianqiao_audit_queue_depth 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_plugin_whose_sha256_differs_from_the_pin_is_refused() {
    let pin = "0".repeat(64);
    let errors = ConfigDir::new()
        .with_misbehaving("pinned", "ok", "159904", "")
        .source(
            "pinned",
            &format!(
                "name = \"pinned\"\ncoverage = [\"159904\"]\n[plugin]\npath = {:?}\nsha256 = \"{pin}\"\n[plugin.settings]\nmode = \"ok\"\n",
                lianqiao_e2e::plugin_dir().join("misbehave.wasm").display().to_string()
            ),
        )
        .build()
        .await
        .expect_err("a wrong pin must be refused");
    let text = errors.to_string();
    assert!(text.contains("pinned.toml"), "{text}");
    assert!(text.contains("but the config pins 0000"), "{text}");
}

#[tokio::test]
async fn past_its_concurrency_limit_the_gateway_answers_503_at_once() {
    let dir = ConfigDir::new().with_misbehaving("slow", "slow", "159905", "");
    let source = dir.dir.path().join("sources/slow.toml");
    let text = std::fs::read_to_string(&source)
        .unwrap()
        .replace("mode = \"slow\"", "mode = \"slow\"\ndelay_ms = 400");
    std::fs::write(
        &source,
        text.replace("deadline_ms = 300", "deadline_ms = 2000"),
    )
    .unwrap();
    let main = dir.main_file();
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("[server]", "[server]\nmax_concurrent_requests = 1");
    std::fs::write(&main, text).unwrap();
    let gw = std::sync::Arc::new(dir.start().await);

    let slow = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.get("/v1/grids?division=159905").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    let (status, body) = gw.get("/v1/grids?division=159905").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(
        began.elapsed() < Duration::from_millis(200),
        "refused at once, not queued"
    );
    assert_eq!(gw.get("/healthz").await.0, 200, "liveness is never refused");
    let (status, _) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        gw.get("/v1/grids?division=159905").await.0,
        200,
        "capacity is back"
    );
}

/// A gateway whose source `name` (covering `code`) takes 300 ms a call,
/// one call at a time.
async fn one_slot_of_300_ms(name: &str, code: &str) -> std::sync::Arc<lianqiao_e2e::TestGateway> {
    let gw = ConfigDir::new()
        .with_misbehaving(name, "slow", code, "")
        .edit_source(name, "mode = \"slow\"", "mode = \"slow\"\ndelay_ms = 300")
        .edit_source(
            name,
            "deadline_ms = 300",
            "deadline_ms = 2000\nmax_concurrent = 1",
        )
        .start()
        .await;
    std::sync::Arc::new(gw)
}

#[tokio::test]
async fn a_source_takes_at_most_its_concurrent_calls() {
    let gw = one_slot_of_300_ms("narrow", "159906").await;
    let began = Instant::now();
    // Three different calls (identical ones would share one plugin call).
    let calls: Vec<_> = (1..=3)
        .map(|limit| {
            let gw = gw.clone();
            tokio::spawn(async move {
                gw.get(&format!("/v1/grids?division=159906&limit={limit}"))
                    .await
                    .0
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    // One at a time: three 300 ms calls take at least 900 ms.
    assert!(
        began.elapsed() >= Duration::from_millis(880),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn identical_calls_in_flight_share_one_plugin_call() {
    let gw = one_slot_of_300_ms("shared", "159907").await;
    let source = gw
        .gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == "shared")
        .expect("the source")
        .clone();
    let plugin = &source.plugin;
    let before = plugin.stats().instantiations.load(Ordering::Relaxed);
    let began = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.get("/v1/grids?division=159907").await })
        })
        .collect();
    let mut bodies = Vec::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        bodies.push(body["data"].clone());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer for all"
    );
    // With one slot, eight separate 300 ms calls would take 2.4 s.
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "{:?}",
        began.elapsed()
    );
    let calls = plugin.stats().instantiations.load(Ordering::Relaxed) - before;
    assert!(calls <= 2, "{calls} plugin calls for 8 identical requests");
    // A different call is not shared.
    let (status, _) = gw.get("/v1/grids?division=159907&limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(
        plugin.stats().instantiations.load(Ordering::Relaxed) - before,
        calls + 1
    );
}

#[tokio::test]
async fn a_plugin_breaking_the_row_limit_or_the_scope_fails_its_source_and_leaks_nothing() {
    let gw = ConfigDir::new()
        .with_misbehaving("flooder", "flood", "159905", "")
        .with_misbehaving("leaker", "leak", "159906", "")
        .start()
        .await;
    let (status, body) = gw.get("/v1/grids?division=159905&limit=3").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "source_error", "{body}");
    // The gateway asks for the page (3), the plugin sent 8.
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("8 rows for a limit of 3"),
        "{body}"
    );
    let (status, body) = gw.get("/v1/grids?division=159906&limit=3").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside the query's scope"),
        "{body}"
    );
    assert!(
        !body.to_string().contains("\"data\""),
        "no row leaves: {body}"
    );
}

/// Contract 0.4: a row buffer that breaks the layout (more rows announced
/// than cells, an undefined tag) fails its call as a contract violation;
/// nothing of it is read out, and the next call works.
#[tokio::test]
async fn a_malformed_row_buffer_fails_its_call_and_nothing_of_it_leaves() {
    let gw = ConfigDir::new()
        .with_misbehaving("garbled", "badbuffer", "159907", "")
        .with_misbehaving("fine", "ok", "159908", "")
        .start()
        .await;
    let (status, body) = gw.get("/v1/grids?division=159907&limit=3").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "source_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("a malformed row buffer"), "{body}");
    assert!(
        !body.to_string().contains("\"data\""),
        "no row leaves: {body}"
    );
    let (status, body) = gw.get("/v1/grids?division=159908&limit=3").await;
    assert_eq!(status, 200, "{body}");
}

/// A plugin that keeps what each call saw in a global and answers the next
/// caller with it gets nowhere: every call starts from the component's
/// initial state, so one caller's scope never reaches another's answer.
#[tokio::test]
async fn what_one_call_saw_never_reaches_the_next() {
    let gw = ConfigDir::new()
        .with_misbehaving("carrier", "carry", "1599", "")
        .start()
        .await;
    for (division, earlier) in [("159909", None), ("159910", Some("159909"))] {
        let (status, body) = gw
            .get(&format!("/v1/grids?division={division}&limit=3"))
            .await;
        assert_eq!(status, 200, "{body}");
        let name = body["data"][0]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(name, "seen before: []", "{division}: {body}");
        if let Some(earlier) = earlier {
            assert!(!body.to_string().contains(earlier), "{body}");
        }
    }
}

/// A plugin built for contract 0.1 (no `command` export, no SDK) still
/// loads and serves reads; the gateway sends it no writes.
#[tokio::test]
async fn a_plugin_built_for_contract_0_1_loads_and_serves_reads() {
    let text = format!(
        "name = \"legacy\"\ncoverage = [\"159906\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 300\n",
        lianqiao_e2e::plugin_dir()
            .join("legacy_v1.wasm")
            .display()
            .to_string()
    );
    let gw = ConfigDir::new().source("legacy", &text).start().await;
    let legacy = gw
        .gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == "legacy")
        .expect("the 0.1 plugin loaded");
    assert_eq!(legacy.plugin.manifest().sdk_version, "0.1.0");
    assert!(!legacy.plugin.takes_commands());
    let (status, body) = gw.get("/v1/grids?division=159906").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["一网格", "二网格"], "{body}");
    // No writes go to it.
    let url = format!("http://{}/v1/cases", gw.addr);
    let auth = format!(
        "Bearer {}",
        lianqiao_e2e::token("grid", "15990600100101", &[])
    );
    let (status, answer) = lianqiao_e2e::http_send(
        "POST",
        &url,
        &[
            ("authorization", &auth),
            ("x-purpose", "case-handling"),
            ("content-type", "application/json"),
            ("idempotency-key", "legacy-1"),
        ],
        r#"{"division":"15990600100101","title":"t","category":"c"}"#,
    )
    .await
    .expect("POST");
    assert_eq!(status, 404, "{answer}");
    assert!(answer.contains("no source takes case writes"), "{answer}");
}

/// A plugin built for contract 0.2 (counts without record digests) loads,
/// takes commands, and its members' protected counts are keyed on the
/// records all the same: the gateway reads their ids instead of asking
/// its `aggregate`, so a table cell and the same cell asked through a
/// filter publish one value.
#[tokio::test]
async fn a_plugin_built_for_contract_0_2_loads_and_its_protected_counts_name_their_records() {
    let text = format!(
        "name = \"legacy2\"\ncoverage = [\"159907\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 300\n",
        lianqiao_e2e::plugin_dir()
            .join("legacy_v2.wasm")
            .display()
            .to_string()
    );
    let gw = ConfigDir::new().source("legacy2", &text).start().await;
    let legacy = gw
        .gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == "legacy2")
        .expect("the 0.2 plugin loaded");
    assert_eq!(legacy.plugin.manifest().sdk_version, "0.2.0");
    assert_eq!(legacy.plugin.contract_version(), "0.2");
    assert!(legacy.plugin.takes_commands());
    assert!(!legacy.plugin.counts_records());
    // Exact counts (a caller who may list the members) use its aggregate.
    let (status, body) = gw
        .get("/v1/stats?metric=members.count&division=159907&by=gender")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "exact", "{body}");
    let male = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "male")
        .and_then(|c| c["value"].as_i64());
    assert_eq!(male, Some(8), "{body}");
    // Protected counts: the same records, however asked, one value.
    let city = lianqiao_e2e::token("city", "1599", &[]);
    let mut published = Vec::new();
    for q in [
        "/v1/stats?metric=members.count&division=159907&by=gender",
        "/v1/stats?metric=members.count&division=159907&gender=male",
        "/v1/stats?metric=members.count&division=159907&gender[in]=male",
        "/v1/stats?metric=members.count&division=159907&gender=male&ethnicity[in]=汉族,蒙古族,回族",
        "/v1/stats?metric=members.count&division=159907001&group_by=community&gender=male",
    ] {
        let (status, body) = gw.get_as(&city, "statistics", q).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(body["policy"]["counts"], "protected", "{q}: {body}");
        let value = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == "male" || c["key"].is_null())
            .map(|c| c["value"].clone());
        published.push((q, value));
    }
    let first = published[0].1.clone();
    assert!(first.as_ref().is_some_and(|v| v.is_i64()), "{published:?}");
    for (q, v) in &published {
        assert_eq!(
            *v, first,
            "{q} counts the same eight members: {published:?}"
        );
    }
}

/// A plugin built for contract 0.3 (rows as a value per cell, counts with
/// record digests) keeps loading after 0.4: it is called through 0.3's
/// bindings, its pages are read as values and its counts name their
/// records.
#[tokio::test]
async fn a_plugin_built_for_contract_0_3_loads_and_serves_rows_and_counts() {
    let text = format!(
        "name = \"legacy3\"\ncoverage = [\"159911\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 300\n",
        lianqiao_e2e::plugin_dir()
            .join("legacy_v3.wasm")
            .display()
            .to_string()
    );
    let gw = ConfigDir::new().source("legacy3", &text).start().await;
    let legacy = gw
        .gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == "legacy3")
        .expect("the 0.3 plugin loaded");
    assert_eq!(legacy.plugin.manifest().sdk_version, "0.3.0");
    assert_eq!(legacy.plugin.contract_version(), "0.3");
    assert!(legacy.plugin.counts_records());
    assert!(legacy.plugin.change_feeds().is_empty());
    let (status, body) = gw.get("/v1/members?division=159911&limit=50").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(12), "{body}");
    let (status, body) = gw
        .get("/v1/stats?metric=members.count&division=159911")
        .await;
    assert_eq!(status, 200, "{body}");
}
