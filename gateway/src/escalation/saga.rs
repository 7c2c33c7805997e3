//! The escalation saga (吹哨): a street whistles a case to the city.
//!
//! Three systems change and none shares a transaction with another, so
//! each change is a stage recorded in the outbox (`crate::cases::outbox`) before
//! the next begins:
//!
//! 1. `district`: the district record moves `assessed` → `whistled`;
//! 2. `city`: the city platform files the linked case, under the
//!    platform's own idempotency key (the outbox row's id), so a retry after
//!    a lost answer or a crash finds the same case instead of a second one;
//! 3. `link`: the district record mirrors the city's `accepted`, in the
//!    city loop, linked to the city case.
//!
//! A stage that fails for now is retried with backoff; a city that refuses
//! (or stays down past `MAX_ATTEMPTS`) sends the saga to `compensate`: the
//! district record returns to `assessed` with the reason. A crash anywhere
//! leaves the row at its stage; whoever holds the next lease goes on. A
//! stage that was applied but not recorded (the crash came between) finds
//! the record already moved (`conflict`) and reads it to tell.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use lianqiao_host::PluginError;
use lianqiao_host::contract::{Command, CommandError, NewCase, Step, Transition};

use crate::cases::outbox::{Entry, Stage};
use crate::cases::read::locate;
use crate::state::{Gateway, Live};

/// How long a worker holds a row before another may take it over.
pub const LEASE: Duration = Duration::from_secs(30);
/// Tries of one stage before the city counts as refusing.
pub const MAX_ATTEMPTS: i64 = 8;
const RETRY_BASE: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the worker looks for due rows.
const POLL: Duration = Duration::from_millis(500);
/// Every this-many polls, the city's moves are mirrored.
const MIRROR_EVERY: u64 = 4;

/// Who works the outbox, and for how long a claim holds.
#[derive(Debug, Clone)]
pub struct Worker {
    pub owner: String,
    pub lease: Duration,
}

impl Worker {
    /// This process, with the lease `cases.toml` sets (`saga_lease_s`).
    pub fn of(gateway: &Gateway) -> Worker {
        Worker {
            lease: gateway.transitions.saga_lease.unwrap_or(LEASE),
            ..Worker::this_process()
        }
    }

    /// This process (one id per process: a restart is a new worker).
    pub fn this_process() -> Worker {
        static OWNER: OnceLock<String> = OnceLock::new();
        let owner = OWNER.get_or_init(|| {
            use rand::RngCore;
            let mut raw = [0u8; 8];
            rand::rng().fill_bytes(&mut raw);
            format!("gw-{}", hex::encode(raw))
        });
        Worker {
            owner: owner.clone(),
            lease: LEASE,
        }
    }
}

/// The outbox row of one whistle request: the same caller and key give
/// the same row, so a retried request continues the saga it started.
pub fn entry_id(principal: &str, idempotency_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    sha.update(principal.as_bytes());
    sha.update([0]);
    sha.update(idempotency_key.as_bytes());
    format!("w{}", &hex::encode(sha.finalize())[..31])
}

/// What one stage came to.
enum Next {
    /// The stage is done (or the saga is); record it and go on.
    Advanced,
    /// Failed for now (why, in the gateway's words, masked as for logs);
    /// try again after a backoff.
    Later(String),
}

/// The reason a stage waits when the district record cannot be read.
fn unread() -> Next {
    Next::Later("the district record could not be read to check its state".into())
}

/// Whether a command's failure may pass if tried again.
fn transient(e: &PluginError) -> bool {
    !matches!(
        e,
        PluginError::Command(
            CommandError::Unsupported(_)
                | CommandError::Conflict(_)
                | CommandError::NotFound(_)
                | CommandError::Rejected(_)
                | CommandError::BadConfig(_)
                | CommandError::Denied(_)
        ) | PluginError::Contract(_)
    )
}

fn backoff(attempts: i64) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 10);
    (RETRY_BASE * factor).min(RETRY_MAX)
}

/// Work row `id` for at most `max_stages` stages (a test stops short to
/// play a crash: the row keeps its lease until it runs out). The row as
/// this worker left it, or as it is when another worker holds it.
pub async fn drive(
    gateway: &Gateway,
    worker: &Worker,
    id: &str,
    max_stages: usize,
) -> Result<Option<Entry>, String> {
    let store = &gateway.writes;
    let Some(mut entry) = store.claim(id, &worker.owner, worker.lease).await? else {
        return store.entry(id).await;
    };
    for _ in 0..max_stages {
        if entry.stage.finished() {
            break;
        }
        match stage(gateway, &mut entry).await {
            Next::Advanced => {
                // A stage that went through clears the last transient
                // failure (a compensation's or a failure's reason stays).
                if matches!(
                    entry.stage,
                    Stage::District | Stage::City | Stage::Link | Stage::Done
                ) {
                    entry.error.clear();
                }
                tracing::info!(outbox = %entry.id, case = %entry.whistle.case_id, stage = entry.stage.as_str(), "whistle advanced");
                if !store
                    .advance(&entry, &worker.owner, worker.lease, None)
                    .await?
                {
                    // The lease ran out and another worker took the row.
                    return store.entry(id).await;
                }
            }
            Next::Later(reason) => {
                entry.attempts += 1;
                // Operators see why it waits (the console's outbox page);
                // a compensation keeps the city's reason for its note.
                if entry.stage != Stage::Compensate {
                    entry.error = reason;
                }
                let at = SystemTime::now() + backoff(entry.attempts);
                store
                    .advance(&entry, &worker.owner, worker.lease, Some(at))
                    .await?;
                return Ok(Some(entry));
            }
        }
    }
    if entry.stage.finished() {
        store
            .advance(&entry, &worker.owner, worker.lease, Some(SystemTime::now()))
            .await?;
    }
    Ok(Some(entry))
}

/// The worker beside the listeners: every due row, until the process
/// ends. Rows left by a crash come due when their lease runs out.
pub async fn run(live: Arc<Live>) {
    let mut quiet_until = SystemTime::UNIX_EPOCH;
    for tick in 0u64.. {
        tokio::time::sleep(POLL).await;
        let gateway = live.current();
        if gateway.transitions.whistle_to.is_none() {
            continue;
        }
        // The city's moves of linked cases, every few ticks.
        if tick % MIRROR_EVERY == 0
            && let Err(e) = super::mirror::mirror_once(&gateway).await
            && SystemTime::now() > quiet_until
        {
            tracing::warn!(error = %e, "cannot mirror the city's moves; retrying");
            quiet_until = SystemTime::now() + Duration::from_secs(60);
        }
        let worker = Worker::of(&gateway);
        match gateway.writes.due(16).await {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = drive(&gateway, &worker, &id, usize::MAX).await {
                        tracing::warn!(outbox = %id, error = %e, "cannot work a whistle");
                    }
                }
            }
            Err(e) if SystemTime::now() > quiet_until => {
                tracing::warn!(error = %e, "cannot read the saga's outbox; retrying");
                quiet_until = SystemTime::now() + Duration::from_secs(60);
            }
            Err(_) => {}
        }
    }
}

/// A district move of the record from (`from_state`, street) to
/// (`to_state`, `to_loop`) with `step`.
fn district_move(entry: &Entry, from_state: &str, step: Step, linked: Option<String>) -> Command {
    let w = &entry.whistle;
    Command::TransitionCase(Transition {
        id: w.case_id.clone(),
        division: w.division.clone(),
        from_state: from_state.into(),
        from_loop: "street".into(),
        to_state: step.state.clone(),
        to_loop: step.case_loop.clone(),
        step,
        satisfaction: None,
        linked_case: linked,
    })
}

/// The district record's (loop, state) now, if it can be read.
pub(super) async fn district_state(gateway: &Gateway, entry: &Entry) -> Option<(String, String)> {
    let w = &entry.whistle;
    let scope = &w.division[..w.division.len().min(6)];
    match locate(&gateway.sources, scope, &w.case_id).await {
        Ok(Some(found)) => Some((found.case_loop, found.state)),
        _ => None,
    }
}

/// Run one stage of `entry`, updating it in place.
async fn stage(gateway: &Gateway, entry: &mut Entry) -> Next {
    let w = entry.whistle.clone();
    let Some(district) = gateway.sources.get(&w.district_source) else {
        entry.error = format!(
            "the district source `{}` is not configured",
            w.district_source
        );
        entry.stage = Stage::Failed;
        return Next::Advanced;
    };
    let key = entry.id.clone();
    match entry.stage {
        Stage::District => {
            let step = Step {
                id: w.step_id.clone(),
                state: "whistled".into(),
                case_loop: "street".into(),
                at: w.at.clone(),
                by_level: "street".into(),
                note: w.note.clone(),
            };
            let result = district
                .command(district_move(entry, "assessed", step, None), key)
                .await;
            match result {
                Ok(_) => entry.stage = Stage::City,
                Err(PluginError::Command(CommandError::Conflict(_))) => {
                    match district_state(gateway, entry).await {
                        // Applied before a crash, not recorded: go on.
                        Some((l, s)) if l == "street" && s == "whistled" => {
                            entry.stage = Stage::City;
                        }
                        Some((l, s)) => {
                            entry.error = format!(
                                "the case moved before it was whistled (now {s} in the {l} loop); nothing was sent to the city"
                            );
                            entry.stage = Stage::Failed;
                        }
                        None => return unread(),
                    }
                }
                Err(e) if transient(&e) && entry.attempts < MAX_ATTEMPTS => {
                    return Next::Later(crate::redact::operator(&e));
                }
                Err(e) => {
                    entry.error = format!("the district would not record the whistle: {e}");
                    entry.stage = Stage::Failed;
                }
            }
        }
        Stage::City => {
            let Some(city) = gateway.whistle_source() else {
                entry.error = "no source takes whistled cases (`whistle_to` in cases.toml)".into();
                entry.stage = Stage::Compensate;
                return Next::Advanced;
            };
            let command = Command::CreateCase(NewCase {
                id: w.case_id.clone(),
                division: w.division.clone(),
                title: w.title.clone(),
                category: w.category.clone(),
                case_loop: "city".into(),
                reporter_name: w.reporter_name.clone(),
                reporter_phone: w.reporter_phone.clone(),
                due_at: w.due_at.clone(),
                linked_case: Some(w.case_id.clone()),
                first: Step {
                    id: format!("{}c", w.step_id),
                    state: "accepted".into(),
                    case_loop: "city".into(),
                    at: w.at.clone(),
                    by_level: "street".into(),
                    note: w.note.clone(),
                },
            });
            match city.command(command, key).await {
                Ok(filed) => {
                    entry.city_case = filed.id;
                    entry.stage = Stage::Link;
                }
                Err(e) if transient(&e) && entry.attempts < MAX_ATTEMPTS => {
                    return Next::Later(crate::redact::operator(&e));
                }
                Err(e) => {
                    // The platform's own reason, masked as for logs (digit
                    // runs and names), since the note is read back by people.
                    entry.error = format!(
                        "the city platform did not take the case: {}",
                        crate::redact::operator(&e)
                    );
                    entry.stage = Stage::Compensate;
                }
            }
        }
        Stage::Link => {
            let step = Step {
                id: format!("{}a", w.step_id),
                state: "accepted".into(),
                case_loop: "city".into(),
                at: crate::cases::ids::local_now(),
                by_level: "city".into(),
                note: Some(format!("市平台受理 {}", entry.city_case)),
            };
            let linked = Some(entry.city_case.clone());
            match district
                .command(district_move(entry, "whistled", step, linked), key)
                .await
            {
                Ok(_) => entry.stage = Stage::Done,
                Err(PluginError::Command(CommandError::Conflict(_))) => {
                    match district_state(gateway, entry).await {
                        Some((l, _)) if l == "city" => entry.stage = Stage::Done,
                        Some((l, s)) => {
                            entry.error = format!(
                                "city case {} was filed, but the district record moved meanwhile (now {s} in the {l} loop); link them by hand",
                                entry.city_case
                            );
                            entry.stage = Stage::Failed;
                        }
                        None => return unread(),
                    }
                }
                // The city case exists: never compensate, keep trying.
                Err(e) => return Next::Later(crate::redact::operator(&e)),
            }
        }
        Stage::Compensate => {
            let step = Step {
                id: format!("{}r", w.step_id),
                state: "assessed".into(),
                case_loop: "street".into(),
                at: crate::cases::ids::local_now(),
                by_level: "street".into(),
                note: Some(format!("吹哨未成: {}", entry.error)),
            };
            match district
                .command(district_move(entry, "whistled", step, None), key)
                .await
            {
                Ok(_) => entry.stage = Stage::Failed,
                Err(PluginError::Command(CommandError::Conflict(_))) => {
                    match district_state(gateway, entry).await {
                        Some(_) => entry.stage = Stage::Failed,
                        None => return unread(),
                    }
                }
                Err(e) => return Next::Later(crate::redact::operator(&e)),
            }
            if entry.stage == Stage::Failed {
                tracing::error!(outbox = %entry.id, case = %w.case_id, error = %entry.error, "a whistle failed and was undone");
            }
        }
        Stage::Done | Stage::Failed => {}
    }
    Next::Advanced
}
