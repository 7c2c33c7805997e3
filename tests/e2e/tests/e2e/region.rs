//! The whole region: the generated 103 districts (small data each) in three
//! schemas, the party-link system over all of them and four city
//! platforms — 108 sources behind one gateway, as the product is for.
//!
//! What must hold at that scale: every source up at idle; region clients
//! under load get whole answers (no source fails because another is
//! busy); a region page reads about what it returns and its cursor stays
//! compact; walking the region by cursor returns every grid once; a slow
//! district turns a region answer partial, naming it, by the request's
//! deadline. (`cargo xtask bench region` measures the same in release.)

use std::collections::HashSet;
use std::time::{Duration, Instant};

use lianqiao_e2e::{ConfigDir, RegionUpstreams, TestGateway, token};
use serde_json::Value;

const DISTRICTS: usize = 103;

/// Health checks on (the test config turns them off), every source's
/// instance share small, as a region's would be.
fn region_config() -> ConfigDir {
    ConfigDir::new().edit_main("health_interval_s = 0", "health_interval_s = 30")
}

async fn all_up(gw: &TestGateway, sources: usize) -> Value {
    let began = Instant::now();
    loop {
        let (_, body) = gw.get("/readyz").await;
        let up = body["summary"]["up"].as_u64().unwrap_or(0) as usize;
        if up == sources || began.elapsed() > Duration::from_secs(60) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn names(body: &Value) -> Vec<(String, String)> {
    body["sources"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_string(),
                        s["status"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_of_103_districts_answers_whole_under_load_and_walks_exactly() {
    let up = RegionUpstreams::start(DISTRICTS).await;
    // Every fifth Saihan-style district in a PostgreSQL schema of its own,
    // every fifth Jining-style one in a MariaDB database (when the URLs
    // are given: `.ci/run` gives them), the rest in SQLite files.
    let servers = |var: &str| {
        lianqiao_e2e::database_url(var, "a_region_of_103_districts… on server databases")
            .map(|url| (url, 5))
    };
    let (postgres, mysql) = (
        servers("LIANQIAO_TEST_POSTGRES_URL"),
        servers("LIANQIAO_TEST_MYSQL_URL"),
    );
    let upstreams = lianqiao_sim::generate::region_config::Upstreams {
        party_link: up.party_link.to_string(),
        city_platforms: up
            .city_platforms
            .iter()
            .map(|(c, a)| (c.clone(), a.to_string()))
            .collect(),
    };
    let config = region_config();
    let out = config.dir.path().join("region");
    let (dir, written) = config
        .with_region_at(
            upstreams,
            DISTRICTS,
            lianqiao_sim::generate::region::Scale::Small,
            out,
            false,
            postgres,
            mysql,
        )
        .await;
    let on_servers = written
        .districts
        .iter()
        .filter(|d| !d.3.starts_with("sqlite:"))
        .count();
    println!("{on_servers} of {DISTRICTS} districts on PostgreSQL or MariaDB");
    let sources = DISTRICTS + 1 + up.city_platforms.len();
    let gw = dir.start().await;

    // Idle: every source up, none down (108 health checks at start).
    let ready = all_up(&gw, sources).await;
    assert_eq!(ready["summary"]["sources"], sources, "{}", ready["summary"]);
    assert_eq!(ready["summary"]["up"], sources, "{}", ready["summary"]);
    assert_eq!(ready["summary"]["down"], 0, "{}", ready["summary"]);
    assert_eq!(
        ready["summary"]["cities"].as_array().map(Vec::len),
        Some(12 + 1)
    );

    let region = token("region", "15", &[]);
    let ask = |path: String| {
        let gw = &gw;
        let region = region.clone();
        async move {
            let (status, body) = gw.get_as(&region, "case-handling", &path).await;
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };

    // One region page reads about what it returns: at most 2 × 50 rows
    // plus one per source asked.
    let page = ask("/v1/grids?division=15&limit=50".into()).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(50));
    let read: u64 = page["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rows"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        read <= 2 * 50 + sources as u64,
        "a page of 50 read {read} rows: {}",
        page["sources"]
    );

    // Walk every grid of the region by cursor: each once, the cursor small.
    let mut seen = HashSet::new();
    let mut rows = 0;
    let mut longest = 0;
    let mut path = "/v1/grids?division=15&limit=500&fields=name".to_string();
    loop {
        let body = ask(path.clone()).await;
        assert_eq!(body["partial"], false, "{}", body["sources"]);
        for row in body["data"].as_array().unwrap() {
            rows += 1;
            seen.insert(row["id"].as_str().unwrap().to_string());
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => {
                longest = longest.max(c.len());
                path = format!("/v1/grids?division=15&limit=500&fields=name&cursor={c}");
            }
            None => break,
        }
    }
    assert_eq!(rows, written.grids, "every grid of the region");
    assert_eq!(seen.len(), written.grids, "each once");
    assert!(longest < 2048, "the cursor stays under 2 KB: {longest}");

    // 16 region clients at once, each a different mix of lists, cursor
    // walks and statistics: no answer partial while every source is healthy.
    let clients = (0..16).map(|c| {
        let gw = &gw;
        let region = region.clone();
        let city = lianqiao_sim::generate::region::CITIES[c % 12].0[..4].to_string();
        async move {
            let mut partial = Vec::new();
            let queries = [
                format!("/v1/grids?division=15&limit={}", 20 + c),
                format!("/v1/grids?division={city}&limit=100"),
                format!("/v1/divisions?division={city}&limit={}", 30 + c),
                "/v1/stats?metric=grids.count&division=15&group_by=district".to_string(),
                format!("/v1/stats?metric=grids.count&division={city}&group_by=street"),
            ];
            for q in queries {
                let mut path = q.clone();
                // Lists: three pages by cursor.
                for _ in 0..3 {
                    let (status, body) = gw.get_as(&region, "case-handling", &path).await;
                    assert_eq!(status, 200, "{path}: {body}");
                    if body["partial"] != false {
                        partial.push((path.clone(), names(&body)));
                    }
                    match body["page"]["next_cursor"].as_str() {
                        Some(cur) => path = format!("{q}&cursor={cur}"),
                        None => break,
                    }
                }
            }
            partial
        }
    });
    let partial: Vec<_> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        partial.is_empty(),
        "partial answers under load: {partial:?}"
    );
    // And still nothing down (a busy share is not a failing source).
    let (_, ready) = gw.get("/readyz").await;
    assert_eq!(ready["summary"]["down"], 0, "{}", ready["summary"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_district_makes_region_answers_partial_naming_it_by_the_deadline() {
    let up = RegionUpstreams::start(DISTRICTS).await;
    let (dir, _) = region_config()
        .edit_main(
            "plaintext = true\n",
            // Slots enough that the slow district holding one does not
            // queue the other 102 past the deadline (this tests the
            // deadline, not the slots).
            "plaintext = true\nrequest_deadline_ms = 1000\nmax_wide_source_calls = 16\n",
        )
        .with_region(&up, DISTRICTS)
        .await;
    // Alxa Left banner (阿拉善左旗, 152921) is down: it traps.
    let trapping = format!(
        "name = \"district-152921\"\ncoverage = [\"152921\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 2000\n\n[plugin.settings]\nmode = \"trap\"\n",
        lianqiao_e2e::plugin_dir()
            .join("misbehave.wasm")
            .display()
            .to_string()
    );
    let dir = dir.source("district-152921", &trapping);
    // The Ejin banner (额济纳旗, 152923) answers in four seconds.
    let slow = format!(
        "name = \"district-152923\"\ncoverage = [\"152923\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 8000\n\n[plugin.settings]\nmode = \"slow\"\ndelay_ms = 4000\n",
        lianqiao_e2e::plugin_dir()
            .join("misbehave.wasm")
            .display()
            .to_string()
    );
    let gw = dir.source("district-152923", &slow).start().await;
    // A hundred sources on /readyz: the one that needs attention first.
    let began = Instant::now();
    let ready = loop {
        let (_, body) = gw.get("/readyz").await;
        let checked = body["summary"]["unchecked"] == 0;
        if (checked && body["summary"]["down"] == 1) || began.elapsed() > Duration::from_secs(90) {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready["summary"]["down"], 1, "{}", ready["summary"]);
    assert_eq!(
        ready["sources"][0]["name"], "district-152921",
        "the down source first"
    );
    let cities: Vec<&str> = ready["sources"]
        .as_array()
        .unwrap()
        .iter()
        .skip_while(|s| s["state"] != "up" || s["breaker"] != "closed")
        .filter_map(|s| s["city"].as_str())
        .collect();
    let mut sorted = cities.clone();
    sorted.sort();
    assert_eq!(cities, sorted, "then grouped by city");
    let region = token("region", "15", &[]);
    for path in [
        "/v1/stats?metric=grids.count&division=15&group_by=district",
        "/v1/grids?division=1529&limit=500",
    ] {
        let began = Instant::now();
        let (status, body) = gw.get_as(&region, "case-handling", path).await;
        let took = began.elapsed();
        assert_eq!(status, 200, "{path}: {body}");
        // The deadline plus a debug build's slack, far from the 4 s.
        assert!(
            took < Duration::from_millis(1000 + 1500),
            "{path} took {took:?}"
        );
        assert_eq!(body["partial"], true, "{path}: {}", body["sources"]);
        let slow = names(&body)
            .into_iter()
            .find(|(n, _)| n == "district-152923");
        assert_eq!(
            slow.as_ref().map(|(_, s)| s.as_str()),
            Some("timeout"),
            "{path} names the slow district: {}",
            body["sources"]
        );
        let others_ok = names(&body)
            .iter()
            .filter(|(n, _)| n != "district-152923" && n != "district-152921")
            .all(|(_, s)| s == "ok");
        assert!(others_ok, "{path}: {}", body["sources"]);
    }
}

/// The region's configuration through the operator's commands: `check`
/// loads all 108 sources, `source show` prints a district's file laid over
/// its schema's template.
#[tokio::test]
async fn the_region_config_checks_and_a_district_shows_its_template() {
    let up = RegionUpstreams::start(DISTRICTS).await;
    let (dir, _) = ConfigDir::new().with_region(&up, DISTRICTS).await;
    let lianqiao = lianqiao_e2e::workspace_root().join("target/debug/lianqiao");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&lianqiao)
            .args(args)
            .arg("--config")
            .arg(dir.main_file())
            .env("RUST_LOG", "error")
            .output()
            .expect("run lianqiao");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = run(&["check"]);
    assert!(ok, "{text}");
    assert!(text.contains("OK, 108 source(s)"), "{text}");
    let (ok, text) = run(&["source", "show", "district-150103"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("laid over") && text.contains("district-saihan.toml"),
        "{text}"
    );
    assert!(text.contains("coverage = [\"150103\"]"), "{text}");
    assert!(
        text.contains("[plugin.settings.entities.grids]"),
        "the template's mapping: {text}"
    );
    let (ok, text) = run(&["source", "show", "no-such-district"]);
    assert!(
        !ok && text.contains("no source `no-such-district`"),
        "{text}"
    );
}
