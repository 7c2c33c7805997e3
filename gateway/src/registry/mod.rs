//! The division registry for the policy: every division and grid the
//! sources know (the city platforms' registries and the districts'). The
//! hierarchy itself is in the codes; the registry gives the policy's
//! `Division` entities their names, tells operators what exists, and lists
//! the divisions a grouped statistic has cells for.
//!
//! At region scale it holds ~a million codes, so it is kept in the
//! gateway's store (`store.rs`): a start serves the stored copy at once,
//! then each source's part is refreshed on its own, at its own phase of
//! `policy.registry_refresh_s`, read straight from that source page by
//! page. A part that did not change (same digest) is not written, and the
//! registry in use is rebuilt only when some part changed, so a refresh
//! holds one source's rows beside the registry, not a second registry.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use lianqiao_host::PluginError;
use lianqiao_host::contract::{Query, Value};
use lianqiao_policy::division::Registry;
use sha2::{Digest, Sha256};

use crate::model;
use crate::sources::{CallOptions, Source};
use crate::state::{Gateway, Live};
use crate::store::registry::{self as store, RegistryStore};

/// Sources refreshed at once.
const AT_ONCE: usize = 4;

/// A source that failed is tried again this soon.
const RETRY: Duration = Duration::from_secs(15);

/// The sources whose rows are registry rows: those serving divisions or
/// grids (not only enriching them).
fn registry_sources(gateway: &Gateway) -> Vec<Arc<Source>> {
    gateway
        .sources
        .sources
        .iter()
        .filter(|s| {
            s.plugin.manifest().entities.iter().any(|e| {
                (e.name == model::DIVISIONS.name || e.name == model::GRIDS.name)
                    && !s.config.enrich.contains(&e.name)
            })
        })
        .cloned()
        .collect()
}

/// Every division and grid one source holds: (code, name), read page by
/// page through the source's call stack (no cache).
pub async fn source_rows(source: &Source) -> Result<BTreeMap<String, String>, PluginError> {
    let mut rows = BTreeMap::new();
    for entity in [&model::DIVISIONS, &model::GRIDS] {
        let Some(served) = source
            .plugin
            .manifest()
            .entities
            .iter()
            .find(|e| e.name == entity.name)
        else {
            continue;
        };
        let projection: Vec<String> = ["id", "name", "division"]
            .into_iter()
            .filter(|f| served.fields.iter().any(|s| s.name == *f))
            .map(String::from)
            .collect();
        let mut cursor = None;
        loop {
            let page = source
                .query(
                    Query {
                        entity: entity.name.to_string(),
                        scope: source.config.coverage.clone(),
                        filters: vec![],
                        projection: projection.clone(),
                        limit: source.plugin.limits().max_rows,
                        cursor: cursor.take(),
                    },
                    CallOptions::BACKGROUND,
                )
                .await?;
            let col = |name: &str| page.columns.iter().position(|c| c == name);
            let (id, name) = (col("id"), col("name"));
            for row in &page.rows {
                let text = |i: Option<usize>| match i.and_then(|i| row.get(i)) {
                    Some(Value::Text(t)) => Some(t.clone()),
                    _ => None,
                };
                if let Some(code) = text(id) {
                    rows.entry(code)
                        .or_insert_with(|| text(name).unwrap_or_default());
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(rows)
}

/// SHA-256 (hex) of a source's rows, to tell a changed part.
fn digest(rows: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (code, name) in rows {
        h.update(code.as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        h.update([b'\n']);
    }
    hex::encode(h.finalize())
}

/// Where in each interval `name` is refreshed.
fn phase(name: &str, every: Duration) -> Duration {
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    Duration::from_millis(h.finish() % every.as_millis().max(1) as u64)
}

/// The registry stored for `sources`, stamped with the oldest refresh of
/// any of them and whether every one of them has a part.
async fn stored_registry(store: &RegistryStore, sources: &[String]) -> Result<Registry, String> {
    let parts = store.sources().await?;
    let names = store.load(sources).await?;
    let complete = sources.iter().all(|s| parts.contains_key(s));
    let oldest = sources
        .iter()
        .filter_map(|s| parts.get(s))
        .filter_map(|p| crate::federation::measures::epoch_seconds(&p.fetched_at))
        .fold(f64::INFINITY, f64::min);
    let at = if oldest.is_finite() {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(oldest.max(0.0))
    } else {
        SystemTime::now()
    };
    Ok(names.fetched_at(at, complete))
}

/// Refresh one source's part: read it, and write it when it changed.
/// Whether it changed.
async fn refresh_one(
    store: &RegistryStore,
    source: &Source,
    stored: Option<&store::Stored>,
) -> Result<bool, String> {
    let rows = source_rows(source)
        .await
        .map_err(|e| crate::redact::operator(&e))?;
    let now = SystemTime::now();
    let fresh = digest(&rows);
    match stored {
        Some(s) if s.digest == fresh => {
            store.touch(source.name(), s, now).await?;
            Ok(false)
        }
        _ => {
            store.replace(source.name(), &rows, &fresh, now).await?;
            Ok(true)
        }
    }
}

/// Keep the serving gateway's registry: the stored copy at once, then each
/// source's part refreshed at its own phase of the interval.
pub async fn refresh(live: Arc<Live>) {
    let epoch = Instant::now();
    let mut due: HashMap<String, Instant> = HashMap::new();
    // The store whose copy the registry in use was built from.
    let mut loaded_from: Option<String> = None;
    loop {
        let gateway = live.current();
        let every = gateway.config.policy.registry_refresh_s;
        if every == 0 {
            // Off (a reload may turn it on: look again later).
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        let every = Duration::from_secs(every);
        let store = gateway.registry.clone();
        let sources = registry_sources(&gateway);
        let names: Vec<String> = sources.iter().map(|s| s.name().to_string()).collect();
        let engine = &gateway.config.enforcer.engine;
        let mut changed = false;
        if loaded_from.as_deref() != Some(store.url()) {
            match stored_registry(&store, &names).await {
                Ok(registry) => {
                    if !registry.is_empty() && registry.len() >= engine.registry_len() {
                        tracing::info!(
                            divisions = registry.len(),
                            "division registry loaded from the store"
                        );
                        engine.set_registry(registry);
                    }
                    // A stored part is refreshed when it is due, not at
                    // every start: its age counts.
                    let parts = store.sources().await.unwrap_or_default();
                    let now = Instant::now();
                    let wall = SystemTime::now();
                    for name in &names {
                        let age = parts
                            .get(name)
                            .and_then(|p| crate::federation::measures::epoch_seconds(&p.fetched_at))
                            .and_then(|at| {
                                wall.duration_since(SystemTime::UNIX_EPOCH).ok().map(|w| {
                                    Duration::from_secs_f64((w.as_secs_f64() - at).max(0.0))
                                })
                            });
                        if let Some(age) = age {
                            due.insert(name.clone(), now + every.saturating_sub(age));
                        }
                    }
                    loaded_from = Some(store.url().to_string());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the stored division registry");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let now = Instant::now();
        due.retain(|name, _| names.contains(name));
        let stale: Vec<Arc<Source>> = sources
            .iter()
            .filter(|s| due.get(s.name()).is_none_or(|at| *at <= now))
            .cloned()
            .collect();
        if !stale.is_empty() {
            let parts = store.sources().await.unwrap_or_default();
            let outcomes: Vec<(String, Result<bool, String>)> = futures::stream::iter(stale)
                .map(|source| {
                    let store = store.clone();
                    let stored = parts.get(source.name()).cloned();
                    async move {
                        let outcome = refresh_one(&store, &source, stored.as_ref()).await;
                        (source.name().to_string(), outcome)
                    }
                })
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
            for (name, outcome) in outcomes {
                let next = match outcome {
                    Ok(c) => {
                        changed |= c;
                        let p = phase(&name, every);
                        let since = now.saturating_duration_since(epoch).as_millis() as u64;
                        let span = every.as_millis().max(1) as u64;
                        let mut at = since - since % span + p.as_millis() as u64;
                        if at <= since {
                            at += span;
                        }
                        epoch + Duration::from_millis(at)
                    }
                    Err(e) => {
                        tracing::warn!(source = %name, error = %e, "registry refresh of one source failed; its stored part stays");
                        now + RETRY.min(every)
                    }
                };
                due.insert(name, next);
            }
            // Stamp the registry with this round even when nothing changed.
            match stored_registry_stamp(&store, &names, changed, engine).await {
                Ok(Some(registry)) => {
                    tracing::info!(
                        divisions = registry.len(),
                        changed,
                        "division registry refreshed"
                    );
                    engine.set_registry(registry);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the stored division registry"),
            }
        }
        drop(gateway);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The registry to use after a round of refreshes: rebuilt from the store
/// when a part changed; otherwise the one in use, re-stamped.
async fn stored_registry_stamp(
    store: &RegistryStore,
    names: &[String],
    changed: bool,
    engine: &lianqiao_policy::engine::PolicyEngine,
) -> Result<Option<Registry>, String> {
    if changed {
        return stored_registry(store, names).await.map(Some);
    }
    let parts = store.sources().await?;
    let complete = names.iter().all(|s| parts.contains_key(s));
    Ok(Some(
        engine.registry().fetched_at(SystemTime::now(), complete),
    ))
}
