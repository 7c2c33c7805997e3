//! The gateway's configuration: `lianqiao.toml` plus one file per source.
//!
//! Every section is `deny_unknown_fields`, and loading reports every error
//! at once, each with its file and key, so an operator fixes a config in
//! one pass. Relative paths are relative to the file that names them.

mod load;
mod report;
pub mod template;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use load::{load, load_with_candidate, sources_dir, watched_paths};
pub use report::{ConfigError, ConfigErrors};

/// `lianqiao.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub plugins: PluginsSection,
    pub sources: SourcesSection,
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub telemetry: TelemetrySection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub statistics: StatisticsSection,
    #[serde(default)]
    pub audit: AuditSection,
}

/// `[auth]`: who may call the API. Every request needs a credential.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Trusted token issuers: `Authorization: Bearer <JWT>`.
    pub issuers: Vec<IssuerSection>,
    /// API keys for systems (`X-Api-Key: <key>`), stored as SHA-256 hex.
    pub api_keys: Vec<ApiKeySection>,
}

/// `[[auth.issuers]]`: one JWT issuer. Tokens carry `sub`, `iss`, `aud`,
/// `exp`, `level`, `division` and optionally `roles`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// `iss` of its tokens.
    pub issuer: String,
    /// `aud` its tokens must carry.
    pub audience: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub algorithm: String,
    /// The issuer's public key (PEM), relative to this file.
    pub public_key_file: PathBuf,
}

/// `[[auth.api_keys]]`: one API key and the principal it stands for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    pub id: String,
    /// SHA-256 of the key, hex (`lianqiao auth hash-key` prints it).
    pub sha256: String,
    pub level: String,
    pub division: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[policy]`: who sees what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Directory with one `*.cedarschema` and the `*.cedar` policies.
    pub dir: PathBuf,
    /// Purposes a caller may declare (header `X-Purpose`).
    pub purposes: Vec<String>,
    /// How often the division registry is fetched again from the sources
    /// that serve divisions, in seconds; 0: never (the hierarchy still
    /// comes from the codes; divisions have no names in policies).
    pub registry_refresh_s: u64,
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            dir: PathBuf::from("policy"),
            purposes: [
                "case-handling",
                "statistics",
                "party-affairs",
                "grid-service",
            ]
            .map(String::from)
            .to_vec(),
            registry_refresh_s: 600,
        }
    }
}

/// `[statistics]`: how counts are protected for callers who may not list
/// the records behind them (the cell-key method, docs/policy.md), and how
/// many statistics queries one caller may make.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticsSection {
    /// Protected cells with a true count below this are published as
    /// suppressed — zeros too, so an empty cell cannot be told from a
    /// small one.
    pub suppress_below: u64,
    /// Protected counts carry noise drawn uniformly from
    /// `-max_noise..=max_noise`, the same for the same cell every time.
    pub max_noise: u32,
    /// Environment variable holding the key the noise is drawn with.
    /// Replicas must share it, and it must survive restarts: with a fresh
    /// key each start, a caller could average the noise away by asking
    /// again after every restart.
    pub key_env: String,
    /// A file holding the key instead (relative to this file); wins over
    /// `key_env`.
    pub key_file: Option<PathBuf>,
    /// Statistics queries one principal may make at once…
    pub burst: u32,
    /// …and per hour after that (429 `rate_limited` with `Retry-After`).
    pub queries_per_hour: u32,
}

impl Default for StatisticsSection {
    fn default() -> Self {
        StatisticsSection {
            suppress_below: 5,
            max_noise: 3,
            key_env: "LIANQIAO_STATS_KEY".into(),
            key_file: None,
            burst: 120,
            queries_per_hour: 1200,
        }
    }
}

/// `[audit]`: one hash-chained record per request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// `sqlite://path` (relative to this file) or `postgres://…`.
    pub url: String,
    /// Environment variable holding the URL instead (it may carry a password).
    pub url_env: String,
    /// Name of this gateway's chain; replicas sharing one database each
    /// need their own.
    pub chain: String,
    /// Records written in one transaction at most.
    pub batch_max: usize,
    /// Serve statistics-only responses when the audit store is down (their
    /// records are kept in memory and written when it is back). Responses
    /// with records always fail closed.
    pub statistics_fail_open: bool,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            url: "sqlite://audit.db".into(),
            url_env: String::new(),
            chain: "main".into(),
            batch_max: 256,
            statistics_fail_open: false,
        }
    }
}

/// `[telemetry]`: logs and metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// `text` for people, `json` (one object per line) for log pipelines.
    pub log_format: LogFormat,
    /// Default log filter (`RUST_LOG` overrides it), e.g. `info`.
    pub log_level: String,
    /// Admin listener serving `/metrics` (Prometheus text) and the
    /// operators' `PUT /admin/sources/{name}`; empty: none.
    pub metrics_listen: String,
    /// Serve the admin listener over TLS with `[server.tls]`'s certificate
    /// (and its client certificates: one that maps to a principal with the
    /// `source-admin` role may change sources). Off by default so existing
    /// scrapers keep working; needs `[server.tls]`.
    pub admin_tls: bool,
    /// OTLP/HTTP endpoint for traces, e.g. `http://127.0.0.1:4318/v1/traces`;
    /// empty: no export (the default).
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans and metrics.
    pub service_name: String,
    /// The share of traces starting here that are exported (0.0–1.0); a
    /// caller's `traceparent` sampling flag is followed either way.
    pub trace_sample_ratio: f64,
    /// Record metrics (`/metrics`, OTLP). Off only to measure what
    /// telemetry costs; `/metrics` then says so.
    pub metrics: bool,
    /// One log line per request (target `lianqiao::access`).
    pub access_log: bool,
    /// OTLP/HTTP endpoint for metrics, e.g.
    /// `http://127.0.0.1:4318/v1/metrics`; empty: no export (the default).
    pub otlp_metrics_endpoint: String,
    /// Seconds between metric exports.
    pub otlp_metrics_interval_s: u64,
    /// Seconds between health checks of each source (one row through its
    /// plugin, cached for `/readyz`); 0: no checks.
    pub health_interval_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        TelemetrySection {
            log_format: LogFormat::Text,
            log_level: "info".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            admin_tls: false,
            otlp_endpoint: String::new(),
            service_name: "lianqiao".into(),
            trace_sample_ratio: 1.0,
            metrics: true,
            access_log: true,
            otlp_metrics_endpoint: String::new(),
            otlp_metrics_interval_s: 10,
            health_interval_s: 30,
        }
    }
}

/// `[model]`: the unified model's operator-owned parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// The sensitivity class of every field (relative to this file).
    pub fields: PathBuf,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            fields: PathBuf::from("fields.toml"),
        }
    }
}

/// `[server]`: the API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address the API listens on.
    pub listen: String,
    /// Name of the environment variable that holds the key signing page
    /// cursors. Replicas behind one load balancer must share it; without
    /// it each start picks a random key (cursors die with the process).
    pub cursor_key_env: String,
    /// Name of the environment variable that holds the key of the person
    /// hash used to join one person's records across sources. Without it
    /// each start picks a random key (the hash never leaves the gateway).
    pub person_key_env: String,
    /// The most rows a caller may ask for in one page.
    pub max_page_size: u32,
    /// Rows per page when the caller does not say.
    pub default_page_size: u32,
    /// Requests served at once; more are refused at once with 503
    /// `overloaded` and `Retry-After`, rather than queueing without bound.
    pub max_concurrent_requests: u32,
    /// Connections open at once per listener; past it new connections are
    /// closed as soon as they are accepted. Read at start (a reload keeps
    /// the listeners as they are).
    pub max_connections: u32,
    /// A client must finish its TLS handshake, and send each request's
    /// headers, within this many milliseconds; an idle kept-alive
    /// connection is closed after it too (slow clients hold nothing long).
    /// Read at start, like `max_connections`.
    pub header_read_timeout_ms: u64,
    /// Longest query string accepted, in bytes.
    pub max_query_bytes: usize,
    /// Most filters one request may carry.
    pub max_filters: usize,
    /// Most values one `[in]` filter may list.
    pub max_in_values: usize,
    /// A whole list or statistics request answers by this many
    /// milliseconds: a source that has not answered by then is reported
    /// (`timeout`, naming it) and the answer is partial, its place kept in
    /// the cursor. 0: only each source's own deadline applies.
    pub request_deadline_ms: u64,
    /// Source calls one request runs at once (a region page asks its
    /// sources in waves of at most this many).
    pub fan_out_at_once: usize,
    /// Source calls all wide requests (more than a few sources) run at
    /// once, together: a region query waits for a slot here, and lets
    /// narrow requests in flight go first; a district user's request (a
    /// source or two) never waits for a slot. 0: one per CPU the gateway
    /// may run on — a district user then waits for at most one region
    /// call per CPU (measured on one CPU: p99 1.7× with region load at 1
    /// slot, 20× at 4; BENCHMARKS.md).
    pub max_wide_source_calls: usize,
    /// Wide requests run, whole, on threads of their own at this nice
    /// value above the gateway's (1–19), so the kernel runs a district
    /// user's request first when both want the CPU, and a region query
    /// has all of it otherwise. 0: on the same threads as narrow ones.
    /// Read at start and at reloads; threads for a value stay made.
    pub wide_request_nice: u8,
    /// HTTPS on `listen`. Without it `listen` serves plain HTTP, which must
    /// be asked for explicitly with `plaintext = true`.
    pub tls: Option<TlsSection>,
    /// Serve plain HTTP on `listen` (no `[server.tls]`): for a gateway
    /// behind a TLS-terminating proxy, or tests.
    pub plaintext: bool,
    /// An extra plain-HTTP listener beside the HTTPS one ("" for none): for
    /// local tools; never expose it.
    pub plaintext_listen: String,
}

/// `[server.tls]`: HTTPS with rustls (TLS 1.2 and 1.3 only). The files are
/// watched and reloaded when they change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate chain (PEM), relative to this file.
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
    /// CA whose client certificates are verified (mTLS); none: no client
    /// certificates are asked for.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a verified client certificate.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Client certificates that stand for principals (system callers).
    #[serde(default)]
    pub clients: Vec<TlsClientSection>,
}

/// `[[server.tls.clients]]`: a client certificate whose SAN holds the DNS
/// name `name` authenticates as this principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientSection {
    pub name: String,
    pub id: String,
    pub level: String,
    pub division: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1:8080".into(),
            cursor_key_env: "LIANQIAO_CURSOR_KEY".into(),
            person_key_env: "LIANQIAO_PERSON_KEY".into(),
            max_page_size: 1000,
            default_page_size: 50,
            max_concurrent_requests: 512,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            max_query_bytes: 4096,
            max_filters: 16,
            max_in_values: 100,
            request_deadline_ms: 5000,
            fan_out_at_once: 16,
            max_wide_source_calls: 0,
            wide_request_nice: 10,
            tls: None,
            plaintext: false,
            plaintext_listen: String::new(),
        }
    }
}

/// `[plugins]`: the shared WebAssembly engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// `pooling` (default; production) or `on-demand` (for valgrind and
    /// other tools that cannot live with the pool's address-space
    /// reservation).
    pub allocator: lianqiao_host::Allocator,
    /// Plugin instances alive at once, across all sources, at least: the
    /// pool grows to the sum of the sources' shares (`[limits] instances`),
    /// so one source's load never takes another's instances.
    pub pool_instances: u32,
    /// The largest memory cap any source may set, in MiB.
    pub max_memory_mib: u64,
    /// Where compiled plugins are cached (relative to this file).
    pub cache_dir: Option<PathBuf>,
    /// Pooling only: KiB of each finished instance's memory reset in
    /// place rather than returned to the kernel (see `EngineSettings`).
    pub keep_resident_kib: u64,
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            allocator: lianqiao_host::Allocator::Pooling,
            pool_instances: 64,
            max_memory_mib: 256,
            cache_dir: None,
            keep_resident_kib: 0,
        }
    }
}

/// `[sources]`: where the per-source files are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// A directory (relative to this file); every `*.toml` in it is a source.
    pub dir: PathBuf,
}

/// One source: `sources/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Unique name, used in responses (`sources[].name`), logs and metrics.
    pub name: String,
    /// What the source is, for operators.
    #[serde(default)]
    pub description: String,
    /// The plugin that adapts this source.
    pub plugin: PluginSection,
    /// Division codes whose subtrees this source holds data for.
    pub coverage: Vec<String>,
    /// Entities this source only enriches: its rows are joined onto other
    /// sources' rows of the same person (matched on a keyed hash of
    /// `id_number` the gateway computes) and are never listed on their own.
    #[serde(default)]
    pub enrich: Vec<String>,
    #[serde(default)]
    pub limits: LimitsSection,
    /// The database the plugin may read through the `sql` capability.
    #[serde(default)]
    pub sql: Option<SqlSection>,
    /// The URLs the plugin may call through the `http` capability, and the
    /// credentials the host adds for it.
    #[serde(default)]
    pub http: Option<HttpSection>,
    /// The host-kept cache the plugin may use.
    #[serde(default)]
    pub cache: CacheSection,
    /// When to stop calling a failing source for a while.
    #[serde(default)]
    pub breaker: BreakerSection,
}

/// `[plugin]` of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// The plugin's `.wasm` component (relative to this file).
    pub path: PathBuf,
    /// Pin the plugin to this sha256 (hex); a different file is refused.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Non-secret settings handed to the plugin as JSON (its `config`
    /// capability): for `district-sql`, the schema mapping.
    #[serde(default)]
    pub settings: toml::Table,
}

/// `[limits]` of a source's plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Memory cap of one plugin instance, MiB.
    pub memory_mib: u64,
    /// Wall-clock budget of one call, ms; the plugin is interrupted at it.
    pub deadline_ms: u64,
    /// Rows one page from this source may carry.
    pub max_rows: u32,
    /// Calls to this source in flight at once; more wait (up to the
    /// deadline), then fail with `source_unavailable` — back-pressure,
    /// which never counts against the source's health or breaker.
    pub max_concurrent: u32,
    /// Plugin instances this source may hold at once: its share of the
    /// engine's pool, which is sized to the sum of every source's share,
    /// so no source waits on another's. Defaults to `max_concurrent`
    /// (each call in flight holds one instance).
    pub instances: Option<u32>,
}

impl LimitsSection {
    /// The source's share of the plugin pool.
    pub fn instances(&self) -> u32 {
        self.instances.unwrap_or(self.max_concurrent).max(1)
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            memory_mib: 64,
            deadline_ms: 5000,
            max_rows: 5000,
            max_concurrent: 8,
            instances: None,
        }
    }
}

/// `[sql]` of a source: the database and the pool the host keeps for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSection {
    /// `sqlite://path`, `postgres://…`, `mysql://…`. Use `url_env` instead
    /// when the URL carries a password.
    #[serde(default)]
    pub url: Option<String>,
    /// Name of an environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// The write grant: none unless given.
    #[serde(default)]
    pub write: Option<SqlWriteSection>,
}

/// `[sql.write]`: the statements a contract-0.2 plugin may run against
/// the source's database, by name (it never sends SQL of its own).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlWriteSection {
    /// Name → one `INSERT` or `UPDATE` with `?` placeholders.
    pub statements: std::collections::BTreeMap<String, String>,
}

fn default_max_connections() -> u32 {
    4
}

/// `[http]` of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// URL prefixes the plugin may call (`http://host:port/path/`).
    pub allow: Vec<String>,
    /// Budget of one outbound request, ms (also bounded by the deadline).
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest response body the host reads, MiB.
    #[serde(default = "default_max_response_mib")]
    pub max_response_mib: u64,
    /// Credentials by the name the plugin uses.
    #[serde(default)]
    pub credentials: std::collections::BTreeMap<String, CredentialSection>,
    /// CA bundle (PEM) the source's https certificates are verified
    /// against (government internal CAs). https needs it: verification is
    /// never disabled.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) presented to the source (mTLS).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
}

fn default_http_timeout_ms() -> u64 {
    3000
}

fn default_max_response_mib() -> u64 {
    16
}

/// A credential the host applies for the plugin. Secrets come from an
/// environment variable or a file, never from this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CredentialSection {
    /// `appKey`/`timestamp`/`nonce`/`sign` headers, HMAC-SHA256.
    HmacSha256 {
        app_key: String,
        #[serde(default)]
        secret_env: Option<String>,
        #[serde(default)]
        secret_file: Option<PathBuf>,
    },
    /// OAuth2 client credentials with a cached bearer token.
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        #[serde(default)]
        secret_env: Option<String>,
        #[serde(default)]
        secret_file: Option<PathBuf>,
    },
}

/// `[breaker]` of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// How long the circuit stays open before one probe, ms.
    pub cooldown_ms: u64,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            failures: 5,
            cooldown_ms: 10_000,
        }
    }
}

/// `[cache]` of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Bytes the plugin may keep in the host's cache, MiB.
    pub max_mib: u64,
    /// Keep the gateway's answers from this source for this long, ms
    /// (0: off). Keyed by the whole query, scope included, so an answer is
    /// never served to a query with another scope. Independently of it,
    /// identical queries in flight at once always share one plugin call.
    pub response_ttl_ms: u64,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            max_mib: 32,
            response_ttl_ms: 0,
        }
    }
}

/// The validated configuration, paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file, for messages.
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub server: ServerSection,
    pub plugins: PluginsSection,
    pub sources: Vec<SourceConfig>,
    pub field_classes: crate::model::FieldClasses,
    pub telemetry: TelemetrySection,
    /// The admin listener's address, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Credentials → identities.
    pub auth: std::sync::Arc<lianqiao_policy::Authenticator>,
    /// The loaded, validated policy with the field catalog.
    pub enforcer: lianqiao_policy::Enforcer,
    pub policy: PolicySection,
    pub statistics: StatisticsSection,
    /// The policy directory, resolved.
    pub policy_dir: PathBuf,
    /// The field-class file (`[model] fields`), resolved.
    pub fields_file: PathBuf,
    pub audit: AuditSection,
    /// The audit store's URL, resolved (may carry a password: not logged).
    pub audit_url: String,
    /// `[server.tls]` resolved, if HTTPS is configured.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The extra plain-HTTP listener, if configured.
    pub plaintext_listen: Option<SocketAddr>,
}

/// One validated source.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub file: PathBuf,
    /// The template it is laid over (`template = "…"`), if any.
    pub template: Option<PathBuf>,
    pub name: String,
    pub description: String,
    pub plugin: PathBuf,
    pub sha256: Option<String>,
    pub coverage: Vec<String>,
    pub enrich: Vec<String>,
    pub limits: LimitsSection,
    /// Resolved database URL (a secret: never logged, never given to a plugin).
    pub sql_url: Option<String>,
    pub sql_max_connections: u32,
    /// `[sql.write.statements]`: the declared write statements, if any.
    pub sql_write: Option<std::collections::BTreeMap<String, String>>,
    /// `[plugin.settings]` as JSON, for the plugin's `config` capability.
    pub settings_json: String,
    pub http: Option<HttpConfig>,
    pub cache_max_bytes: usize,
    pub response_ttl_ms: u64,
    pub breaker: BreakerSection,
}

/// A validated `[http]` grant, secrets resolved (never logged).
#[derive(Clone)]
pub struct HttpConfig {
    pub allow: Vec<String>,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
    pub credentials: Vec<(String, ResolvedCredential)>,
    /// TLS for https upstreams (the source's CA, its client certificate).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("allow", &self.allow)
            .field(
                "credentials",
                &self.credentials.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub enum ResolvedCredential {
    Hmac {
        app_key: String,
        secret: String,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        secret: String,
    },
}

/// A source name: 1–64 of a-z, 0-9, `-` and `_` (it names files, metrics
/// and log fields, so nothing else).
pub fn is_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A unified division code (digits only, in the lengths of
/// `lianqiao_policy::division::level_of`), so "inside X" is a plain prefix
/// test everywhere and a code can never smuggle SQL or LIKE syntax.
pub fn is_division_code(code: &str) -> bool {
    lianqiao_policy::division::level_of(code).is_some()
}
