//! Source health: a small real call through each source's plugin (one row
//! of its first entity, inside its coverage, only `id` and `division`), run
//! in the background every `telemetry.health_interval_s` and kept, so
//! `/readyz` and `lianqiao status` answer at once and never wait on a slow
//! source. A check goes around the circuit breaker (it must see a source
//! recover while the breaker is open) and does not feed it: the breaker
//! judges callers' traffic, the check judges the source.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lianqiao_host::contract::Query;

use crate::server::Live;
use crate::sources::Source;

/// The outcome of the last check of one source.
#[derive(Debug, Clone)]
pub struct Check {
    pub up: bool,
    pub at: SystemTime,
    pub latency: Duration,
    /// Why the check failed: the plugin's error code and message.
    pub error: Option<String>,
}

/// The last check of a source; empty until the first one.
#[derive(Debug, Default)]
pub struct Health(Mutex<Option<Check>>);

impl Health {
    pub fn last(&self) -> Option<Check> {
        self.0.lock().ok().and_then(|c| c.clone())
    }

    fn set(&self, check: Check) {
        if let Ok(mut c) = self.0.lock() {
            *c = Some(check);
        }
    }
}

/// Check `source` once and keep the outcome.
pub async fn check(source: &Source) -> Check {
    let began = Instant::now();
    let error = match source.plugin.manifest().entities.first() {
        None => Some("the plugin serves no entity".to_string()),
        Some(entity) => {
            let query = Query {
                entity: entity.name.clone(),
                scope: source.config.coverage.clone(),
                filters: Vec::new(),
                projection: vec!["id".into(), "division".into()],
                limit: 1,
                cursor: None,
            };
            let deadline = source.plugin.limits().deadline + Duration::from_secs(1);
            match tokio::time::timeout(deadline, source.plugin.query(query)).await {
                Ok(Ok(_)) => None,
                // /readyz is unauthenticated: the gateway's words only.
                Ok(Err(e)) => Some(format!(
                    "{}: {}",
                    crate::api::error::ErrorCode::of(&e),
                    crate::disclosure::redact::public(&e)
                )),
                Err(_) => Some(format!(
                    "upstream_timeout: no answer within {} ms",
                    deadline.as_millis()
                )),
            }
        }
    };
    let check = Check {
        up: error.is_none(),
        at: SystemTime::now(),
        latency: began.elapsed(),
        error,
    };
    source.health.set(check.clone());
    check
}

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
                        error = now.error.as_deref().unwrap_or(""),
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
