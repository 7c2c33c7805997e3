//! The wide lane: wide requests (a region or city query over many
//! sources) run, whole, on threads of their own at a lower CPU priority,
//! so a district user's request is never queued behind them.
//!
//! Slots (`FanOut::call`) bound how many of a region query's source calls
//! run at once, but the rest of its work — planning, merging hundreds of
//! rows, the disclosure gate's decisions, the JSON — ran on the same
//! tokio workers as a district user's request, and a tokio worker does not
//! preempt: one region page in a poll delays every request queued behind
//! it (on one CPU with 16 region clients, a district user's p99 rose 2.9×;
//! BENCHMARKS.md, "The whole region"). The kernel does preempt: a runtime
//! whose threads (its workers, where the plugin calls run as fibers and
//! SQLite statements run in place, and the blocking threads that stand in
//! for a worker while a statement runs; `lianqiao_host::priority`) have a
//! higher nice value gets ~1/10 of the CPU at nice 10 while a
//! nice-0 thread wants it, and all of it otherwise. Nice values can only
//! be raised by an unprivileged process, so the threads are the lane's
//! own and stay niced for their life.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};

use tokio::runtime::{Handle, Runtime};

/// The lane of one nice value: created on first use, kept for the life of
/// the process (a runtime must not be dropped inside another, and a
/// configuration reload that keeps the value keeps the threads).
fn runtime(nice: i32) -> Option<Handle> {
    static LANES: OnceLock<Mutex<HashMap<i32, &'static Runtime>>> = OnceLock::new();
    let lanes = LANES.get_or_init(Mutex::default);
    let mut lanes = lanes.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(runtime) = lanes.get(&nice) {
        return Some(runtime.handle().clone());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let built = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        // A SQLite statement on the lane runs in `block_in_place`, whose
        // worker hands its queue to a blocking thread meanwhile. At most
        // one such thread per CPU: every runnable lowered thread adds to
        // the lane's share of the CPU against a district user's request
        // (nice 10 weighs ~1/10 of nice 0, per thread).
        .max_blocking_threads(cpus)
        .thread_name("lq-wide")
        .on_thread_start(move || lianqiao_host::priority::lower_this_thread(nice))
        .enable_all()
        .build();
    match built {
        Ok(runtime) => {
            let runtime: &'static Runtime = Box::leak(Box::new(runtime));
            lanes.insert(nice, runtime);
            Some(runtime.handle().clone())
        }
        Err(e) => {
            tracing::warn!(error = %e, "no threads for wide requests: they run beside narrow ones");
            None
        }
    }
}

/// Where wide requests run (`server.wide_request_nice`).
#[derive(Debug, Clone, Default)]
pub struct WideLane {
    handle: Option<Handle>,
}

impl WideLane {
    /// The lane at `nice` (1..=19); 0: wide requests run beside narrow ones.
    pub fn new(nice: u8) -> WideLane {
        WideLane {
            handle: (nice > 0)
                .then(|| runtime(i32::from(nice.min(19))))
                .flatten(),
        }
    }

    /// Run `work` on the lane when `wide`, else here. The caller's span
    /// and trace context go with it; the work is aborted when the caller goes away (a
    /// client that hangs up does not leave a region query running).
    pub async fn run<F>(&self, wide: bool, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        use tracing::Instrument;
        let Some(handle) = self.handle.as_ref().filter(|_| wide) else {
            return work.await;
        };
        // Task-locals stay behind with the task: the trace context the
        // plugin calls propagate goes along explicitly.
        let trace = lianqiao_host::trace::TRACE_CONTEXT
            .try_with(Clone::clone)
            .ok();
        let work = async move {
            match trace {
                Some(trace) => lianqiao_host::trace::TRACE_CONTEXT.scope(trace, work).await,
                None => work.await,
            }
        };
        let task = AbortOnDrop(handle.spawn(work.in_current_span()));
        match task.await {
            Ok(output) => output,
            // The lane's runtime is never shut down, so the task ended by
            // panicking: carry the panic on, as if it had run here.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: getpriority and gettid take no pointers.
        unsafe {
            libc::getpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
            )
        }
    }

    #[tokio::test]
    async fn wide_work_runs_niced_and_narrow_work_does_not() {
        let here = nice_of_this_thread();
        let lane = WideLane::new(7);
        let wide = lane.run(true, async { nice_of_this_thread() }).await;
        assert_eq!(wide, (here + 7).min(19));
        // Its blocking pool too (a thread inherits its maker's nice value).
        let blocking = lane
            .run(true, async {
                tokio::task::spawn_blocking(nice_of_this_thread)
                    .await
                    .unwrap()
            })
            .await;
        assert_eq!(blocking, (here + 7).min(19));
        assert_eq!(lane.run(false, async { nice_of_this_thread() }).await, here);
        assert_eq!(
            WideLane::new(0)
                .run(true, async { nice_of_this_thread() })
                .await,
            here
        );
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_stops_the_work() {
        let lane = WideLane::new(5);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let run = lane.run(true, async move {
            let _alive = tx;
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), run).await;
        // The work was dropped with its sender: the channel closes.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        assert_eq!(closed, Ok(None));
    }

    #[tokio::test]
    #[should_panic(expected = "boom")]
    async fn a_panic_on_the_lane_is_the_callers() {
        WideLane::new(3).run(true, async { panic!("boom") }).await
    }
}
