//! The loaded sources: each a config plus its plugin, checked against the
//! unified model, with everything that is per source — the one call stack
//! every caller goes through (`call`), its response cache, circuit breaker,
//! retry budget and health.

pub mod breaker;
mod cache;
pub mod call;
pub mod health;
pub mod lane;
pub mod probe;
pub mod report;
pub mod retry;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use lianqiao_host::capability::cache::SourceCache;
use lianqiao_host::capability::http::{Credential, HttpGrant, Secret};
use lianqiao_host::capability::sql::{PoolSettings, SqlPool};
use lianqiao_host::capability::sql_write::SqlWriter;
use lianqiao_host::contract::Manifest;
use lianqiao_host::{PluginEngine, PluginLimits, SourceGrants, SourcePlugin, SourceSpec};

use crate::config::{ConfigError, ConfigErrors, HttpConfig, ResolvedCredential, SourceConfig};
use crate::model;
use breaker::Breaker;
pub use call::CallOptions;

/// One source, ready to serve.
#[derive(Debug)]
pub struct Source {
    pub config: SourceConfig,
    pub plugin: SourcePlugin,
    pub breaker: Breaker,
    pub retries: retry::RetryBudget,
    /// The last background health check.
    pub health: health::Health,
    /// Calls in flight (`limits.max_concurrent`).
    concurrency: Arc<tokio::sync::Semaphore>,
    /// Recent answers by call (`cache.response_ttl_ms`; off at 0).
    pages: cache::ResponseCache<lianqiao_host::contract::Page>,
    counts: cache::ResponseCache<Vec<lianqiao_host::contract::CountCell>>,
}

impl Source {
    pub fn name(&self) -> &str {
        &self.config.name
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
    /// How requests fan out to them.
    pub fan_out: FanOut,
}

/// How a request fans out to its sources (`[server]`).
#[derive(Debug)]
pub struct FanOut {
    /// The whole request's budget; none: each source's own deadline.
    pub request_deadline: Option<Duration>,
    /// Source calls one request runs at once.
    pub at_once: usize,
    /// Slots for source calls of wide requests, shared by all of them,
    /// earliest deadline first (`slots.rs`).
    pub wide_calls: Arc<slots::WideSlots>,
    /// Narrow requests in flight: a wide request's calls let them go first.
    narrow: Arc<Narrow>,
    /// Where wide requests run, whole (`lane.rs`).
    pub lane: lane::WideLane,
}

/// Narrow requests (a district user's: a source or two) in flight.
#[derive(Debug, Default)]
struct Narrow {
    in_flight: std::sync::atomic::AtomicUsize,
    done: tokio::sync::Notify,
}

/// Held while a narrow request runs its source calls.
pub struct NarrowGuard(Arc<Narrow>);

impl Drop for NarrowGuard {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

/// The longest a wide request's call yields to narrow ones before it goes
/// anyway (a steady stream of district requests must not starve a region
/// query past its deadline).
const MAX_YIELD: Duration = Duration::from_millis(20);

/// A request with more sources than this is wide (it takes slots).
pub const WIDE: usize = 4;

impl Default for FanOut {
    fn default() -> Self {
        FanOut {
            request_deadline: Some(Duration::from_secs(5)),
            at_once: 16,
            wide_calls: slots::WideSlots::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            ),
            narrow: Arc::default(),
            // Beside narrow requests: a lane is threads, made from the
            // configuration (`from_config`).
            lane: lane::WideLane::default(),
        }
    }
}

impl FanOut {
    /// When a request that starts now must have answered.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.request_deadline.map(|d| std::time::Instant::now() + d)
    }

    /// Run one source call of a request: in a wide-request slot when the
    /// request is wide, and answered by the request's deadline (a call
    /// still out then is reported timed out; the source's own deadline
    /// still applies inside).
    pub async fn call<T>(
        &self,
        wide: bool,
        deadline: Option<std::time::Instant>,
        work: impl std::future::Future<Output = Result<T, lianqiao_host::PluginError>>,
    ) -> Result<T, lianqiao_host::PluginError> {
        let slotted = async {
            let _slot = match wide {
                true => {
                    self.yield_to_narrow().await;
                    // Without a request deadline, in the order calls come.
                    let by = deadline.unwrap_or_else(std::time::Instant::now);
                    Some(self.wide_calls.acquire(by).await)
                }
                false => None,
            };
            work.await
        };
        match deadline {
            Some(at) => tokio::time::timeout_at(at.into(), slotted)
                .await
                .unwrap_or_else(|_| {
                    Err(lianqiao_host::PluginError::Source(
                        lianqiao_host::contract::SourceError::UpstreamTimeout(
                            "no answer by the request's deadline (server.request_deadline_ms)"
                                .into(),
                        ),
                    ))
                }),
            None => slotted.await,
        }
    }

    /// Mark a narrow request in flight until the guard drops: wide
    /// requests' calls wait for it (up to `MAX_YIELD` each), so a region
    /// query's hundred calls do not queue ahead of a district user's one
    /// on the same CPU, instances and connections.
    pub fn narrow(&self) -> NarrowGuard {
        self.narrow
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        NarrowGuard(self.narrow.clone())
    }

    async fn yield_to_narrow(&self) {
        use std::sync::atomic::Ordering;
        let until = tokio::time::Instant::now() + MAX_YIELD;
        while self.narrow.in_flight.load(Ordering::Acquire) > 0 {
            let done = self.narrow.done.notified();
            // Checked again after subscribing: a guard dropped in between
            // has already notified.
            if self.narrow.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(until, done).await.is_err() {
                break;
            }
        }
    }

    pub fn from_config(server: &crate::config::ServerSection) -> Self {
        FanOut {
            request_deadline: (server.request_deadline_ms > 0)
                .then(|| Duration::from_millis(server.request_deadline_ms)),
            at_once: server.fan_out_at_once.max(1),
            wide_calls: slots::WideSlots::new(match server.max_wide_source_calls {
                // One per CPU this process may run on (its affinity).
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            }),
            narrow: Arc::default(),
            lane: lane::WideLane::new(server.wide_request_nice),
        }
    }
}

impl SourceSet {
    /// How many sources hold data in `division`'s subtree or above it:
    /// more than `WIDE` makes a request over it wide (before planning,
    /// which depends on the entity and filters, so the request can be
    /// placed on its lane whole).
    pub fn width(&self, division: &str) -> usize {
        self.sources
            .iter()
            .filter(|s| {
                s.config
                    .coverage
                    .iter()
                    .any(|c| c.starts_with(division) || division.starts_with(c.as_str()))
            })
            .count()
    }

    /// The source named `name` (`sources/<name>.toml`), if configured.
    pub fn get(&self, name: &str) -> Option<Arc<Source>> {
        self.sources.iter().find(|s| s.name() == name).cloned()
    }

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
            Ok(SourceSet {
                sources,
                fan_out: FanOut::default(),
            })
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
    let sql_write = match (&config.sql_url, &config.sql_write) {
        (Some(url), Some(statements)) => Some(
            SqlWriter::connect_lazy(
                url,
                statements,
                config.sql_max_connections,
                Duration::from_millis(config.limits.deadline_ms),
            )
            .map_err(|e| ConfigError::new(&config.file, "sql.write.statements", e))?,
        ),
        _ => None,
    };
    let spec = SourceSpec {
        name: config.name.clone(),
        wasm: config.plugin.clone(),
        sha256: config.sha256.clone(),
        limits: PluginLimits {
            memory_mib: config.limits.memory_mib,
            deadline: Duration::from_millis(config.limits.deadline_ms),
            max_rows: config.limits.max_rows,
            instances: config.limits.instances(),
        },
        grants: SourceGrants {
            source: config.name.clone(),
            settings_json: config.settings_json.clone(),
            sql,
            sql_write,
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
    let ttl = Duration::from_millis(config.response_ttl_ms);
    Ok(Source {
        config,
        plugin,
        breaker,
        retries: Default::default(),
        health: Default::default(),
        concurrency,
        pages: cache::ResponseCache::new(ttl),
        counts: cache::ResponseCache::new(ttl),
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
