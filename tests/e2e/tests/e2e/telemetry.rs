//! Metrics on the admin listener, per route and per source.

use lianqiao_e2e::ConfigDir;

#[tokio::test]
async fn metrics_count_requests_and_source_outcomes() {
    let gw = ConfigDir::new()
        .with_huimin()
        .with_misbehaving("trapper", "trap", "159901", "")
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(gw.get("/v1/grids?division=150103001&limit=2").await.0, 200);
    }
    assert_eq!(gw.get("/v1/grids?division=159901").await.0, 502);
    assert_eq!(gw.get("/v1/grids?division=150103&colour=red").await.0, 400);

    let (status, text) = gw.admin_text("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("lianqiao_requests_total{route=\"/v1/{resource}\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("lianqiao_requests_total{route=\"/v1/{resource}\",status=\"502\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lianqiao_requests_total{route=\"/v1/{resource}\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lianqiao_source_calls_total{source=\"huimin\",status=\"ok\",code=\"\"} 3"),
        "{text}"
    );
    assert!(text.contains("lianqiao_source_calls_total{source=\"trapper\",status=\"error\",code=\"plugin_trap\"} 1"), "{text}");
    assert!(
        text.contains("lianqiao_source_duration_seconds_count{source=\"huimin\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("lianqiao_source_breaker_open{source=\"trapper\",state=\"closed\"} 0"),
        "{text}"
    );
    // Three calls plus the `describe` at load.
    assert!(
        text.contains("lianqiao_plugin_instantiations_total{source=\"huimin\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("lianqiao_plugin_instances_in_use{source=\"huimin\"} 0"),
        "{text}"
    );
    // Nothing a caller sent becomes a label.
    assert!(
        !text.contains("colour") && !text.contains("150103001"),
        "{text}"
    );
}

#[tokio::test]
async fn status_shows_each_sources_recent_calls() {
    let gw = ConfigDir::new()
        .with_huimin()
        .with_misbehaving("trapper", "trap", "159901", "")
        .start()
        .await;
    for _ in 0..4 {
        gw.get("/v1/grids?division=150103001&limit=2").await;
    }
    gw.get("/v1/grids?division=159901").await;
    let (_, ready) = gw.get("/readyz").await;
    let table = lianqiao_gateway::telemetry::status_table(&ready);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let huimin: Vec<String> = line("huimin")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(&huimin[1..5], ["loaded", "closed", "4", "0"], "{table}");
    let trapper: Vec<String> = line("trapper")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(&trapper[3..5], ["1", "1"], "{table}");
}
