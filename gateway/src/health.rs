//! The background health checks: every source of the configuration serving
//! now, every `telemetry.health_interval_s` (the check itself is
//! `sources::health::check`).

use std::sync::Arc;
use std::time::Duration;

use crate::sources::health::check;
use serde_json::{Value, json};

use crate::state::{Gateway, Live};

/// Check every source of the current configuration, then again every
/// `health_interval_s` (0: off; a reload may turn it on). A source whose
/// state changes is logged.
pub async fn run(live: Arc<Live>) {
    loop {
        let gateway = live.current();
        let interval = gateway.config.telemetry.health_interval_s;
        if interval == 0 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let checks = gateway.sources.sources.iter().map(|source| async move {
            let before = source.health.last().map(|c| c.up);
            let now = check(source).await;
            if before != Some(now.up) {
                if now.up {
                    tracing::info!(source = source.name(), "source is up");
                } else {
                    tracing::warn!(
                        source = source.name(),
                        error = now
                            .error
                            .as_ref()
                            .map(crate::redact::operator)
                            .unwrap_or_default(),
                        "source is down"
                    );
                }
            }
        });
        futures::future::join_all(checks).await;
        drop(gateway);
        tokio::time::sleep(Duration::from_secs(interval)).await;
    }
}

/// What `/readyz` answers and the console's sources page shows: each
/// source's health, breaker, recent calls, coverage, plugin digest and
/// limits; the policy's version and the registry's size. In the gateway's
/// words only (it is served without a credential).
pub fn readiness(gateway: &Gateway) -> Value {
    let mut degraded = false;
    let sources: Vec<_> = gateway
        .sources
        .sources
        .iter()
        .map(|s| {
            let manifest = s.plugin.manifest();
            let health = s.health.last();
            let state = match &health {
                None => "unchecked",
                Some(c) if c.up => "up",
                Some(_) => "down",
            };
            degraded |= state == "down" || s.breaker.state() != "closed";
            json!({
                "name": s.name(),
                "state": state,
                "health": health.map(|c| json!({
                    "checked_at": crate::audit::rfc3339(c.at),
                    "latency_ms": (c.latency.as_secs_f64() * 10_000.0).round() / 10.0,
                    // Unauthenticated: the gateway's words only.
                    "error": c.error.as_ref().map(|e| format!(
                        "{}: {}",
                        crate::error::ErrorCode::of(e),
                        crate::error::public_message(e)
                    )),
                })),
                "breaker": s.breaker.state(),
                "recent": gateway.metrics.recent(s.name()).map(|r| json!({
                    "calls": r.calls,
                    "failures": r.failures,
                    "median_latency_ms": (r.median.as_secs_f64() * 10_000.0).round() / 10.0,
                })),
                "coverage": s.config.coverage,
                "plugin": { "name": manifest.name, "version": manifest.version, "sha256": s.plugin.sha256() },
                "entities": manifest.entities.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
                "limits": {
                    "memory_mib": s.plugin.limits().memory_mib,
                    "deadline_ms": s.plugin.limits().deadline.as_millis() as u64,
                    "max_rows": s.plugin.limits().max_rows,
                },
            })
        })
        .collect();
    let policy = &gateway.config.enforcer.engine;
    json!({
        "status": if degraded { "degraded" } else { "ready" },
        "sources": sources,
        "policy": {
            "version": policy.version(),
            "registry_divisions": policy.registry_len(),
            "registry_refreshed_at": policy.registry_fetched().map(|(at, _)| crate::audit::rfc3339(at)),
            "registry_complete": policy.registry_fetched().map(|(_, complete)| complete),
        },
    })
}
