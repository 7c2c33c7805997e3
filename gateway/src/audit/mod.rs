//! The audit trail: one hash-chained record per API request.
//!
//! Requests hand their record to one writer task, which numbers and chains
//! records and writes them in batches (one transaction per batch, a sync per
//! commit). A request waits until its record is committed before its
//! response leaves: a client never holds a response whose record could
//! still be lost. When the store is down, the write fails and the caller
//! decides: responses with records fail closed; statistics may be
//! configured to fail open, their records kept and written when the store
//! is back.

mod record;
pub mod store;
mod verify;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::telemetry::metrics::Histogram;

use tokio::sync::{mpsc, oneshot};

pub use record::{AuditRecord, GENESIS, chain_hash, now_rfc3339, rfc3339};
pub use store::{AuditStore, Query, Stored};
pub use verify::{Broken, Checkpoint, verify, verify_after};

/// A new request id: 96 random bits, hex (audit records and responses).
pub fn request_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Records in memory waiting for a down store (fail-open statistics only).
const BACKLOG_MAX: usize = 100_000;

struct Job {
    record: AuditRecord,
    /// When the request handed it over, for the lag metric.
    queued: Instant,
    /// Keep the record for a later retry if this write fails.
    keep: bool,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle requests use.
#[derive(Debug)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    pub chain: String,
    pub written: AtomicU64,
    pub failed: AtomicU64,
    /// Fail-open records held for a store that is down.
    pub backlog: AtomicUsize,
    /// From hand-over to commit, per record.
    pub lag: Mutex<Histogram>,
}

impl AuditLog {
    /// Start the writer for `chain` in the store at `url`. A store that is
    /// down is retried on every batch; until then writes fail.
    pub fn start(url: String, chain: String, batch_max: usize) -> Arc<AuditLog> {
        let (jobs, rx) = mpsc::channel(batch_max.max(1) * 16);
        let log = Arc::new(AuditLog {
            jobs,
            chain: chain.clone(),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            backlog: AtomicUsize::new(0),
            lag: Mutex::default(),
        });
        tokio::spawn(writer(url, chain, batch_max.max(1), rx, log.clone()));
        log
    }

    /// Records waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    /// Record an operator's action (a change, a sign-in, a search) as
    /// allowed, before it takes effect: a trail that cannot record `what`
    /// refuses it (503 `audit_unavailable`).
    pub async fn allowed(
        &self,
        mut record: AuditRecord,
        what: &str,
    ) -> Result<(), crate::error::ApiError> {
        record.decision = "allow".into();
        record.status = 200;
        self.write(record, false).await.map_err(|e| {
            crate::error::ApiError::new(
                crate::error::ErrorCode::AuditUnavailable,
                format!("the audit trail cannot record {what}, so it was refused: {e}"),
            )
        })
    }

    /// Record an operator's action refused with `error` (kept for a store
    /// that is down). A refusal because the trail was down is not recorded
    /// again.
    pub async fn refused(&self, mut record: AuditRecord, error: &crate::error::ApiError) {
        use crate::error::ErrorCode;
        if error.code == ErrorCode::AuditUnavailable {
            return;
        }
        record.decision = match error.code {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "deny",
            _ => "invalid",
        }
        .into();
        record.status = error.status.as_u16();
        let _ = self.write(record, true).await;
    }

    /// Write `record` and wait until it is committed. `keep`: on failure,
    /// hold it and write it when the store is back (fail-open statistics).
    pub async fn write(&self, record: AuditRecord, keep: bool) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Job {
                record,
                queued: Instant::now(),
                keep,
                done,
            })
            .await
            .map_err(|_| "the audit writer has stopped".to_string())?;
        wait.await
            .map_err(|_| "the audit writer has stopped".to_string())?
    }
}

struct Chain {
    store: AuditStore,
    seq: i64,
    hash: String,
}

async fn connect(url: &str, chain: &str) -> Result<Chain, String> {
    let store = AuditStore::open(url).await?;
    let (seq, hash) = store.head(chain).await?;
    Ok(Chain { store, seq, hash })
}

async fn writer(
    url: String,
    chain_name: String,
    batch_max: usize,
    mut rx: mpsc::Receiver<Job>,
    log: Arc<AuditLog>,
) {
    let mut chain: Option<Chain> = None;
    let mut backlog: Vec<(AuditRecord, Instant)> = Vec::new();
    loop {
        // With a backlog, wake up now and then to retry it.
        let first = if backlog.is_empty() {
            match rx.recv().await {
                Some(job) => Some(job),
                None => return,
            }
        } else {
            match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                Ok(Some(job)) => Some(job),
                Ok(None) => return,
                Err(_) => None,
            }
        };
        let mut jobs: Vec<Job> = first.into_iter().collect();
        while jobs.len() < batch_max {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if chain.is_none() {
            match connect(&url, &chain_name).await {
                Ok(c) => chain = Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "audit store unavailable");
                    fail(&log, jobs, &mut backlog, &e);
                    continue;
                }
            }
        }
        let Some(c) = chain.as_mut() else { continue };
        let waiting: Vec<(AuditRecord, Instant)> = std::mem::take(&mut backlog);
        let records: Vec<&AuditRecord> = waiting
            .iter()
            .map(|(r, _)| r)
            .chain(jobs.iter().map(|j| &j.record))
            .collect();
        let (mut seq, mut prev) = (c.seq, c.hash.clone());
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            seq += 1;
            let body = serde_json::to_string(r).unwrap_or_else(|_| "{}".into());
            let hash = chain_hash(&chain_name, seq, &prev, &body);
            rows.push(Stored {
                chain: chain_name.clone(),
                seq,
                at: r.at.clone(),
                request_id: r.request_id.clone(),
                principal: r.principal.clone(),
                division: record_division(r).to_string(),
                status: i64::from(r.status),
                decision: r.decision.clone(),
                body,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        match c.store.append(&rows).await {
            Ok(()) => {
                c.seq = seq;
                c.hash = prev;
                log.written.fetch_add(rows.len() as u64, Ordering::Relaxed);
                log.backlog.store(0, Ordering::Relaxed);
                if let Ok(mut lag) = log.lag.lock() {
                    let queued = waiting
                        .iter()
                        .map(|(_, q)| q)
                        .chain(jobs.iter().map(|j| &j.queued));
                    for q in queued {
                        lag.observe(q.elapsed().as_secs_f64());
                    }
                }
                for job in jobs {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit write failed");
                backlog = waiting;
                // The next batch reconnects and re-reads the head.
                chain = None;
                fail(
                    &log,
                    jobs,
                    &mut backlog,
                    &format!("audit write failed: {e}"),
                );
            }
        }
    }
}

fn fail(log: &AuditLog, jobs: Vec<Job>, backlog: &mut Vec<(AuditRecord, Instant)>, error: &str) {
    log.failed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
    for job in jobs {
        if job.keep && backlog.len() < BACKLOG_MAX {
            backlog.push((job.record, job.queued));
        }
        let _ = job.done.send(Err(error.to_string()));
    }
    log.backlog.store(backlog.len(), Ordering::Relaxed);
}

/// The division a record is filed under: the scope it was answered in,
/// else the principal's division.
pub fn record_division(r: &AuditRecord) -> &str {
    if r.scope.is_empty() {
        &r.division
    } else {
        &r.scope
    }
}
