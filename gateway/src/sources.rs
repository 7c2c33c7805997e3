//! The loaded sources: each a config plus its plugin, checked against the
//! unified model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lianqiao_host::capability::cache::SourceCache;
use lianqiao_host::capability::http::{Credential, HttpGrant, Secret};
use lianqiao_host::capability::sql::{PoolSettings, SqlPool};
use lianqiao_host::contract::{Manifest, Page, Query};
use lianqiao_host::{
    PluginEngine, PluginError, PluginLimits, SourceGrants, SourcePlugin, SourceSpec,
};

use crate::config::{ConfigError, ConfigErrors, HttpConfig, ResolvedCredential, SourceConfig};
use crate::federation::breaker::Breaker;
use crate::model;

/// One source, ready to serve.
#[derive(Debug)]
pub struct Source {
    pub config: SourceConfig,
    pub plugin: SourcePlugin,
    pub breaker: Breaker,
    pub retries: crate::federation::retry::RetryBudget,
    /// The last background health check.
    pub health: crate::health::Health,
    /// Calls in flight (`limits.max_concurrent`).
    concurrency: Arc<tokio::sync::Semaphore>,
    /// Recent pages by query (`cache.response_ttl_ms`; empty when off).
    responses: std::sync::Mutex<std::collections::HashMap<String, (Page, Instant)>>,
}

/// Pages kept per source at most; the oldest go first.
const RESPONSE_CACHE_ENTRIES: usize = 1024;

impl Source {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Run `call` once a concurrency slot is free (waiting at most the
    /// deadline) and unless the source's circuit is open; record the outcome.
    pub async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let slot = tokio::time::timeout(
            self.plugin.limits().deadline,
            self.concurrency.clone().acquire_owned(),
        )
        .await;
        let Ok(Ok(_slot)) = slot else {
            return Err(PluginError::Busy(format!(
                "{} calls to this source are already in flight (limits.max_concurrent)",
                self.config.limits.max_concurrent
            )));
        };
        match self.breaker.admit() {
            Err(retry_in) => Err(PluginError::CircuitOpen {
                retry_in_ms: retry_in.as_millis() as u64,
            }),
            Ok(permit) => {
                // If this future is dropped here, a probe's permit records a failure.
                let outcome = call.await;
                let healthy = match &outcome {
                    Ok(_) => true,
                    Err(e) => !e.counts_against_source(),
                };
                permit.record(healthy);
                outcome
            }
        }
    }

    /// The response cache's key for `query`: the whole query (entity,
    /// scope, filters, projection, limit, cursor), so an answer is never
    /// served to a query with another scope. `None` when caching is off.
    pub fn cache_key(&self, query: &Query) -> Option<String> {
        (self.config.response_ttl_ms > 0).then(|| format!("{query:?}"))
    }

    /// A fresh cached page for `key`.
    pub fn cached(&self, key: &str) -> Option<Page> {
        let ttl = Duration::from_millis(self.config.response_ttl_ms);
        let cache = self.responses.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(page, _)| page.clone())
    }

    /// Keep `page` for `key`, dropping stale entries and, when full, the oldest.
    pub fn remember(&self, key: String, page: &Page) {
        let ttl = Duration::from_millis(self.config.response_ttl_ms);
        let Ok(mut cache) = self.responses.lock() else {
            return;
        };
        cache.retain(|_, (_, at)| at.elapsed() < ttl);
        if cache.len() >= RESPONSE_CACHE_ENTRIES
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(key, (page.clone(), Instant::now()));
    }

    /// True when the source declares it serves `entity`.
    pub fn serves(&self, entity: &str) -> bool {
        self.plugin
            .manifest()
            .entities
            .iter()
            .any(|e| e.name == entity)
    }
}

/// All sources of one configuration.
#[derive(Debug, Default)]
pub struct SourceSet {
    pub sources: Vec<Arc<Source>>,
}

impl SourceSet {
    /// Load every source's plugin; report every failure, naming the file.
    pub async fn load(
        configs: &[SourceConfig],
        engine: &PluginEngine,
    ) -> Result<Self, ConfigErrors> {
        let loads = configs
            .iter()
            .map(|config| load_one(config.clone(), engine));
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for outcome in futures::future::join_all(loads).await {
            match outcome {
                Ok(source) => sources.push(Arc::new(source)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(SourceSet { sources })
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

async fn load_one(config: SourceConfig, engine: &PluginEngine) -> Result<Source, ConfigError> {
    let sql = match &config.sql_url {
        Some(url) => Some(
            SqlPool::connect_lazy(
                url,
                &PoolSettings {
                    max_connections: config.sql_max_connections,
                    acquire_timeout: Duration::from_millis(config.limits.deadline_ms),
                },
            )
            .map_err(|e| ConfigError::new(&config.file, "sql.url", e))?,
        ),
        None => None,
    };
    let spec = SourceSpec {
        name: config.name.clone(),
        wasm: config.plugin.clone(),
        sha256: config.sha256.clone(),
        limits: PluginLimits {
            memory_mib: config.limits.memory_mib,
            deadline: Duration::from_millis(config.limits.deadline_ms),
            max_rows: config.limits.max_rows,
        },
        grants: SourceGrants {
            source: config.name.clone(),
            settings_json: config.settings_json.clone(),
            sql,
            http: config.http.as_ref().map(http_grant),
            cache: SourceCache::new(config.cache_max_bytes),
            sql_log: Default::default(),
        },
    };
    let plugin = SourcePlugin::load(engine, spec)
        .await
        .map_err(|e| ConfigError::new(&config.file, "plugin", e.to_string()))?;
    check_against_model(plugin.manifest())
        .map_err(|m| ConfigError::new(&config.file, "plugin", m))?;
    let breaker = Breaker::new(
        config.breaker.failures,
        Duration::from_millis(config.breaker.cooldown_ms),
    );
    let concurrency = Arc::new(tokio::sync::Semaphore::new(
        config.limits.max_concurrent as usize,
    ));
    Ok(Source {
        config,
        plugin,
        breaker,
        retries: Default::default(),
        health: Default::default(),
        concurrency,
        responses: Default::default(),
    })
}

fn http_grant(config: &HttpConfig) -> Arc<HttpGrant> {
    let credentials = config
        .credentials
        .iter()
        .map(|(name, c)| {
            let credential = match c {
                ResolvedCredential::Hmac { app_key, secret } => Credential::Hmac {
                    app_key: app_key.clone(),
                    secret: Secret(secret.clone()),
                },
                ResolvedCredential::OAuth2 {
                    token_url,
                    client_id,
                    secret,
                } => Credential::OAuth2 {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    secret: Secret(secret.clone()),
                    token: std::sync::Mutex::new(None),
                },
            };
            (name.clone(), Arc::new(credential))
        })
        .collect();
    Arc::new(HttpGrant::new(
        config.allow.clone(),
        Duration::from_millis(config.timeout_ms),
        config.max_response_bytes,
        credentials,
        config.tls.clone(),
    ))
}

/// A plugin may serve a subset of the model, never something outside it.
fn check_against_model(manifest: &Manifest) -> Result<(), String> {
    for served in &manifest.entities {
        let entity = model::entity(&served.name).ok_or_else(|| {
            format!(
                "the plugin serves `{}`, which the unified model does not define (known: {})",
                served.name,
                model::ENTITIES
                    .iter()
                    .map(|e| e.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        for f in &served.fields {
            let field = entity.field(&f.name).ok_or_else(|| {
                format!(
                    "`{}` has no field `{}` in the unified model (known: {})",
                    entity.name,
                    f.name,
                    entity.field_names().join(", ")
                )
            })?;
            if field.kind != f.kind {
                return Err(format!(
                    "`{}.{}` is {:?} in the unified model, the plugin says {:?}",
                    entity.name, f.name, field.kind, f.kind
                ));
            }
        }
    }
    Ok(())
}
