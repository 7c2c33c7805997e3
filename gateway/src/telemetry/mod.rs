//! Telemetry: RED metrics per route and per source (Prometheus text on the
//! admin listener, OTLP to a collector), traces over OTLP, one access-log
//! line per request, and the sources' table for `lianqiao status`. What
//! reads a serving gateway's state to report it is `crate::observe`.

pub mod logline;
pub mod logwriter;
pub mod metrics;
pub mod otel;
pub mod otlp_http;
pub mod otlp_metrics;
pub mod otlp_traces;
pub mod spans;

/// `/readyz` as the table `lianqiao status` prints: one line per source
/// with its state, breaker and how its last calls went.
pub fn status_table(ready: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:<10} {:>6} {:>7} {:>10}  {}\n",
        "SOURCE", "STATE", "BREAKER", "CALLS", "FAILED", "MEDIAN ms", "COVERAGE"
    );
    for s in ready["sources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let recent = &s["recent"];
        let coverage: Vec<&str> = s["coverage"]
            .as_array()
            .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let count = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "{:<16} {:<10} {:<10} {:>6} {:>7} {:>10}  {}\n",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["breaker"].as_str().unwrap_or("?"),
            count(&recent["calls"]),
            count(&recent["failures"]),
            recent["median_latency_ms"]
                .as_f64()
                .map_or("-".to_string(), |n| format!("{n:.1}")),
            coverage.join(",")
        ));
    }
    out
}

/// Now, as `2026-11-22T06:42:58.123Z`.
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    let now = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = lianqiao_rows::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}
