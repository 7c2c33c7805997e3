//! The background health checks: every source of the configuration serving
//! now, every `telemetry.health_interval_s` (the check itself is
//! `sources::health::check`).

use std::sync::Arc;
use std::time::Duration;

use crate::sources::health::check;
use crate::state::Live;

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
