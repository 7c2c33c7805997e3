//! A loaded source plugin: compiled once, pre-linked once, instantiated
//! fresh for every call, run on the caller's task (async wasmtime).
//!
//! A fresh instance per call costs 25–40 µs with the pooling allocator and
//! buys isolation: no state leaks between callers, and a trapped instance
//! (which can never be entered again) is simply dropped.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::Linker;

use crate::artifact;
use crate::bindings::v1::SourcePre;
use crate::bindings::{v2, v3, v4};
use crate::capability::cache::SourceCache;
use crate::capability::http::HttpGrant;
use crate::capability::sql::{SqlPool, StatementLog};
use crate::capability::sql_write::SqlWriter;
use crate::contract::{
    AggregateQuery, CONTRACT_VERSION, CONTRACT_VERSIONS, ChangeFeed, Changes, ChangesQuery,
    Command, CommandResult, CountCell, Manifest, Page, Query, Value,
};
use crate::engine::PluginEngine;
use crate::error::{LoadError, PluginError, Violation};
use crate::state::HostState;

/// Per-source limits from the source's `[limits]` section.
#[derive(Debug, Clone)]
pub struct PluginLimits {
    /// Total linear memory of one instance.
    pub memory_mib: u64,
    /// Wall-clock budget of one call: guest code is interrupted at the
    /// deadline, host capabilities stop waiting at it.
    pub deadline: Duration,
    /// Rows one page may carry.
    pub max_rows: u32,
    /// Instances of the plugin alive at once: the source's share of the
    /// engine's pool. A call waits for one (up to its deadline) rather
    /// than take another source's.
    pub instances: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mib: 64,
            deadline: Duration::from_secs(5),
            max_rows: 5000,
            instances: 8,
        }
    }
}

/// What a source's plugin may reach. Secrets stay here, on the host side.
#[derive(Debug)]
pub struct SourceGrants {
    pub source: String,
    /// `[plugin.settings]` as a JSON object; non-secret by construction.
    pub settings_json: String,
    pub sql: Option<SqlPool>,
    /// The write grant (`[sql.write]`), contract 0.2 plugins only.
    pub sql_write: Option<SqlWriter>,
    pub http: Option<Arc<HttpGrant>>,
    pub cache: SourceCache,
    pub sql_log: StatementLog,
}

/// Everything needed to load one source's plugin.
#[derive(Debug)]
pub struct SourceSpec {
    pub name: String,
    pub wasm: PathBuf,
    /// The sha256 the config pins the plugin to, if any.
    pub sha256: Option<String>,
    pub limits: PluginLimits,
    pub grants: SourceGrants,
}

/// A component seen through the newest contract it fits.
#[derive(Clone)]
enum Contract {
    /// 0.1: reads only.
    V1(SourcePre<HostState>),
    /// 0.2: 0.1's reads (seen through 0.1's bindings) and `command`.
    V2(SourcePre<HostState>, v2::SourcePre<HostState>),
    /// 0.3: counts carry record digests.
    V3(v3::SourcePre<HostState>),
    /// 0.4: rows as one buffer, typed time, changes since a watermark.
    V4(v4::SourcePre<HostState>),
}

/// A source plugin ready to serve calls.
pub struct SourcePlugin {
    name: String,
    engine: PluginEngine,
    contract: Contract,
    limits: PluginLimits,
    /// The source's share of the pool: one permit per instance.
    share: Arc<tokio::sync::Semaphore>,
    grants: Arc<SourceGrants>,
    manifest: Manifest,
    /// The entities whose changes it lists (contract 0.4).
    change_feeds: Vec<ChangeFeed>,
    sha256: String,
    stats: Arc<PluginStats>,
}

/// What `describe` says, from a plugin of any contract version.
struct Described {
    manifest: Manifest,
    change_feeds: Vec<ChangeFeed>,
}

/// Counters of a plugin's instances, for the gateway's metrics.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Instances created (one per call).
    pub instantiations: AtomicU64,
    /// Time spent instantiating, in total.
    pub instantiate_nanos: AtomicU64,
    /// Instances alive now.
    pub in_use: AtomicI64,
    /// The most linear memory one call has used, in bytes.
    pub memory_peak_bytes: AtomicU64,
    /// Calls stopped at the memory cap.
    pub memory_limit_hits: AtomicU64,
}

impl std::fmt::Debug for SourcePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourcePlugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl SourcePlugin {
    /// Compile (or load precompiled), link against the host capabilities,
    /// then call `describe` and check the manifest against the contract.
    pub async fn load(engine: &PluginEngine, spec: SourceSpec) -> Result<Self, LoadError> {
        let file = artifact::read(&spec.wasm)?;
        if let Some(expected) = &spec.sha256
            && !expected.eq_ignore_ascii_case(&file.sha256)
        {
            return Err(LoadError::Digest {
                path: spec.wasm.display().to_string(),
                expected: expected.clone(),
                actual: file.sha256,
            });
        }
        let file_sha = file.sha256.clone();
        let component = engine.component(&spec.wasm, file).await?;

        let link_error = |e: wasmtime::Error| LoadError::Link {
            path: spec.wasm.display().to_string(),
            reason: format!("{e:#}"),
        };
        let mut linker: Linker<HostState> = Linker::new(&engine.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
        crate::clock::add_to_linker(&mut linker).map_err(link_error)?;
        // 0.2's imports are 0.1's plus `sql-write`: one linker serves both.
        v2::Source::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(link_error)?;
        // 0.3's imports are 0.2's; 0.4 adds `sql-rows`.
        v4::lianqiao::source0_4_0::sql_rows::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(link_error)?;
        let pre = linker.instantiate_pre(&component).map_err(link_error)?;
        let contract = if let Ok(v4) = v4::SourcePre::new(pre.clone()) {
            Contract::V4(v4)
        } else if let Ok(v3) = v3::SourcePre::new(pre.clone()) {
            Contract::V3(v3)
        } else {
            {
                let writer = v2::SourcePre::new(pre.clone()).ok();
                let reads = SourcePre::new(pre).map_err(link_error)?;
                match writer {
                    Some(writer) => Contract::V2(reads, writer),
                    None => Contract::V1(reads),
                }
            }
        };

        let mut plugin = SourcePlugin {
            name: spec.name,
            engine: engine.clone(),
            contract,
            share: Arc::new(tokio::sync::Semaphore::new(
                spec.limits.instances.max(1) as usize
            )),
            limits: spec.limits,
            grants: Arc::new(spec.grants),
            manifest: Manifest {
                name: String::new(),
                version: String::new(),
                sdk_version: String::new(),
                entities: vec![],
            },
            change_feeds: vec![],
            sha256: file_sha,
            stats: Arc::default(),
        };
        let described = plugin.run(Describe).await.map_err(LoadError::Describe)?;
        check_manifest(&described.manifest, plugin.contract_version())?;
        if let Some(feed) = described.change_feeds.iter().find(|f| {
            !described
                .manifest
                .entities
                .iter()
                .any(|e| e.name == f.entity)
        }) {
            return Err(LoadError::Manifest(format!(
                "lists changes of `{}`, an entity it does not serve",
                feed.entity
            )));
        }
        plugin.manifest = described.manifest;
        plugin.change_feeds = described.change_feeds;
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// The last statements the source's database received (oldest first).
    pub fn recent_statements(&self) -> Vec<(String, Vec<Value>)> {
        self.grants.sql_log.recent()
    }

    /// The database's plan for the last statement this source's plugin ran
    /// (`None` without a SQL grant or before any statement).
    pub async fn explain_last_statement(
        &self,
    ) -> Option<(String, Result<Vec<String>, crate::contract::SqlError>)> {
        let pool = self.grants.sql.as_ref()?;
        let (sql, params) = self.grants.sql_log.recent().pop()?;
        let plan = pool.explain(&sql, &params).await;
        Some((sql, plan))
    }

    /// One page of one entity, checked against the contract: the declared
    /// columns, at most `limit` rows, every row inside the scope and in
    /// (`division`, `id`) order.
    pub async fn query(&self, query: Query) -> Result<Page, PluginError> {
        let scope = query.scope.clone();
        let limit = query.limit.min(self.limits.max_rows);
        let mut query = query;
        query.limit = limit;
        let page = self.run(Read(query)).await?;
        check_page(&page, &scope, limit)?;
        Ok(page)
    }

    /// The contract version the component was loaded through.
    pub fn contract_version(&self) -> &'static str {
        match self.contract {
            Contract::V1(_) => "0.1",
            Contract::V2(..) => "0.2",
            Contract::V3(_) => "0.3",
            Contract::V4(_) => "0.4",
        }
    }

    /// Whether its counts carry record digests (contract 0.3 and later).
    pub fn counts_records(&self) -> bool {
        matches!(self.contract, Contract::V3(_) | Contract::V4(_))
    }

    /// The entities whose changes the plugin lists (contract 0.4).
    pub fn change_feeds(&self) -> &[ChangeFeed] {
        &self.change_feeds
    }

    /// The rows of an entity changed after a watermark (contract 0.4),
    /// checked as pages are: the declared columns, at most `limit` rows and
    /// deletions together, each inside the scope.
    pub async fn changes(&self, query: ChangesQuery) -> Result<Changes, PluginError> {
        if !self.change_feeds.iter().any(|f| f.entity == query.entity) {
            return Err(PluginError::Source(
                crate::contract::SourceError::Unsupported(format!(
                    "the plugin of `{}` lists no changes of `{}` (contract {})",
                    self.name,
                    query.entity,
                    self.contract_version()
                )),
            ));
        }
        let scope = query.scope.clone();
        let mut query = query;
        query.limit = query.limit.min(self.limits.max_rows);
        let limit = query.limit;
        let changes = self.run(ListChanges(query)).await?;
        let found = changes.rows.len() + changes.deleted.len();
        if found > limit as usize {
            return Err(PluginError::Contract(Violation::TooManyChanges {
                found,
                limit,
            }));
        }
        let page = Page {
            columns: changes.columns.clone(),
            rows: vec![],
            next_cursor: None,
        };
        for row in &changes.rows {
            if row.len() != changes.columns.len() {
                return Err(PluginError::Contract(Violation::RowWidth {
                    cells: row.len(),
                    columns: changes.columns.len(),
                }));
            }
            let division = text_cell(&page, row, "division")?;
            text_cell(&page, row, "id")?;
            if !scope.iter().any(|s| division.starts_with(s.as_str())) {
                return Err(PluginError::Contract(Violation::RowOutsideScope));
            }
        }
        if changes
            .deleted
            .iter()
            .any(|t| !scope.iter().any(|s| t.division.starts_with(s.as_str())))
        {
            return Err(PluginError::Contract(Violation::TombstoneOutsideScope));
        }
        Ok(changes)
    }

    /// Counts for an entity the manifest marks `aggregates`; with
    /// `digests`, each cell's record digest when the plugin is a 0.3 one.
    pub async fn aggregate(
        &self,
        query: AggregateQuery,
        digests: bool,
    ) -> Result<Vec<CountCell>, PluginError> {
        let scope = query.scope.clone();
        let cells = self.run(Count { query, digests }).await?;
        for cell in &cells {
            if let Some(d) = &cell.division
                && !scope
                    .iter()
                    .any(|s| d.starts_with(s.as_str()) || s.starts_with(d.as_str()))
            {
                return Err(PluginError::Contract(Violation::CountOutsideScope));
            }
            if cell.count < 0 {
                return Err(PluginError::Contract(Violation::NegativeCount));
            }
        }
        Ok(cells)
    }

    /// Whether the plugin takes commands (contract 0.2 and later).
    pub fn takes_commands(&self) -> bool {
        !matches!(self.contract, Contract::V1(_))
    }

    /// Apply one command (contract 0.2), under the same limits as reads.
    pub async fn command(
        &self,
        command: Command,
        idempotency_key: String,
    ) -> Result<CommandResult, PluginError> {
        if let Contract::V1(_) = self.contract {
            return Err(PluginError::Command(
                crate::contract::CommandError::Unsupported(format!(
                    "the plugin of `{}` is built against contract 0.1, which has no writes",
                    self.name
                )),
            ));
        }
        self.run(Apply {
            command,
            idempotency_key,
        })
        .await
    }

    /// Run one export in a fresh instance, under the source's deadline
    /// and memory cap, once the source's share of the pool has an instance
    /// free (waiting for one up to the deadline: a busy share is
    /// back-pressure, not a failure of the source).
    ///
    /// The guest runs on this task's thread (a fiber), yielding to tokio
    /// at every epoch tick; host capabilities await on the same thread. A
    /// caller that goes away drops the call, instance and all.
    async fn run<E: Export>(&self, export: E) -> Result<E::Output, PluginError> {
        let waited =
            tokio::time::timeout(self.limits.deadline, self.share.clone().acquire_owned()).await;
        let Ok(Ok(_instance)) = waited else {
            return Err(PluginError::Busy(format!(
                "all {} instances of this source's plugin stayed in use for its deadline ({} ms)",
                self.limits.instances,
                self.limits.deadline.as_millis()
            )));
        };
        let limits = &self.limits;
        let cap = usize::try_from(limits.memory_mib << 20).unwrap_or(usize::MAX);
        let deadline = Instant::now() + limits.deadline;
        let trace = crate::trace::TraceContext::current();
        let span = tracing::info_span!("plugin.call", source = %self.name);
        let mut store = Store::new(
            &self.engine.engine,
            HostState::new(self.grants.clone(), cap, deadline, trace),
        );
        store.limiter(|state| &mut state.memory);
        // Each tick: past the deadline the guest stops (a trap the host
        // names `Deadline`), else it yields so other requests on this
        // worker run.
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store.set_epoch_deadline(1);
        let _in_use = InUse::enter(&self.stats);
        let outcome = tracing::Instrument::instrument(
            export.call(&self.contract, &mut store, &self.stats),
            span,
        )
        .await;
        let memory = store.data().memory.used as u64;
        self.stats
            .memory_peak_bytes
            .fetch_max(memory, Ordering::Relaxed);
        if store.data().memory.exceeded {
            self.stats.memory_limit_hits.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(classify(&e, &store, limits)),
        }
    }
}

/// Counts a call as in use while it lives (a dropped call included).
struct InUse<'a>(&'a PluginStats);

impl<'a> InUse<'a> {
    fn enter(stats: &'a PluginStats) -> Self {
        stats.in_use.fetch_add(1, Ordering::Relaxed);
        InUse(stats)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pre-instantiated world of one contract version.
trait Pre: Sync {
    type World: Send;
    fn instantiate_in<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
    ) -> impl Future<Output = wasmtime::Result<Self::World>> + Send + 'a;
}

/// Each version's generated `SourcePre` instantiates the same way; only
/// the world type differs.
macro_rules! pre_for {
    ($($pre:ty => $world:ty),* $(,)?) => {$(
        impl Pre for $pre {
            type World = $world;
            fn instantiate_in<'a>(
                &'a self,
                store: &'a mut Store<HostState>,
            ) -> impl Future<Output = wasmtime::Result<Self::World>> + Send + 'a {
                self.instantiate_async(store)
            }
        }
    )*};
}

pre_for! {
    SourcePre<HostState> => crate::bindings::v1::Source,
    v2::SourcePre<HostState> => v2::Source,
    v3::SourcePre<HostState> => v3::Source,
    v4::SourcePre<HostState> => v4::Source,
}

/// Instantiate `pre` in `store`, timing it for the plugin's stats.
async fn instantiate<P: Pre>(
    stats: &PluginStats,
    store: &mut Store<HostState>,
    pre: &P,
) -> wasmtime::Result<P::World> {
    let began = Instant::now();
    let world = tracing::Instrument::instrument(
        pre.instantiate_in(store),
        tracing::info_span!("plugin.instantiate"),
    )
    .await;
    stats
        .instantiate_nanos
        .fetch_add(began.elapsed().as_nanos() as u64, Ordering::Relaxed);
    stats.instantiations.fetch_add(1, Ordering::Relaxed);
    world
}

/// One export of the contract, called through the bindings of the
/// version the component was loaded with. The outer error is wasmtime's
/// (a trap, the deadline, the memory cap); the inner one the plugin's.
trait Export: Send {
    type Output: Send;
    fn call<'a>(
        self,
        contract: &'a Contract,
        store: &'a mut Store<HostState>,
        stats: &'a PluginStats,
    ) -> impl Future<Output = wasmtime::Result<Result<Self::Output, PluginError>>> + Send + 'a;
}

/// `describe`.
struct Describe;
/// `changes` (0.4).
struct ListChanges(ChangesQuery);
/// `query`.
struct Read(Query);
/// `aggregate`, with record digests when asked (0.3).
struct Count {
    query: AggregateQuery,
    digests: bool,
}
/// `command` (0.2 and later).
struct Apply {
    command: Command,
    idempotency_key: String,
}

impl Export for Describe {
    type Output = Described;
    async fn call(
        self,
        contract: &Contract,
        store: &mut Store<HostState>,
        stats: &PluginStats,
    ) -> wasmtime::Result<Result<Described, PluginError>> {
        let only = |manifest: Manifest| Described {
            manifest,
            change_feeds: vec![],
        };
        let described = match contract {
            Contract::V1(pre) | Contract::V2(pre, _) => {
                let source = instantiate(stats, store, pre).await?;
                source.call_describe(store).await?.map(only)
            }
            Contract::V3(pre) => {
                let source = instantiate(stats, store, pre).await?;
                source.call_describe(store).await?.map(only)
            }
            Contract::V4(pre) => {
                let source = instantiate(stats, store, pre).await?;
                source.call_describe(store).await?.map(|d| Described {
                    manifest: d.manifest,
                    change_feeds: d.change_feeds,
                })
            }
        };
        Ok(described.map_err(PluginError::Source))
    }
}

impl Export for ListChanges {
    type Output = Changes;
    async fn call(
        self,
        contract: &Contract,
        store: &mut Store<HostState>,
        stats: &PluginStats,
    ) -> wasmtime::Result<Result<Changes, PluginError>> {
        let Contract::V4(pre) = contract else {
            return Ok(Err(PluginError::Source(
                crate::contract::SourceError::Unsupported("changes need contract 0.4".into()),
            )));
        };
        let source = instantiate(stats, store, pre).await?;
        let page = match source.call_changes(store, &self.0).await? {
            Ok(page) => page,
            Err(e) => return Ok(Err(PluginError::Source(e))),
        };
        Ok(crate::rows::decode(&page.rows).map(|rows| Changes {
            columns: page.rows.columns,
            rows,
            deleted: page.deleted,
            watermark: page.watermark,
            more: page.more,
        }))
    }
}

impl Export for Read {
    type Output = Page;
    async fn call(
        self,
        contract: &Contract,
        store: &mut Store<HostState>,
        stats: &PluginStats,
    ) -> wasmtime::Result<Result<Page, PluginError>> {
        let page = match contract {
            Contract::V1(pre) | Contract::V2(pre, _) => {
                let source = instantiate(stats, store, pre).await?;
                source.call_query(store, &self.0).await?
            }
            Contract::V3(pre) => {
                let source = instantiate(stats, store, pre).await?;
                source.call_query(store, &self.0).await?
            }
            Contract::V4(pre) => {
                let source = instantiate(stats, store, pre).await?;
                return Ok(match source.call_query(store, &self.0).await? {
                    Ok(page) => crate::rows::decode(&page.rows).map(|rows| Page {
                        columns: page.rows.columns,
                        rows,
                        next_cursor: page.next_cursor,
                    }),
                    Err(e) => Err(PluginError::Source(e)),
                });
            }
        };
        Ok(page.map_err(PluginError::Source))
    }
}

impl Export for Count {
    type Output = Vec<CountCell>;
    async fn call(
        self,
        contract: &Contract,
        store: &mut Store<HostState>,
        stats: &PluginStats,
    ) -> wasmtime::Result<Result<Vec<CountCell>, PluginError>> {
        let cells = match contract {
            // Before 0.3 a cell carries no digest.
            Contract::V1(pre) | Contract::V2(pre, _) => {
                let source = instantiate(stats, store, pre).await?;
                source
                    .call_aggregate(store, &self.query)
                    .await?
                    .map(|cells| {
                        cells
                            .into_iter()
                            .map(|c| CountCell {
                                division: c.division,
                                key: c.key,
                                count: c.count,
                                digest: None,
                            })
                            .collect()
                    })
            }
            Contract::V3(_) | Contract::V4(_) => {
                let digests = self.digests;
                let asked = v3::lianqiao::source0_3_0::counting::CountQuery {
                    query: self.query,
                    digests,
                };
                let answer = if let Contract::V4(pre) = contract {
                    let source = instantiate(stats, store, pre).await?;
                    source.call_aggregate(store, &asked).await?
                } else if let Contract::V3(pre) = contract {
                    let source = instantiate(stats, store, pre).await?;
                    source.call_aggregate(store, &asked).await?
                } else {
                    return Ok(Err(PluginError::Trap("no 0.3 aggregate".into())));
                };
                answer.map(|cells| {
                    cells
                        .into_iter()
                        .map(|c| CountCell {
                            division: c.division,
                            key: c.key,
                            count: c.count,
                            digest: digests.then_some(c.digest),
                        })
                        .collect()
                })
            }
        };
        Ok(cells.map_err(PluginError::Source))
    }
}

impl Export for Apply {
    type Output = CommandResult;
    async fn call(
        self,
        contract: &Contract,
        store: &mut Store<HostState>,
        stats: &PluginStats,
    ) -> wasmtime::Result<Result<CommandResult, PluginError>> {
        let result = match contract {
            Contract::V1(_) => {
                return Ok(Err(PluginError::Command(
                    crate::contract::CommandError::Unsupported("contract 0.1 has no writes".into()),
                )));
            }
            Contract::V2(_, pre) => {
                let source = instantiate(stats, store, pre).await?;
                source
                    .call_command(store, &self.command, &self.idempotency_key)
                    .await?
            }
            Contract::V3(pre) => {
                let source = instantiate(stats, store, pre).await?;
                source
                    .call_command(store, &self.command, &self.idempotency_key)
                    .await?
            }
            Contract::V4(pre) => {
                let source = instantiate(stats, store, pre).await?;
                source
                    .call_command(store, &self.command, &self.idempotency_key)
                    .await?
            }
        };
        Ok(result.map_err(PluginError::Command))
    }
}

/// Name what stopped a call: memory cap, deadline, full pool or a trap.
fn classify(e: &wasmtime::Error, store: &Store<HostState>, limits: &PluginLimits) -> PluginError {
    if store.data().memory.exceeded {
        return PluginError::MemoryLimit {
            cap_mib: limits.memory_mib,
        };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt {
            return PluginError::Deadline {
                deadline_ms: limits.deadline.as_millis() as u64,
            };
        }
        return PluginError::Trap(trap.to_string());
    }
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        // The pool is sized to the sum of the sources' shares, so this is
        // a sizing bug, not load: say so loudly.
        tracing::error!(error = %e, "the plugin pool is smaller than the sources' shares");
        return PluginError::Busy(format!("{e:#}"));
    }
    PluginError::Trap(format!("{e:#}"))
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check_manifest(m: &Manifest, exported: &str) -> Result<(), LoadError> {
    let declared = m
        .sdk_version
        .rsplit_once('.')
        .map(|(major_minor, _)| major_minor);
    if !declared.is_some_and(|v| CONTRACT_VERSIONS.contains(&v)) {
        return Err(LoadError::Manifest(format!(
            "built against contract {}, the host implements {} (newest {CONTRACT_VERSION})",
            m.sdk_version,
            CONTRACT_VERSIONS.join(", ")
        )));
    }
    // A 0.3 or 0.4 manifest on a component without that version's exports
    // (or the other way round) was built with mismatched bindings: its
    // counts and rows would be read as what they are not.
    let distinct = |v: &str| matches!(v, "0.3" | "0.4");
    if (declared.is_some_and(distinct) || distinct(exported)) && declared != Some(exported) {
        return Err(LoadError::Manifest(format!(
            "declares contract {} but exports the world of contract {exported}",
            m.sdk_version
        )));
    }
    if m.entities.is_empty() {
        return Err(LoadError::Manifest("serves no entity".into()));
    }
    for entity in &m.entities {
        for required in ["id", "division"] {
            if !entity.fields.iter().any(|f| f.name == required) {
                return Err(LoadError::Manifest(format!(
                    "entity `{}` lacks the required field `{required}`",
                    entity.name
                )));
            }
        }
        if let Some(bad) = entity.fields.iter().find(|f| !is_field_name(&f.name)) {
            return Err(LoadError::Manifest(format!(
                "entity `{}`: `{}` is not a valid field name",
                entity.name, bad.name
            )));
        }
    }
    Ok(())
}

fn text_cell<'a>(
    page: &'a Page,
    row: &'a [Value],
    name: &'static str,
) -> Result<&'a str, PluginError> {
    let i = page
        .columns
        .iter()
        .position(|c| c == name)
        .ok_or(PluginError::Contract(Violation::MissingColumn(name)))?;
    match row.get(i) {
        Some(Value::Text(s)) => Ok(s),
        _ => Err(PluginError::Contract(Violation::WrongKind {
            field: name,
            expected: "text",
        })),
    }
}

/// A page must respect scope, limit and order; a plugin that breaks any of
/// them fails its source rather than leaking or corrupting pages.
fn check_page(page: &Page, scope: &[String], limit: u32) -> Result<(), PluginError> {
    if page.rows.len() > limit as usize {
        return Err(PluginError::Contract(Violation::TooManyRows {
            rows: page.rows.len(),
            limit,
        }));
    }
    let mut previous: Option<(&str, &str)> = None;
    for row in &page.rows {
        if row.len() != page.columns.len() {
            return Err(PluginError::Contract(Violation::RowWidth {
                cells: row.len(),
                columns: page.columns.len(),
            }));
        }
        let division = text_cell(page, row, "division")?;
        let id = text_cell(page, row, "id")?;
        if !scope.iter().any(|s| division.starts_with(s.as_str())) {
            return Err(PluginError::Contract(Violation::RowOutsideScope));
        }
        if let Some(prev) = previous
            && prev >= (division, id)
        {
            return Err(PluginError::Contract(Violation::OutOfOrder));
        }
        previous = Some((division, id));
    }
    Ok(())
}
