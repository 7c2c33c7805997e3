//! What operators see of a serving gateway: its metric families, read
//! from the state at the instant asked (`/metrics`, OTLP), and the loop
//! that exports them. Above `state`; the encoders and formats it uses are
//! `telemetry`'s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use prost::Message;

use crate::state::{Gateway, Live};
use crate::telemetry::metrics::{AuditState, Family, SourceState};
use crate::telemetry::{otlp_http, otlp_metrics};

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

/// Export the current gateway's metrics every interval while an endpoint
/// is configured (a reload may set or clear it).
pub async fn export_metrics(live: Arc<Live>) {
    let start = SystemTime::now();
    let client = otlp_http::client();
    let mut failing = false;
    loop {
        let gateway = live.current();
        let telemetry = &gateway.config.telemetry;
        let interval = Duration::from_secs(telemetry.otlp_metrics_interval_s.max(1));
        if telemetry.otlp_metrics_endpoint.is_empty() || !gateway.metrics.enabled() {
            drop(gateway);
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let endpoint = telemetry.otlp_metrics_endpoint.clone();
        let body = otlp_metrics::encode(
            &families(&gateway),
            &telemetry.service_name,
            start,
            SystemTime::now(),
        )
        .encode_to_vec();
        drop(gateway);
        match otlp_http::post(&client, &endpoint, body).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(%endpoint, "OTLP metrics export works again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(%endpoint, error = %e, "OTLP metrics export failed; retrying every interval");
            }
            Err(_) => {}
        }
        tokio::time::sleep(interval).await;
    }
}
