//! Telemetry: RED metrics per route and per source (Prometheus text on the
//! admin listener, OTLP to a collector), traces over OTLP, one access-log
//! line per request, and the sources' table for `lianqiao status`.

pub mod logline;
pub mod logwriter;
pub mod metrics;
pub mod otel;
pub mod otlp_http;
pub mod otlp_metrics;
pub mod otlp_traces;
pub mod spans;

use std::sync::atomic::Ordering;

use crate::server::Gateway;
use metrics::{AuditState, Family, SourceState};

/// Every metric family of `gateway` now: its counters plus what its
/// sources, plugins and audit writer report at this instant.
pub fn families(gateway: &Gateway) -> Vec<Family> {
    let sources: Vec<SourceState> = gateway
        .sources
        .sources
        .iter()
        .map(|s| {
            let stats = s.plugin.stats();
            SourceState {
                name: s.name().to_string(),
                breaker: s.breaker.state(),
                up: s.health.last().map(|c| c.up),
                instantiations: stats.instantiations.load(Ordering::Relaxed),
                instantiate_seconds: stats.instantiate_nanos.load(Ordering::Relaxed) as f64 / 1e9,
                in_use: stats.in_use.load(Ordering::Relaxed),
                memory_peak_bytes: stats.memory_peak_bytes.load(Ordering::Relaxed),
                memory_limit_hits: stats.memory_limit_hits.load(Ordering::Relaxed),
            }
        })
        .collect();
    let audit = &gateway.audit;
    let audit = AuditState {
        written: audit.written.load(Ordering::Relaxed),
        failed: audit.failed.load(Ordering::Relaxed),
        queue_depth: audit.queue_depth(),
        backlog: audit.backlog.load(Ordering::Relaxed),
        lag: audit.lag.lock().map(|h| h.clone()).unwrap_or_default(),
    };
    gateway.metrics.snapshot(&sources, &audit)
}

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
