//! A real Prometheus (Debian's package) scrapes the admin listener of the
//! real binary: the exposition must parse, the target must be up, and the
//! queried counters must equal the requests made.

use std::time::{Duration, Instant};

use lianqiao_e2e::{ConfigDir, default_auth, free_port};

/// Ask Prometheus's HTTP API for `query`; the result vector.
async fn query(base: &str, query: &str) -> Vec<serde_json::Value> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(query));
    let Ok(body) = lianqiao_e2e::http_get_text(&url).await else {
        return Vec::new();
    };
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_metrics() {
    // `cargo xtask test` installs Prometheus and names it here.
    let binary = match std::env::var("LIANQIAO_TEST_PROMETHEUS") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            eprintln!(
                "\n*** SKIPPED a_real_prometheus_scrapes_the_metrics: LIANQIAO_TEST_PROMETHEUS is not set. \
                 `cargo xtask test` installs Prometheus (apt-get install prometheus) and sets it; \
                 locally export LIANQIAO_TEST_PROMETHEUS=prometheus to run this test. ***\n"
            );
            return;
        }
    };
    let dir = ConfigDir::new().with_huimin();
    let gateway = dir.spawn_binary(&[("RUST_LOG", "warn")]).await;
    let api = format!("http://127.0.0.1:{}", gateway.port);
    for _ in 0..3 {
        let (status, body) = lianqiao_e2e::http_get_with(
            &format!("{api}/v1/grids?division=150103001&limit=2"),
            &[
                ("Authorization", default_auth()),
                ("X-Purpose", "case-handling"),
            ],
        )
        .await
        .expect("the gateway answers");
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = lianqiao_e2e::http_get_with(&format!("{api}/v1/grids?division=150103"), &[])
        .await
        .expect("the gateway answers");
    assert_eq!(status, 401);

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: lianqiao\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            gateway.admin
        ),
    )
    .unwrap();
    let web = free_port();
    let mut prometheus = std::process::Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            work.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(work.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("LIANQIAO_TEST_PROMETHEUS={binary} does not start: {e}"));
    let base = format!("http://127.0.0.1:{web}");

    let began = Instant::now();
    let (targets, ok) = loop {
        let targets = lianqiao_e2e::http_get_text(&format!("{base}/api/v1/targets"))
            .await
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        let ok = query(
            &base,
            "lianqiao_requests_total{route=\"/v1/{resource}\",status=\"200\"}",
        )
        .await;
        if !ok.is_empty() {
            break (targets, ok);
        }
        if began.elapsed() > Duration::from_secs(60) {
            let _ = prometheus.kill();
            panic!(
                "Prometheus stored no lianqiao_requests_total within 60 s; targets: {targets}\n{}",
                std::fs::read_to_string(work.path().join("prometheus.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{targets}");
    assert_eq!(target["lastError"], "", "the exposition parses: {targets}");
    assert_eq!(ok[0]["value"][1], "3", "{ok:?}");
    let refused = query(
        &base,
        "lianqiao_policy_denials_total{kind=\"unauthenticated\"}",
    )
    .await;
    assert_eq!(refused[0]["value"][1], "1", "{refused:?}");
    // Histograms arrive as histograms: a quantile can be computed.
    let p50 = query(
        &base,
        "histogram_quantile(0.5, sum by (le) (lianqiao_request_duration_seconds_bucket))",
    )
    .await;
    let p50: f64 = p50[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(p50 > 0.0 && p50 < 10.0, "{p50}");
    let up = query(&base, "up{job=\"lianqiao\"}").await;
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    drop(gateway);
}
