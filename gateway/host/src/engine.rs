//! One wasmtime engine for all sources: pooling allocator, epoch ticker,
//! precompiled-artifact cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::artifact::{self, PluginFile};
use crate::error::LoadError;

/// How often the epoch advances. Deadlines are whole ticks, so a deadline
/// is enforced to within one tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bytes of a call's fiber stack kept resident when it returns to the
/// pool. wasmtime zeroes this much of the stack (a memset) at the end of
/// every call and decommits the rest, which the next call faults back in
/// as far as it reaches: enough for a call's usual depth, no more. The
/// pool hands out used stacks before fresh ones, so only as many stacks
/// as calls ever ran at once hold this (at region scale: the calls in
/// flight, not the 100+ sources' shares).
const STACK_KEEP_RESIDENT: usize = 128 << 10;

/// How instance memories and tables are allocated (`plugins.allocator`:
/// `"pooling"` or `"on-demand"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    /// Slots reserved up front (~`pool_instances` × 4 × (memory + guard) of
    /// address space): instantiation reuses warm slots, 25–40 µs a call.
    /// The production choice.
    #[default]
    Pooling,
    /// `mmap` per instance, sized to the memory cap. Slower to instantiate,
    /// but reserves no address space up front, so the gateway runs under
    /// valgrind (which refuses terabyte reservations) and in tight
    /// `ulimit -v` sandboxes. `pool_instances` does not bound it.
    OnDemand,
}

/// Engine-wide settings from `[plugins]` in the gateway config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Pooling (production) or on-demand (profilers, small address spaces).
    pub allocator: Allocator,
    /// Plugin instances that may be alive at once, across all sources: the
    /// sum of the sources' shares (`PluginLimits::instances`), so no source
    /// can find the pool taken by others.
    pub pool_instances: u32,
    /// The largest linear memory any source may be granted, in MiB.
    pub max_memory_mib: u64,
    /// Where compiled plugins are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Pooling only: how much of a finished instance's linear memory is
    /// reset in place (only the pages it touched, found with the kernel's
    /// `PAGEMAP_SCAN` where available) instead of being handed back to the
    /// kernel with `madvise`. Each `madvise` of a used slot shoots down TLB
    /// entries on every core and the next instance faults its pages back
    /// in; resetting in place costs a `memset` instead. Measured on the
    /// project's machine, 4 MiB cost 7–29% more CPU per plugin request
    /// than 0, so the default is 0 (BENCHMARKS.md, "Instance memory reset").
    pub keep_resident_kib: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            allocator: Allocator::Pooling,
            pool_instances: 64,
            max_memory_mib: 256,
            cache_dir: None,
            keep_resident_kib: 0,
        }
    }
}

/// The shared engine. Cheap to clone; the epoch ticker stops with the last
/// clone.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) settings: EngineSettings,
    /// Compiled components by the plugin's sha256: a hundred districts
    /// served by one `district-sql` share one compiled copy.
    components: Arc<Mutex<HashMap<String, Component>>>,
    _ticker: Arc<EpochTicker>,
}

impl PluginEngine {
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let max_memory = settings.max_memory_mib << 20;
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.parallel_compilation(true);
        match settings.allocator {
            Allocator::Pooling => {
                // A Rust wasm32-wasip2 component holds a few core instances
                // (the program plus WASI adapters), each with a memory and
                // tables.
                let instances = settings.pool_instances.max(1);
                let mut pool = PoolingAllocationConfig::default();
                pool.total_component_instances(instances);
                pool.total_core_instances(instances * 8);
                pool.total_memories(instances * 4);
                pool.total_tables(instances * 8);
                // One fiber stack per call in flight (calls are async).
                // A stack returned to the pool keeps its top pages (as a
                // blocking thread's stack did): decommitting them all
                // made every call fault its stack in again.
                pool.total_stacks(instances);
                pool.async_stack_keep_resident(STACK_KEEP_RESIDENT);
                pool.max_memory_size(usize::try_from(max_memory)?);
                let keep = usize::try_from(settings.keep_resident_kib << 10)?;
                pool.linear_memory_keep_resident(keep);
                pool.table_keep_resident(keep.min(64 << 10));
                // Reset only the pages a call dirtied (Linux ≥ 6.7); older
                // kernels fall back to resetting the low `keep` bytes.
                pool.pagemap_scan(wasmtime::Enabled::Auto);
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            }
            Allocator::OnDemand => {
                // Reserve only the cap (not wasmtime's default 4 GiB plus
                // guard) so each instance maps what it may use; bounds
                // checks become explicit, which is the price of the mode.
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                config.memory_reservation(max_memory);
                config.memory_guard_size(64 << 10);
            }
        }
        let engine = Engine::new(&config)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(PluginEngine {
            engine,
            settings,
            components: Arc::default(),
            _ticker: Arc::new(ticker),
        })
    }

    /// The compiled component of `file` (read from `path`): compiled once
    /// per engine and digest, from the artifact cache when it holds it.
    pub(crate) async fn component(
        &self,
        path: &Path,
        file: PluginFile,
    ) -> Result<Component, LoadError> {
        if let Some(c) = self.lock_components().get(&file.sha256) {
            return Ok(c.clone());
        }
        let engine = self.engine.clone();
        let cache_dir = self.settings.cache_dir.clone();
        let wasm = path.to_path_buf();
        let sha = file.sha256.clone();
        // Compiling is CPU work of up to a second: keep it off the reactor.
        let component = tokio::task::spawn_blocking(move || {
            artifact::compile(&engine, cache_dir.as_deref(), &wasm, &file)
        })
        .await
        .map_err(|e| LoadError::Compile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })??;
        // Two loads of one digest at once compile twice; the first kept wins.
        Ok(self
            .lock_components()
            .entry(sha)
            .or_insert(component)
            .clone())
    }

    /// Distinct compiled components held.
    pub fn components(&self) -> usize {
        self.lock_components().len()
    }

    fn lock_components(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        match self.components.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A thread that advances the engine's epoch every tick, so guest code
/// past its deadline is interrupted wherever it is.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("lianqiao-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        if let Err(e) = spawned {
            // Without a ticker no deadline fires; refuse to pretend otherwise.
            tracing::error!(error = %e, "cannot start the epoch ticker: plugin deadlines are not enforced");
        }
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
