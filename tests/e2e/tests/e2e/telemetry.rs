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
    assert_eq!(&huimin[1..5], ["unchecked", "closed", "4", "0"], "{table}");
    let trapper: Vec<String> = line("trapper")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(&trapper[3..5], ["1", "1"], "{table}");
}

#[tokio::test]
async fn health_checks_show_each_source_in_readyz_and_metrics_without_counting_as_traffic() {
    let gw = ConfigDir::new()
        .with_huimin()
        .with_misbehaving("trapper", "trap", "159901", "")
        .edit_main("health_interval_s = 0", "health_interval_s = 1")
        .start()
        .await;
    // The first checks run at start; wait for both to land.
    let began = std::time::Instant::now();
    let ready = loop {
        let (status, ready) = gw.get("/readyz").await;
        assert_eq!(status, 200, "{ready}");
        let states: Vec<&str> = ready["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        if !states.contains(&"unchecked") {
            break ready;
        }
        assert!(began.elapsed().as_secs() < 20, "no health checks: {ready}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let source = |name: &str| {
        ready["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(source("huimin")["state"], "up", "{ready}");
    assert!(source("huimin")["health"]["error"].is_null(), "{ready}");
    assert_eq!(source("trapper")["state"], "down", "{ready}");
    assert!(
        source("trapper")["health"]["error"]
            .as_str()
            .unwrap()
            .starts_with("plugin_trap"),
        "{ready}"
    );
    assert_eq!(ready["status"], "degraded", "a source is down: {ready}");

    let (_, text) = gw.admin_text("/metrics").await;
    assert!(
        text.contains("lianqiao_source_up{source=\"huimin\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("lianqiao_source_up{source=\"trapper\"} 0"),
        "{text}"
    );
    // Checks are not callers' traffic: no source calls counted, the
    // trapping source's breaker still closed.
    assert!(!text.contains("lianqiao_source_calls_total{"), "{text}");
    assert!(
        text.contains("lianqiao_source_breaker_open{source=\"trapper\",state=\"closed\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn audit_lag_and_records_are_measured() {
    let gw = ConfigDir::new().with_huimin().start().await;
    for _ in 0..4 {
        assert_eq!(gw.get("/v1/grids?division=150103001&limit=2").await.0, 200);
    }
    let (_, text) = gw.admin_text("/metrics").await;
    // Every response waits for its record: all four are committed.
    assert!(text.contains("lianqiao_audit_records_total 4"), "{text}");
    assert!(
        text.contains("lianqiao_audit_lag_seconds_count 4"),
        "{text}"
    );
    assert!(text.contains("lianqiao_audit_queue_depth 0"), "{text}");
    assert!(text.contains("lianqiao_audit_backlog_records 0"), "{text}");
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lianqiao_audit_lag_seconds_sum "))
        .and_then(|v| v.parse().ok())
        .expect("a lag sum");
    assert!(sum > 0.0 && sum < 10.0, "{sum}");
}

#[tokio::test]
async fn metrics_can_be_turned_off_and_say_so() {
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main(
            "[telemetry]\n",
            "[telemetry]\nmetrics = false\naccess_log = false\n",
        )
        .start()
        .await;
    assert_eq!(gw.get("/v1/grids?division=150103001&limit=2").await.0, 200);
    let (status, text) = gw.admin_text("/metrics").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("telemetry.metrics"), "{text}");
}

#[tokio::test]
async fn metrics_are_exported_over_otlp() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use prost::Message;
    use std::sync::{Arc, Mutex};

    let received: Arc<Mutex<Vec<ExportMetricsServiceRequest>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                match ExportMetricsServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.lock().unwrap().push(request);
                        axum::http::StatusCode::OK
                    }
                    Err(_) => axum::http::StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = receiver.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(receiver, app).await });

    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main(
            "[telemetry]\n",
            &format!(
                "[telemetry]\notlp_metrics_endpoint = \"http://{otlp}/v1/metrics\"\notlp_metrics_interval_s = 1\nservice_name = \"lianqiao-e2e\"\n"
            ),
        )
        .start()
        .await;
    for _ in 0..2 {
        assert_eq!(gw.get("/v1/grids?division=150103001&limit=2").await.0, 200);
    }
    // The next export after the requests carries them.
    let began = std::time::Instant::now();
    let requests_200 = loop {
        let value = received.lock().unwrap().iter().rev().find_map(|export| {
            let resource = &export.resource_metrics[0];
            let service = resource.resource.as_ref()?.attributes.first()?;
            assert_eq!(service.key, "service.name");
            let metric = resource.scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == "lianqiao_requests_total")?;
            let Some(metric::Data::Sum(sum)) = &metric.data else {
                panic!("requests are a sum: {metric:?}")
            };
            sum.data_points.iter().find_map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => Some(v),
                _ => None,
            })
        });
        if let Some(v) = value.filter(|v| *v >= 2.0) {
            break v;
        }
        assert!(
            began.elapsed().as_secs() < 20,
            "no export with the requests"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(requests_200, 2.0);
    let exports = received.lock().unwrap();
    let names: Vec<&str> = exports.last().unwrap().resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for name in [
        "lianqiao_request_duration_seconds",
        "lianqiao_source_duration_seconds",
        "lianqiao_plugin_memory_peak_bytes",
        "lianqiao_audit_lag_seconds",
        "lianqiao_policy_denials_total",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
}
