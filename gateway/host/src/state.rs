//! Per-call store state: the guest's WASI context (which grants nothing),
//! its memory limiter, its deadline and the source's grants.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::plugin::SourceGrants;

pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    pub(crate) grants: Arc<SourceGrants>,
    /// When this call must be over; host capabilities bound their own
    /// waits by it, since epoch interruption cannot stop host code.
    pub(crate) deadline: Instant,
    /// The trace of the request this call serves, for outgoing requests.
    pub(crate) trace: Option<crate::trace::TraceContext>,
}

/// A clock that never moves: plugins get no time source (no timing side
/// channels, no clock-based sleeping; the host keeps time for them).
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl HostState {
    pub(crate) fn new(
        grants: Arc<SourceGrants>,
        memory_cap: usize,
        deadline: Instant,
        trace: Option<crate::trace::TraceContext>,
    ) -> Self {
        HostState {
            // No args, no environment, no preopened directories, no sockets,
            // and clocks frozen at the epoch: a plugin reaches the world only
            // through our capabilities, and cannot time anything.
            wasi: WasiCtx::builder()
                .wall_clock(FrozenClock)
                .monotonic_clock(FrozenClock)
                .build(),
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(memory_cap),
            grants,
            deadline,
            trace,
        }
    }

    /// Time left before the deadline (zero when past it).
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The WASI resource table (pollables live there).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps the total linear memory of one plugin instance and remembers that
/// it did, so the host reports "memory limit", not a bare trap.
pub(crate) struct MemoryLimiter {
    cap: usize,
    pub(crate) used: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    fn new(cap: usize) -> Self {
        MemoryLimiter {
            cap,
            used: 0,
            exceeded: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used - current.min(self.used) + desired;
        if total > self.cap {
            self.exceeded = true;
            // An error (not `Ok(false)`) traps at once instead of letting
            // the guest's allocator abort somewhere less legible.
            return Err(wasmtime::Error::msg(format!(
                "memory cap of {} bytes reached (wanted {total})",
                self.cap
            )));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 16)
    }
}
