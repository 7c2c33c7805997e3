//! Source health: a small real call through each source's plugin (one row
//! of its first entity, inside its coverage, only `id` and `division`), run
//! in the background every `telemetry.health_interval_s` and kept, so
//! `/readyz` and `lianqiao status` answer at once and never wait on a slow
//! source. A check goes through the source's call stack without its
//! cache, retry and breaker (`CallOptions::HEALTH`): it must see a source
//! recover while the breaker is open, and does not feed it — the breaker
//! judges callers' traffic, the check judges the source. The loop that
//! runs the checks is `crate::health`.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use lianqiao_host::PluginError;
use lianqiao_host::contract::{Query, SourceError};

use super::{CallOptions, Source};

/// The outcome of the last check of one source.
#[derive(Debug, Clone)]
pub struct Check {
    pub up: bool,
    pub at: SystemTime,
    pub latency: Duration,
    /// Why the check failed.
    pub error: Option<PluginError>,
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
        None => Some(PluginError::Source(SourceError::BadConfig(
            "the plugin serves no entity".into(),
        ))),
        Some(entity) => {
            let query = Query {
                entity: entity.name.clone(),
                scope: source.config.coverage.clone(),
                filters: Vec::new(),
                projection: vec!["id".into(), "division".into()],
                limit: 1,
                cursor: None,
            };
            source.query(query, CallOptions::HEALTH).await.err()
        }
    };
    // A share that stayed busy is the gateway's load, not the source's
    // health: keep what the last check found.
    if matches!(error, Some(PluginError::Busy(_)))
        && let Some(last) = source.health.last()
    {
        return last;
    }
    let check = Check {
        up: error.is_none(),
        at: SystemTime::now(),
        latency: began.elapsed(),
        error,
    };
    source.health.set(check.clone());
    check
}
