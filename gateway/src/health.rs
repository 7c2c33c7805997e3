//! The background health checks: every source of the configuration serving
//! now, every `telemetry.health_interval_s`, spread over the interval (the
//! check itself is `sources::health::check`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::sources::health::check;
use serde_json::{Value, json};

use crate::state::{Gateway, Live};

/// Checks run at once at most: a start-up or a reload checks every source
/// without a burst of a hundred plugin calls.
const AT_ONCE: usize = 16;

/// Check every source of the current configuration at once (at start and
/// when a reload brings new ones), then each again every
/// `health_interval_s` at its own phase of the interval (from a hash of
/// its name), so a hundred sources are checked a few at a time rather
/// than all together (0: off; a reload may turn it on). A source whose
/// state changes is logged.
pub async fn run(live: Arc<Live>) {
    let epoch = Instant::now();
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let gateway = live.current();
        let interval = gateway.config.telemetry.health_interval_s;
        if interval == 0 {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let every = Duration::from_secs(interval);
        let now = Instant::now();
        due.retain(|name, _| gateway.sources.get(name).is_some());
        let mut batch = Vec::new();
        for source in &gateway.sources.sources {
            let next = due.entry(source.name().to_string()).or_insert(now);
            if *next <= now {
                batch.push(source.clone());
                *next = next_at(epoch, now, every, phase(source.name(), every));
            }
        }
        futures::stream::iter(batch)
            .for_each_concurrent(AT_ONCE, |source| async move {
                let before = source.health.last().map(|c| c.up);
                let now = check(&source).await;
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
            })
            .await;
        drop(gateway);
        tokio::time::sleep(TICK).await;
    }
}

/// How often the loop looks for checks that are due.
const TICK: Duration = Duration::from_millis(250);

/// Where in each interval `name` is checked.
fn phase(name: &str, every: Duration) -> Duration {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    let span = every.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % span)
}

/// The first time after `now` that is `phase` into an interval counted
/// from `epoch`.
fn next_at(epoch: Instant, now: Instant, every: Duration, phase: Duration) -> Instant {
    let span = every.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let start = since - since % span;
    let mut at = start + phase.as_nanos();
    if at <= since {
        at += span;
    }
    epoch + Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX))
}

/// What `/readyz` answers and the console's sources page shows: each
/// source's health, breaker, recent calls, coverage, plugin digest and
/// limits; the policy's version and the registry's size. In the gateway's
/// words only (it is served without a credential).
pub fn readiness(gateway: &Gateway) -> Value {
    let mut degraded = false;
    let mut sources: Vec<_> = gateway
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
                "city": city_of(s),
                "limits": {
                    "memory_mib": s.plugin.limits().memory_mib,
                    "deadline_ms": s.plugin.limits().deadline.as_millis() as u64,
                    "max_rows": s.plugin.limits().max_rows,
                    "instances": s.plugin.limits().instances,
                },
            })
        })
        .collect();
    // A hundred sources: the ones that need attention first, then by city.
    let attention = |v: &Value| v["state"] != "up" || v["breaker"] != "closed";
    sources.sort_by(|a, b| {
        (!attention(a), a["city"].as_str(), a["name"].as_str()).cmp(&(
            !attention(b),
            b["city"].as_str(),
            b["name"].as_str(),
        ))
    });
    let mut cities: std::collections::BTreeMap<String, (u32, u32, u32)> = Default::default();
    for s in &sources {
        let c = cities
            .entry(s["city"].as_str().unwrap_or("").to_string())
            .or_default();
        c.0 += 1;
        match s["state"].as_str() {
            Some("up") => c.1 += 1,
            Some("down") => c.2 += 1,
            _ => {}
        }
    }
    let count = |state: &str| sources.iter().filter(|s| s["state"] == state).count();
    let summary = json!({
        "sources": sources.len(),
        "up": count("up"),
        "down": count("down"),
        "unchecked": count("unchecked"),
        "cities": cities
            .into_iter()
            .map(|(city, (n, up, down))| json!({"city": city, "sources": n, "up": up, "down": down}))
            .collect::<Vec<_>>(),
    });
    let policy = &gateway.config.enforcer.engine;
    json!({
        "status": if degraded { "degraded" } else { "ready" },
        "summary": summary,
        "sources": sources,
        "policy": {
            "version": policy.version(),
            "registry_divisions": policy.registry_len(),
            "registry_refreshed_at": policy.registry_fetched().map(|(at, _)| crate::audit::rfc3339(at)),
            "registry_complete": policy.registry_fetched().map(|(_, complete)| complete),
        },
    })
}

/// The city (4-digit code) a source serves, from its coverage; the
/// region's sources ("15") have none.
fn city_of(source: &crate::sources::Source) -> Value {
    source
        .config
        .coverage
        .iter()
        .filter(|c| c.len() >= 4)
        .map(|c| c[..4].to_string())
        .min()
        .map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_spread_over_the_interval() {
        let every = Duration::from_secs(30);
        let mut phases: Vec<u64> = (0..105)
            .map(|i| phase(&format!("district-{i}"), every).as_secs())
            .collect();
        phases.sort();
        phases.dedup();
        assert!(
            phases.len() > 20,
            "105 sources fall in many seconds of 30: {phases:?}"
        );
        let epoch = Instant::now();
        let now = epoch + Duration::from_secs(95);
        let at = next_at(epoch, now, every, Duration::from_secs(7));
        assert_eq!(at - epoch, Duration::from_secs(97));
        let at = next_at(epoch, now, every, Duration::from_secs(2));
        assert_eq!(at - epoch, Duration::from_secs(122));
    }
}
