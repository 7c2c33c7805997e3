//! The division registry for the policy: every division and grid the
//! sources know (the city platform's registry and the districts'), fetched
//! through federation at start and every `policy.registry_refresh_s`. The
//! hierarchy itself is in the codes; the registry gives the policy's
//! `Division` entities their names and tells operators what exists.

use std::sync::Arc;
use std::time::Duration;

use lianqiao_host::contract::Value;
use lianqiao_policy::division::Registry;

use crate::federation::{self, ListRequest};
use crate::model;
use crate::state::{Gateway, Live};

/// Fetch the registry: every division and grid under every source's
/// coverage. Sources that fail are skipped (their part is missing until
/// the next refresh); the policy does not depend on names for scope.
pub async fn fetch(gateway: &Gateway) -> (Registry, bool) {
    let mut names = Vec::new();
    let mut complete = true;
    for entity in [&model::DIVISIONS, &model::GRIDS] {
        let mut roots: Vec<String> = gateway
            .sources
            .sources
            .iter()
            .filter(|s| {
                s.plugin
                    .manifest()
                    .entities
                    .iter()
                    .any(|e| e.name == entity.name)
            })
            .flat_map(|s| s.config.coverage.iter().cloned())
            .collect();
        roots.sort();
        // A root inside another is fetched with it.
        let outer: Vec<String> = roots
            .iter()
            .filter(|r| !roots.iter().any(|o| o != *r && r.starts_with(o.as_str())))
            .cloned()
            .collect();
        for root in outer {
            let mut cursor = None;
            loop {
                let request = ListRequest {
                    entity,
                    scope: vec![root.clone()],
                    filters: vec![],
                    projection: vec!["id", "code", "name", "division"],
                    output: vec!["id", "code", "name"],
                    limit: 1000,
                    cursor: cursor.take(),
                    strict: false,
                };
                match federation::execute(&gateway.sources, &request).await {
                    Ok(outcome) => {
                        complete &= !outcome.partial();
                        for row in outcome.rows {
                            let name = row.cells.iter().find_map(|(n, v)| match v {
                                Value::Text(t) if n == "name" => Some(t.clone()),
                                _ => None,
                            });
                            names.push((row.id.clone(), name.unwrap_or_default()));
                        }
                        match outcome.next {
                            Some(c) => cursor = Some(c),
                            None => break,
                        }
                    }
                    Err(_) => {
                        complete = false;
                        break;
                    }
                }
            }
        }
    }
    (
        Registry::from_names(names).fetched_at(std::time::SystemTime::now(), complete),
        complete,
    )
}

/// Keep the serving gateway's registry fresh.
pub async fn refresh(live: Arc<Live>) {
    loop {
        let gateway = live.current();
        if gateway.config.policy.registry_refresh_s == 0 {
            // Off (a reload may turn it on: look again later).
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let (registry, complete) = fetch(&gateway).await;
        tracing::info!(
            divisions = registry.len(),
            complete,
            "division registry refreshed"
        );
        // A partial registry never replaces a fuller one.
        if complete || registry.len() >= gateway.config.enforcer.engine.registry_len() {
            gateway.config.enforcer.engine.set_registry(registry);
        }
        let every = gateway.config.policy.registry_refresh_s;
        // A source was down: try again soon rather than at the next interval.
        let wait = if complete { every } else { every.min(15) };
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
}
