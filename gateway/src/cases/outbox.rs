//! The escalation saga's outbox, in the gateway's store (beside the
//! idempotency keys): one row per whistled case, the stage it has reached,
//! and a lease so that exactly one gateway (of several replicas sharing
//! PostgreSQL) works it at a time. A crash leaves the row at its stage; the
//! lease runs out and the next worker goes on from there.

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};
use std::time::{Duration, SystemTime};

use super::store::{WriteStore, at};
use crate::store::numbered;

/// Where a whistle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The district record is to move `assessed` → `whistled`.
    District,
    /// The city platform is to file the linked case.
    City,
    /// The district record is to mirror the city's `accepted`, linked.
    Link,
    /// The city would not take the case: the district record returns to
    /// `assessed` with the reason.
    Compensate,
    /// Finished: one city case, the district record linked to it.
    Done,
    /// Finished without a city case; `error` says why.
    Failed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::District => "district",
            Stage::City => "city",
            Stage::Link => "link",
            Stage::Compensate => "compensate",
            Stage::Done => "done",
            Stage::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Stage {
        match s {
            "district" => Stage::District,
            "city" => Stage::City,
            "link" => Stage::Link,
            "compensate" => Stage::Compensate,
            "done" => Stage::Done,
            _ => Stage::Failed,
        }
    }

    pub fn finished(self) -> bool {
        matches!(self, Stage::Done | Stage::Failed)
    }
}

/// What the saga needs of the case, read once when it is whistled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Whistle {
    pub case_id: String,
    pub division: String,
    /// The district source holding the record.
    pub district_source: String,
    pub title: String,
    pub category: String,
    pub due_at: Option<String>,
    pub reporter_name: Option<String>,
    pub reporter_phone: Option<String>,
    pub note: Option<String>,
    /// The `whistled` step's id and time, fixed at the start so that a
    /// repeated step is the same step.
    pub step_id: String,
    pub at: String,
}

/// One outbox row.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub stage: Stage,
    pub whistle: Whistle,
    pub city_case: String,
    pub attempts: i64,
    pub error: String,
}

fn db(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A row whose first columns are stage, payload, city_case, attempts and
/// error, as the row `id`.
fn entry_of(id: &str, row: &sqlx::any::AnyRow) -> Result<Entry, String> {
    let text = |i: usize| row.try_get::<String, _>(i).map_err(db);
    Ok(Entry {
        id: id.to_string(),
        stage: Stage::parse(&text(0)?),
        whistle: serde_json::from_str(&text(1)?).map_err(db)?,
        city_case: text(2)?,
        attempts: row.try_get::<i64, _>(3).map_err(db)?,
        error: text(4)?,
    })
}

impl WriteStore {
    /// Record a whistle at its first stage; `false` when the row was there
    /// already (a retried request): the saga goes on from where it is.
    pub async fn enqueue(&self, id: &str, whistle: &Whistle) -> Result<bool, String> {
        let (pool, pg) = self.pool().await?;
        let now = at(SystemTime::now());
        let payload = serde_json::to_string(whistle).map_err(db)?;
        let inserted = sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "INSERT INTO lianqiao_outbox (id, case_id, payload, stage, city_case, attempts, next_at, lease_owner, lease_until, error, created_at, updated_at)
             VALUES (?, ?, ?, 'district', '', 0, ?, '', ?, '', ?, ?)",
        )))
        .bind(id.to_string())
        .bind(whistle.case_id.clone())
        .bind(payload)
        .bind(now.clone())
        // Held by no one: free to claim at once (a lease ending `now`
        // would not be, within the same millisecond).
        .bind(at(SystemTime::UNIX_EPOCH))
        .bind(now.clone())
        .bind(now)
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(db(e)),
        }
    }

    /// Take the row for `lease` if no other worker holds it; the row as
    /// it is, or none when it is held elsewhere or finished.
    pub async fn claim(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Entry>, String> {
        let (pool, pg) = self.pool().await?;
        let now = SystemTime::now();
        let taken = sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "UPDATE lianqiao_outbox SET lease_owner = ?, lease_until = ?
             WHERE id = ? AND stage NOT IN ('done', 'failed') AND (lease_until < ? OR lease_owner = ?)",
        )))
        .bind(owner.to_string())
        .bind(at(now + lease))
        .bind(id.to_string())
        .bind(at(now))
        .bind(owner.to_string())
        .execute(pool)
        .await
        .map_err(db)?;
        if taken.rows_affected() != 1 {
            return Ok(None);
        }
        self.entry(id).await
    }

    /// The row, whoever holds it.
    pub async fn entry(&self, id: &str) -> Result<Option<Entry>, String> {
        let (pool, pg) = self.pool().await?;
        let row = sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "SELECT stage, payload, city_case, attempts, error FROM lianqiao_outbox WHERE id = ?",
        )))
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db)?;
        row.map(|row| entry_of(id, &row)).transpose()
    }

    /// Record the row's progress, if `owner` still holds it; the lease is
    /// renewed for `lease`, or given up with the next try not before
    /// `retry_at`.
    pub async fn advance(
        &self,
        entry: &Entry,
        owner: &str,
        lease: Duration,
        retry_at: Option<SystemTime>,
    ) -> Result<bool, String> {
        let (pool, pg) = self.pool().await?;
        let now = SystemTime::now();
        let (next_at, lease_until) = match retry_at {
            Some(t) => (at(t), at(now - Duration::from_millis(1))),
            None => (at(now), at(now + lease)),
        };
        let done = sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "UPDATE lianqiao_outbox SET stage = ?, city_case = ?, attempts = ?, error = ?, next_at = ?, lease_until = ?, updated_at = ?
             WHERE id = ? AND lease_owner = ?",
        )))
        .bind(entry.stage.as_str())
        .bind(entry.city_case.clone())
        .bind(entry.attempts)
        .bind(entry.error.clone())
        .bind(next_at)
        .bind(lease_until)
        .bind(at(now))
        .bind(entry.id.clone())
        .bind(owner.to_string())
        .execute(pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    /// Rows due for work: unfinished, not held, their next try due.
    pub async fn due(&self, limit: i64) -> Result<Vec<String>, String> {
        let (pool, pg) = self.pool().await?;
        let now = at(SystemTime::now());
        let rows = sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "SELECT id FROM lianqiao_outbox WHERE stage NOT IN ('done', 'failed') AND next_at <= ? AND lease_until < ?
             ORDER BY next_at LIMIT ?",
        )))
        .bind(now.clone())
        .bind(now)
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(db))
            .collect()
    }

    /// Linked cases whose city moves are not all mirrored yet: (row,
    /// city state mirrored so far, the city's `updatedAt` of it).
    pub async fn mirroring(&self, limit: i64) -> Result<Vec<(Entry, String, String)>, String> {
        let (pool, pg) = self.pool().await?;
        let rows = sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "SELECT stage, payload, city_case, attempts, error, id, mirrored, mirrored_at FROM lianqiao_outbox
             WHERE stage = 'done' AND mirrored <> 'closed' ORDER BY updated_at LIMIT ?",
        )))
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|row| {
                let text = |i: usize| row.try_get::<String, _>(i).map_err(db);
                Ok((entry_of(&text(5)?, row)?, text(6)?, text(7)?))
            })
            .collect()
    }

    /// Record that the district record mirrors the city's `state` (as of
    /// the city's `updated_at`).
    pub async fn mirrored(&self, id: &str, state: &str, updated_at: &str) -> Result<(), String> {
        let (pool, pg) = self.pool().await?;
        sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "UPDATE lianqiao_outbox SET mirrored = ?, mirrored_at = ?, updated_at = ? WHERE id = ?",
        )))
        .bind(state.to_string())
        .bind(updated_at.to_string())
        .bind(at(SystemTime::now()))
        .bind(id.to_string())
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(db)
    }

    /// For operators: how many rows are at each stage, then every
    /// unfinished row (oldest first) and the latest finished ones, up to
    /// `limit` in all. The case's text and its reporter stay in the
    /// payload; a row shows where the whistle is, not what it says.
    pub async fn overview(
        &self,
        limit: i64,
    ) -> Result<(Vec<(String, i64)>, Vec<OutboxRow>), String> {
        let (pool, pg) = self.pool().await?;
        let counts = sqlx::query(
            "SELECT stage, COUNT(*) FROM lianqiao_outbox GROUP BY stage ORDER BY stage",
        )
        .fetch_all(pool)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(db)?,
                r.try_get::<i64, _>(1).map_err(db)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
        const COLUMNS: &str = "id, payload, stage, city_case, attempts, next_at, lease_until, error, created_at, updated_at, mirrored";
        let mut rows = Vec::new();
        for sql in [
            format!(
                "SELECT {COLUMNS} FROM lianqiao_outbox WHERE stage NOT IN ('done', 'failed') ORDER BY created_at LIMIT ?"
            ),
            format!(
                "SELECT {COLUMNS} FROM lianqiao_outbox WHERE stage IN ('done', 'failed') ORDER BY updated_at DESC LIMIT ?"
            ),
        ] {
            let left = limit - rows.len() as i64;
            if left <= 0 {
                break;
            }
            for r in sqlx::query(AssertSqlSafe(numbered(*pg, &sql)))
                .bind(left)
                .fetch_all(pool)
                .await
                .map_err(db)?
            {
                let text = |i: usize| r.try_get::<String, _>(i).map_err(db);
                let whistle: Whistle = serde_json::from_str(&text(1)?).map_err(db)?;
                rows.push(OutboxRow {
                    id: text(0)?,
                    case_id: whistle.case_id,
                    division: whistle.division,
                    district_source: whistle.district_source,
                    stage: text(2)?,
                    city_case: text(3)?,
                    attempts: r.try_get::<i64, _>(4).map_err(db)?,
                    next_at: text(5)?,
                    lease_until: text(6)?,
                    error: text(7)?,
                    created_at: text(8)?,
                    updated_at: text(9)?,
                    mirrored: text(10)?,
                });
            }
        }
        Ok((counts, rows))
    }
}

/// One outbox row as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub id: String,
    pub case_id: String,
    pub division: String,
    pub district_source: String,
    pub stage: String,
    pub city_case: String,
    pub attempts: i64,
    /// When the next try is due (unfinished rows).
    pub next_at: String,
    /// Held by a worker until then (in the past: free).
    pub lease_until: String,
    pub error: String,
    pub created_at: String,
    pub updated_at: String,
    /// The city's state the district record mirrors so far.
    pub mirrored: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whistle(n: usize) -> Whistle {
        Whistle {
            case_id: format!("c{n}"),
            division: "15010300100101".into(),
            district_source: "huimin".into(),
            title: "t".into(),
            category: "c".into(),
            due_at: None,
            reporter_name: None,
            reporter_phone: None,
            note: None,
            step_id: format!("c{n}.w"),
            at: "2026-12-03T10:00:00.000+08:00".into(),
        }
    }

    /// A row is claimable the moment it is recorded (within the same
    /// millisecond too), by one worker at a time.
    #[tokio::test]
    async fn a_new_row_is_claimed_at_once_and_by_one_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = WriteStore::new(format!("sqlite://{}", dir.path().join("o.db").display()));
        let lease = Duration::from_secs(30);
        for n in 0..50 {
            let id = format!("w{n}");
            assert!(store.enqueue(&id, &whistle(n)).await.expect("enqueue"));
            let first = store.claim(&id, "a", lease).await.expect("claim");
            assert!(first.is_some_and(|e| e.stage == Stage::District), "row {n}");
            assert!(store.claim(&id, "b", lease).await.expect("claim").is_none());
        }
    }
}
