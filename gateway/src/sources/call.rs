//! The one source-call stack: lists, statistics, enrichment and health
//! checks all reach a source's plugin through [`Source::query`] or
//! [`Source::aggregate`], in this order:
//!
//! 1. **cache** — a fresh answer to the very same call is served as is and
//!    never touches the breaker (`cache.response_ttl_ms`, off by default);
//!    and identical calls in flight share one plugin call (coalescing,
//!    always on for reads): the followers wait, within the deadline, for
//!    the leader's outcome;
//! 2. **deadline** — everything below, waits and a retry included, ends at
//!    the source's deadline (plus a grace for the host to report its own);
//! 3. **retry budget** — one more try of a transient failure while half the
//!    deadline is left and the source's budget allows (~20% extra load at
//!    most);
//! 4. **breaker permit** — refused at once while the circuit is open; a
//!    half-open probe's permit records a failure if dropped without a
//!    verdict (a cancelled or timed-out call);
//! 5. **concurrency limit** — a slot among `limits.max_concurrent`, waited
//!    for at most the deadline;
//! 6. **plugin** — a fresh instance under the memory cap and deadline.
//!
//! Only the plugin's own outcomes feed the breaker; a query the source
//! cannot answer (unsupported, bad cursor) is no verdict on its health.
//! Callers choose with [`CallOptions`] which of cache, retry and breaker
//! apply (health checks use none: they must see a source recover while its
//! circuit is open, and judge the source rather than callers' traffic).

use std::future::Future;
use std::time::{Duration, Instant};

use lianqiao_host::PluginError;
use lianqiao_host::contract::{AggregateQuery, CountCell, Page, Query};

use super::Source;
use super::cache::{Flight, ResponseCache, follow};
use super::retry::is_transient;

/// Extra wall time past a plugin's own deadline before the gateway stops
/// waiting for its call (the plugin host enforces the deadline itself and
/// reports it more precisely).
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// Which layers of the stack a caller uses.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    pub cache: bool,
    pub retry: bool,
    pub breaker: bool,
}

impl CallOptions {
    /// A caller's read: every layer.
    pub const READ: CallOptions = CallOptions {
        cache: true,
        retry: true,
        breaker: true,
    };
    /// The gateway's own background reads (the registry's refresh): the
    /// real plugin, never a cached page; retried and judged as callers' are.
    pub const BACKGROUND: CallOptions = CallOptions {
        cache: false,
        retry: true,
        breaker: true,
    };
    /// A health check: the real plugin, no cache, no retry, no breaker.
    pub const HEALTH: CallOptions = CallOptions {
        cache: false,
        retry: false,
        breaker: false,
    };
}

impl Source {
    /// One page of one entity through the stack.
    pub async fn query(&self, query: Query, how: CallOptions) -> Result<Page, PluginError> {
        self.call(&self.pages, &query, how, || {
            self.plugin.query(query.clone())
        })
        .await
    }

    /// Counts through the stack; with `digests`, each cell's record
    /// digest (protected counts need them; they cost a hash per record).
    pub async fn aggregate(
        &self,
        query: AggregateQuery,
        digests: bool,
        how: CallOptions,
    ) -> Result<Vec<CountCell>, PluginError> {
        self.call(&self.counts, &(&query, digests), how, || {
            self.plugin.aggregate(query.clone(), digests)
        })
        .await
    }

    /// One case command (contract 0.2): deadline, breaker and concurrency
    /// as for reads, but never cached, coalesced or retried here — a
    /// retry is the caller's, under its idempotency key.
    pub async fn command(
        &self,
        command: lianqiao_host::contract::Command,
        idempotency_key: String,
    ) -> Result<lianqiao_host::contract::CommandResult, PluginError> {
        let deadline = self.plugin.limits().deadline;
        let how = CallOptions {
            cache: false,
            retry: false,
            breaker: true,
        };
        tokio::time::timeout(
            deadline + DEADLINE_GRACE,
            self.attempt(how, &|| {
                self.plugin
                    .command(command.clone(), idempotency_key.clone())
            }),
        )
        .await
        .unwrap_or(Err(PluginError::Deadline {
            deadline_ms: deadline.as_millis() as u64,
        }))
    }

    /// The stack around `plugin` (one call of the plugin per attempt);
    /// `what` is the call as the cache keys it.
    async fn call<T, F>(
        &self,
        cache: &ResponseCache<T>,
        what: &impl std::fmt::Debug,
        how: CallOptions,
        plugin: impl Fn() -> F,
    ) -> Result<T, PluginError>
    where
        T: Clone,
        F: Future<Output = Result<T, PluginError>>,
    {
        // 1. cache, and coalescing
        let key = how.cache.then(|| cache.key(what));
        if let Some(hit) = key.as_deref().and_then(|k| cache.get(k)) {
            return Ok(hit);
        }
        let deadline = self.plugin.limits().deadline;
        let lead = match key.as_deref().and_then(|k| cache.join(k)) {
            Some(Flight::Follow(leader)) => {
                match tokio::time::timeout(deadline + DEADLINE_GRACE, follow(leader)).await {
                    Ok(Some(outcome)) => return outcome,
                    // The leader's request was cancelled: call for
                    // ourselves, leading no one.
                    Ok(None) => None,
                    Err(_) => {
                        return Err(PluginError::Deadline {
                            deadline_ms: deadline.as_millis() as u64,
                        });
                    }
                }
            }
            Some(Flight::Lead(lead)) => Some(lead),
            None => None,
        };
        // 2. deadline
        let began = Instant::now();
        let answer = tokio::time::timeout(deadline + DEADLINE_GRACE, async {
            // 3. retry budget
            if how.retry {
                self.retries.deposit();
            }
            let mut answer = self.attempt(how, &plugin).await;
            if how.retry
                && let Err(e) = &answer
                && is_transient(e)
                && began.elapsed() < deadline / 2
                && self.retries.withdraw()
            {
                tracing::info!(
                    source = self.name(),
                    "retrying a read after a transient failure"
                );
                let retried = self.attempt(how, &plugin).await;
                // If the first failure opened the circuit, report that failure.
                if !matches!(retried, Err(PluginError::CircuitOpen { .. })) {
                    answer = retried;
                }
            }
            answer
        })
        .await
        .unwrap_or(Err(PluginError::Deadline {
            deadline_ms: deadline.as_millis() as u64,
        }));
        if let Some(lead) = lead {
            lead.land(&answer);
        }
        if let (Some(key), Ok(answer)) = (key, &answer) {
            cache.put(key, answer);
        }
        answer
    }

    /// 4.–6.: breaker permit, concurrency slot, plugin.
    async fn attempt<T, F>(
        &self,
        how: CallOptions,
        plugin: &impl Fn() -> F,
    ) -> Result<T, PluginError>
    where
        F: Future<Output = Result<T, PluginError>>,
    {
        let permit = if how.breaker {
            Some(
                self.breaker
                    .admit()
                    .map_err(|retry_in| PluginError::CircuitOpen {
                        retry_in_ms: retry_in.as_millis() as u64,
                    })?,
            )
        } else {
            None
        };
        let slot = tokio::time::timeout(
            self.plugin.limits().deadline,
            self.concurrency.clone().acquire_owned(),
        )
        .await;
        let Ok(Ok(_slot)) = slot else {
            // A probe's permit dropped here records a failure.
            return Err(PluginError::Busy(format!(
                "{} calls to this source are already in flight (limits.max_concurrent)",
                self.config.limits.max_concurrent
            )));
        };
        let outcome = plugin().await;
        if let Some(permit) = permit {
            permit.record(match &outcome {
                Ok(_) => true,
                Err(e) => !e.counts_against_source(),
            });
        }
        outcome
    }
}
