//! Telemetry: RED metrics per route and per source in Prometheus text
//! format, and one access-log line per request.

pub mod metrics;
pub mod otel;

/// `/readyz` as the table `lianqiao status` prints: one line per source
/// with its state, breaker and how its last calls went.
pub fn status_table(ready: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<16} {:<8} {:<10} {:>6} {:>7} {:>10}  {}\n",
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
            "{:<16} {:<8} {:<10} {:>6} {:>7} {:>10}  {}\n",
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
