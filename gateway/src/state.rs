//! The gateway's state: everything a request needs, built once per
//! configuration (`Gateway`), and the one serving now (`Live`), swapped
//! whole on reload. Imports nothing that serves requests (api, server), so
//! every layer can depend on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use lianqiao_host::{EngineSettings, PluginEngine};
use rand::RngCore;

use crate::config::{Config, ConfigError, ConfigErrors};
use crate::disclosure::seal::CursorSeal;
use crate::sources::SourceSet;

/// Everything a request needs, built once per configuration.
#[derive(Debug)]
pub struct Gateway {
    pub config: Config,
    pub sources: SourceSet,
    /// Seals page cursors (encrypted, bound to caller and query).
    pub cursors: CursorSeal,
    /// Protects counts for callers who may not list the records.
    pub protection: crate::disclosure::protect::Protection,
    /// Statistics budgets per principal; one per process, kept across
    /// reloads.
    pub budgets: Arc<crate::disclosure::budget::Budgets>,
    /// Key of the person hash that joins one person's records across
    /// sources; never given to a plugin.
    pub person_key: Vec<u8>,
    /// Shared by every generation of the gateway (see `Live`).
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// Permits for requests in flight (`server.max_concurrent_requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The audit trail's writer; one per process, kept across reloads.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Idempotency keys of case writes, in the audit trail's database;
    /// kept across reloads.
    pub writes: Arc<crate::cases::WriteStore>,
    /// The division registry as stored, in the audit trail's database;
    /// kept across reloads.
    pub registry: Arc<crate::store::registry::RegistryStore>,
    /// The closed loop's moves: `cases.toml` beside the main file, else
    /// the shipped table.
    pub transitions: crate::cases::Transitions,
}

/// A key from the environment variable `env`, or a random one with a
/// warning saying what that costs. The random one is made once per
/// process and variable: a reload must not break every outstanding cursor
/// or give protected counts fresh noise to average away.
fn secret_key(env: &str, without_it: &str) -> Vec<u8> {
    static RANDOM: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Vec<u8>>>> =
        std::sync::OnceLock::new();
    match std::env::var(env) {
        Ok(key) if !key.is_empty() => key.into_bytes(),
        _ => {
            let keys = RANDOM.get_or_init(Default::default);
            let mut keys = match keys.lock() {
                Ok(k) => k,
                Err(poisoned) => poisoned.into_inner(),
            };
            keys.entry(env.to_string())
                .or_insert_with(|| {
                    tracing::warn!(env, "no key configured: using a random one; {without_it}");
                    let mut key = vec![0u8; 32];
                    rand::rng().fill_bytes(&mut key);
                    key
                })
                .clone()
        }
    }
}

impl Gateway {
    /// The source a street's whistle files the city case with
    /// (`whistle_to` in cases.toml), if it is configured.
    pub fn whistle_source(&self) -> Option<Arc<crate::sources::Source>> {
        self.sources.get(self.transitions.whistle_to.as_deref()?)
    }

    /// Start the plugin engine and load every source; report every failure.
    pub async fn build(config: Config) -> Result<Self, ConfigErrors> {
        // The pool holds every source's share, so none can find it taken.
        let shares: u32 = config.sources.iter().map(|s| s.limits.instances()).sum();
        let engine = PluginEngine::new(EngineSettings {
            allocator: config.plugins.allocator,
            pool_instances: config.plugins.pool_instances.max(shares),
            max_memory_mib: config.plugins.max_memory_mib,
            cache_dir: config.plugins.cache_dir.clone(),
            keep_resident_kib: config.plugins.keep_resident_kib,
        })
        .map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                &config.file,
                "plugins",
                format!("cannot start the plugin engine: {e:#}"),
            )])
        })?;
        let mut sources = SourceSet::load(&config.sources, &engine).await?;
        sources.fan_out = crate::sources::FanOut::from_config(&config.server);
        let key = secret_key(
            &config.server.cursor_key_env,
            "cursors will not survive a restart or work across replicas",
        );
        let stats_key = match config
            .statistics
            .key_file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
        {
            Some(key) => key,
            None => secret_key(
                &config.statistics.key_env,
                "the noise on protected counts changes at every restart, so a caller can average it away by asking again after each one",
            ),
        };
        let person_key = secret_key(
            &config.server.person_key_env,
            "person keys differ between replicas (they never leave a gateway, so joins still work)",
        );
        let transitions = match config.file.parent().map(|d| d.join("cases.toml")) {
            Some(path) if path.is_file() => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigErrors(vec![crate::config::ConfigError::new(
                        &path,
                        "",
                        e.to_string(),
                    )])
                })?;
                crate::cases::Transitions::parse(&text).map_err(|e| {
                    ConfigErrors(vec![crate::config::ConfigError::new(&path, "move", e)])
                })?
            }
            _ => crate::cases::Transitions::shipped(),
        };
        Ok(Gateway {
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.server.max_concurrent_requests as usize,
            )),
            sources,
            cursors: CursorSeal::new(&key),
            protection: crate::disclosure::protect::Protection::new(
                config.statistics.suppress_below,
                config.statistics.max_noise,
                &stats_key,
            ),
            budgets: Arc::new(crate::disclosure::budget::Budgets::new(
                config.statistics.burst,
                config.statistics.queries_per_hour,
            )),
            person_key,
            metrics: Arc::new(crate::telemetry::metrics::Metrics::new(
                config.telemetry.metrics,
            )),
            writes: Arc::new(crate::cases::WriteStore::new(config.audit_url.clone())),
            registry: Arc::new(crate::store::registry::RegistryStore::new(
                config.audit_url.clone(),
            )),
            transitions,
            audit: crate::audit::AuditLog::start(
                config.audit_url.clone(),
                config.audit.chain.clone(),
                config.audit.batch_max,
            ),
            config,
        })
    }

    /// What the disclosure gate works with.
    pub fn gate(&self) -> crate::disclosure::Context<'_> {
        crate::disclosure::Context {
            enforcer: &self.config.enforcer,
            sources: &self.sources,
            cursors: &self.cursors,
            protection: &self.protection,
            budgets: &self.budgets,
            statistics: &self.config.statistics,
        }
    }

    /// "150103 (huimin), …" for messages.
    pub fn coverage_summary(&self) -> String {
        self.sources
            .sources
            .iter()
            .map(|s| format!("{} ({})", s.config.coverage.join(", "), s.name()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One change to the configuration files at a time (a source added on the
/// admin listener, a policy applied from the console): two at once would
/// each check against files the other is changing.
pub static CONFIG_CHANGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The gateway serving now. A reload builds and checks a whole new
/// gateway aside and swaps it in; requests in flight finish on the one they
/// started with (they hold its `Arc`), and a broken configuration changes
/// nothing.
pub struct Live {
    current: std::sync::RwLock<Arc<Gateway>>,
    config_path: std::path::PathBuf,
}

impl Live {
    pub fn new(gateway: Gateway, config_path: std::path::PathBuf) -> Self {
        Live {
            current: std::sync::RwLock::new(Arc::new(gateway)),
            config_path,
        }
    }

    /// The main configuration file this gateway reloads from.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The gateway to serve a request with.
    pub fn current(&self) -> Arc<Gateway> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Load the configuration again, build a new gateway (every plugin
    /// loaded and checked) and swap it in; on any error keep the old one.
    pub async fn reload(&self) -> Result<(), ConfigErrors> {
        let config = crate::config::load(&self.config_path)?;
        let mut next = Gateway::build(config).await?;
        let old = self.current();
        // Counters and the request limit belong to the process, not to
        // one generation of the configuration.
        next.metrics = old.metrics.clone();
        next.in_flight = old.in_flight.clone();
        // A reload must not hand every caller a fresh statistics budget.
        if next.config.statistics.burst == old.config.statistics.burst
            && next.config.statistics.queries_per_hour == old.config.statistics.queries_per_hour
        {
            next.budgets = old.budgets.clone();
        }
        // One audit chain per process: its writer survives reloads (a
        // changed [audit] section takes effect at the next start).
        if next.config.audit_url != old.config.audit_url
            || next.config.audit.chain != old.config.audit.chain
        {
            tracing::warn!("[audit] changed: the new store is used after a restart");
        }
        next.audit = old.audit.clone();
        next.writes = old.writes.clone();
        next.registry = old.registry.clone();
        // The registry carries over until the next refresh.
        next.config
            .enforcer
            .engine
            .set_registry(old.config.enforcer.engine.registry());
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        tracing::info!(
            sources = self.current().sources.sources.len(),
            "configuration reloaded"
        );
        Ok(())
    }
}
