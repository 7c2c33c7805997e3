//! The gateway's own store for writes: idempotency keys, in the same
//! database as the audit trail (SQLite by default, PostgreSQL when
//! configured, so replicas share them). Its tables come from versioned
//! migrations, applied once each and recorded in `lianqiao_migrations`.

use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::sync::OnceCell;

use crate::store::numbered;

/// Every migration, in order; a released one is never edited, only
/// followed by another.
const MIGRATIONS: &[(i64, &str, &[&str])] = &[
    (
        1,
        "idempotency keys",
        &[
            "CREATE TABLE lianqiao_idempotency (
            principal TEXT NOT NULL, idem_key TEXT NOT NULL, request_sha TEXT NOT NULL,
            state TEXT NOT NULL, status BIGINT NOT NULL, body TEXT NOT NULL,
            created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
            PRIMARY KEY (principal, idem_key))",
            "CREATE INDEX lianqiao_idempotency_expiry ON lianqiao_idempotency (expires_at)",
        ],
    ),
    (
        2,
        "the outbox of the escalation saga",
        &[
            "CREATE TABLE lianqiao_outbox (
            id TEXT PRIMARY KEY, case_id TEXT NOT NULL, payload TEXT NOT NULL,
            stage TEXT NOT NULL, city_case TEXT NOT NULL, attempts BIGINT NOT NULL,
            next_at TEXT NOT NULL, lease_owner TEXT NOT NULL, lease_until TEXT NOT NULL,
            error TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
            "CREATE INDEX lianqiao_outbox_due ON lianqiao_outbox (stage, next_at)",
        ],
    ),
    (
        3,
        "how far each linked case's city moves are mirrored",
        &[
            "ALTER TABLE lianqiao_outbox ADD COLUMN mirrored TEXT NOT NULL DEFAULT 'accepted'",
            "ALTER TABLE lianqiao_outbox ADD COLUMN mirrored_at TEXT NOT NULL DEFAULT ''",
        ],
    ),
];

/// How long a key is remembered.
pub const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// A write still `pending` after this long was cut short (a crash); a
/// retry may take it over.
pub const PENDING_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// What `begin` found for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// First use: the caller now holds the key and must `finish` or `forget`.
    New,
    /// Used before for the same request: its first result.
    Replay { status: u16, body: String },
    /// Used before for another request body.
    Mismatch,
    /// The first request is still being applied.
    InProgress,
}

pub struct WriteStore {
    url: String,
    pool: OnceCell<(AnyPool, bool)>,
}

impl std::fmt::Debug for WriteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteStore")
    }
}

pub(super) fn at(t: std::time::SystemTime) -> String {
    crate::telemetry::rfc3339(t)
}

impl WriteStore {
    /// Opened at first use (a gateway that takes no writes never opens it).
    pub fn new(url: String) -> WriteStore {
        WriteStore {
            url,
            pool: OnceCell::new(),
        }
    }

    pub(super) async fn pool(&self) -> Result<&(AnyPool, bool), String> {
        self.pool
            .get_or_try_init(|| async {
                let (pool, postgres) = crate::store::connect(&self.url, 8, "write store").await?;
                migrate(&pool, postgres).await?;
                Ok((pool, postgres))
            })
            .await
    }

    /// Claim `key` for `principal`'s request `request_sha`.
    pub async fn begin(
        &self,
        principal: &str,
        key: &str,
        request_sha: &str,
    ) -> Result<Begin, String> {
        let (pool, pg) = self.pool().await?;
        let now = std::time::SystemTime::now();
        for _ in 0..3 {
            let inserted = sqlx::query(AssertSqlSafe(numbered(
                *pg,
                "INSERT INTO lianqiao_idempotency (principal, idem_key, request_sha, state, status, body, created_at, expires_at)
                 VALUES (?, ?, ?, 'pending', 0, '', ?, ?)",
            )))
            .bind(principal.to_string())
            .bind(key.to_string())
            .bind(request_sha.to_string())
            .bind(at(now))
            .bind(at(now + KEY_TTL))
            .execute(pool)
            .await;
            match inserted {
                Ok(_) => return Ok(Begin::New),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {}
                Err(e) => return Err(e.to_string()),
            }
            let row = sqlx::query(AssertSqlSafe(numbered(
                *pg,
                "SELECT request_sha, state, status, body, created_at, expires_at FROM lianqiao_idempotency WHERE principal = ? AND idem_key = ?",
            )))
            .bind(principal.to_string())
            .bind(key.to_string())
            .fetch_optional(pool)
            .await
            .map_err(|e| e.to_string())?;
            let Some(row) = row else { continue };
            let text = |i: usize| row.try_get::<String, _>(i).map_err(|e| e.to_string());
            let (sha, state, created, expires) = (text(0)?, text(1)?, text(4)?, text(5)?);
            if expires < at(now) {
                // Expired: forget it and claim it afresh.
                self.forget(principal, key).await?;
                continue;
            }
            if sha != request_sha {
                return Ok(Begin::Mismatch);
            }
            if state == "done" {
                let status = row.try_get::<i64, _>(2).map_err(|e| e.to_string())?;
                return Ok(Begin::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    body: text(3)?,
                });
            }
            if created < at(now - PENDING_LEASE) {
                // The first attempt died mid-way: take it over, once.
                let taken = sqlx::query(AssertSqlSafe(numbered(
                    *pg,
                    "UPDATE lianqiao_idempotency SET created_at = ? WHERE principal = ? AND idem_key = ? AND created_at = ? AND state = 'pending'",
                )))
                .bind(at(now))
                .bind(principal.to_string())
                .bind(key.to_string())
                .bind(created)
                .execute(pool)
                .await
                .map_err(|e| e.to_string())?;
                if taken.rows_affected() == 1 {
                    return Ok(Begin::New);
                }
            }
            return Ok(Begin::InProgress);
        }
        Err("the idempotency key could not be claimed".into())
    }

    /// Remember the result of the request holding `key`.
    pub async fn finish(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), String> {
        let (pool, pg) = self.pool().await?;
        sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "UPDATE lianqiao_idempotency SET state = 'done', status = ?, body = ? WHERE principal = ? AND idem_key = ?",
        )))
        .bind(i64::from(status))
        .bind(body.to_string())
        .bind(principal.to_string())
        .bind(key.to_string())
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Release `key` without a result (nothing was written; a retry may run).
    pub async fn forget(&self, principal: &str, key: &str) -> Result<(), String> {
        let (pool, pg) = self.pool().await?;
        sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "DELETE FROM lianqiao_idempotency WHERE principal = ? AND idem_key = ?",
        )))
        .bind(principal.to_string())
        .bind(key.to_string())
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

/// Apply the migrations not yet recorded, each in its own transaction. Two
/// replicas starting together race on the version's primary key: the loser
/// finds it applied and goes on.
async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), String> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS lianqiao_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await
    .map_err(|e| format!("cannot create the migrations table: {e}"))?;
    for (version, name, statements) in MIGRATIONS {
        let applied = sqlx::query(AssertSqlSafe(numbered(
            postgres,
            "SELECT version FROM lianqiao_migrations WHERE version = ?",
        )))
        .bind(*version)
        .fetch_optional(pool)
        .await
        .map_err(|e| e.to_string())?;
        if applied.is_some() {
            continue;
        }
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        let recorded = sqlx::query(AssertSqlSafe(numbered(
            postgres,
            "INSERT INTO lianqiao_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        )))
        .bind(*version)
        .bind(name.to_string())
        .bind(crate::telemetry::now_rfc3339())
        .execute(&mut *tx)
        .await;
        if let Err(sqlx::Error::Database(db)) = &recorded
            && db.is_unique_violation()
        {
            continue;
        }
        recorded.map_err(|e| format!("migration {version} ({name}): {e}"))?;
        for statement in *statements {
            sqlx::query(AssertSqlSafe(*statement))
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("migration {version} ({name}): {e}"))?;
        }
        tx.commit()
            .await
            .map_err(|e| format!("migration {version} ({name}): {e}"))?;
        tracing::info!(version, name, "write store migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_gives_its_first_result_and_refuses_other_bodies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = WriteStore::new(url.clone());
        assert_eq!(store.begin("p", "k1", "sha-a").await, Ok(Begin::New));
        assert_eq!(store.begin("p", "k1", "sha-a").await, Ok(Begin::InProgress));
        assert_eq!(store.begin("p", "k1", "sha-b").await, Ok(Begin::Mismatch));
        // Another principal's key of the same name is its own.
        assert_eq!(store.begin("q", "k1", "sha-b").await, Ok(Begin::New));
        store
            .finish("p", "k1", 201, "{\"data\":1}")
            .await
            .expect("finish");
        assert_eq!(
            store.begin("p", "k1", "sha-a").await,
            Ok(Begin::Replay {
                status: 201,
                body: "{\"data\":1}".into()
            })
        );
        store.forget("q", "k1").await.expect("forget");
        assert_eq!(store.begin("q", "k1", "sha-c").await, Ok(Begin::New));
        // A second store on the same database (a restart, a replica) sees
        // the same keys and does not migrate twice.
        let again = WriteStore::new(url);
        assert_eq!(again.begin("p", "k1", "sha-b").await, Ok(Begin::Mismatch));
    }
}
