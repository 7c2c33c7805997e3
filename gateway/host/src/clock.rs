//! Sleeping, bounded by the call's deadline.
//!
//! A guest's clocks are frozen (`state::FrozenClock`), but WASI still lets
//! it wait: `monotonic-clock.subscribe-duration` then `pollable.block`
//! (`std::thread::sleep` in a Rust guest). Epoch interruption cannot stop
//! host code, so a guest asking to sleep past its deadline would hold its
//! pool instance long after the request was answered. Here the two subscribe functions are replaced: a wait that
//! ends before the deadline is granted as WASI would grant it; one that
//! would outlast the deadline stops the call at once, as the deadline
//! would have (`PluginError::Deadline`).

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::state::HostState;

/// The interface as `wasmtime_wasi::p2::add_to_linker_sync` defines it
/// (the version of the WIT wasmtime-wasi carries; guests importing any
/// 0.2.x resolve to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replace the subscribe functions WASI linked with bounded ones.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, HostState>, (nanos,): (u64,)| {
            bounded_wait(store.data_mut(), Duration::from_nanos(nanos)).map(|r| (r,))
        },
    )?;
    // The guest's monotonic clock reads 0, so an instant is a wait from now.
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, HostState>, (when,): (u64,)| {
            bounded_wait(store.data_mut(), Duration::from_nanos(when)).map(|r| (r,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn bounded_wait(state: &mut HostState, wait: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    if wait > state.remaining() {
        tracing::debug!(
            source = %state.grants.source,
            wait_ms = wait.as_millis() as u64,
            "the plugin asked to wait past its deadline; the call stops"
        );
        return Err(wasmtime::Trap::Interrupt.into());
    }
    let until = tokio::time::Instant::now() + wait;
    let table = state.table();
    let sleep = table.push(Sleep(until))?;
    subscribe(table, sleep)
}

/// A wait until an instant within the call's deadline.
struct Sleep(tokio::time::Instant);

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}
