//! Where audit records live: SQLite (the embedded default) or PostgreSQL.
//!
//! Each record is stored whole as JSON (`body`, what the chain hashes)
//! beside the columns queries filter on. A head row per chain, written in
//! the same transaction as the records, makes truncation detectable too.

use futures::TryStreamExt;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::record::AuditRecord;

/// A record as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub chain: String,
    pub seq: i64,
    pub at: String,
    pub request_id: String,
    pub principal: String,
    pub division: String,
    pub status: i64,
    pub decision: String,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters for `lianqiao audit query`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub chain: Option<String>,
    pub principal: Option<String>,
    /// Records in this division's subtree.
    pub division: Option<String>,
    /// RFC 3339 bounds (string comparison works on the stored form).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Records about this resource (`members`, `cases`; a statistic's).
    pub resource: Option<String>,
    pub limit: i64,
}

/// Records read to find `limit` about one resource: the resource is in
/// the record's body, not a column, so the newest records are read and
/// filtered (a search by resource covers at most this many).
pub const RESOURCE_SCAN: i64 = 20_000;

#[derive(Debug, Clone)]
pub struct AuditStore {
    pool: AnyPool,
    postgres: bool,
}

impl AuditStore {
    /// Connect (creating the SQLite file and the tables if needed).
    pub async fn open(url: &str) -> Result<AuditStore, String> {
        let (pool, postgres) = crate::store::connect(url, 4, "audit store").await?;
        let store = AuditStore { pool, postgres };
        store.create().await?;
        Ok(store)
    }

    async fn create(&self) -> Result<(), String> {
        for statement in [
            "CREATE TABLE IF NOT EXISTS lianqiao_audit (
                chain TEXT NOT NULL, seq BIGINT NOT NULL, at TEXT NOT NULL,
                request_id TEXT NOT NULL, principal TEXT NOT NULL, division TEXT NOT NULL,
                status BIGINT NOT NULL, decision TEXT NOT NULL, body TEXT NOT NULL,
                prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
                PRIMARY KEY (chain, seq))",
            "CREATE INDEX IF NOT EXISTS lianqiao_audit_principal ON lianqiao_audit (principal, at)",
            "CREATE INDEX IF NOT EXISTS lianqiao_audit_division ON lianqiao_audit (division, at)",
            "CREATE TABLE IF NOT EXISTS lianqiao_audit_head (
                chain TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
        ] {
            sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(|e| format!("cannot create the audit tables: {e}"))?;
        }
        Ok(())
    }

    /// `$n` for PostgreSQL, `?` for SQLite.
    fn sql(&self, text: &str) -> String {
        crate::store::numbered(self.postgres, text)
    }

    /// The last record of `chain`: (seq, hash), or (0, genesis).
    pub async fn head(&self, chain: &str) -> Result<(i64, String), String> {
        let row = sqlx::query(AssertSqlSafe(self.sql(
            "SELECT seq, hash FROM lianqiao_audit WHERE chain = ? ORDER BY seq DESC LIMIT 1",
        )))
        .bind(chain.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        Ok(match row {
            Some(row) => (
                row.try_get::<i64, _>(0).map_err(|e| e.to_string())?,
                row.try_get::<String, _>(1).map_err(|e| e.to_string())?,
            ),
            None => (0, super::record::GENESIS.to_string()),
        })
    }

    /// The head row of `chain`, as last committed.
    pub async fn recorded_head(&self, chain: &str) -> Result<Option<(i64, String)>, String> {
        let row = sqlx::query(AssertSqlSafe(
            self.sql("SELECT seq, hash FROM lianqiao_audit_head WHERE chain = ?"),
        ))
        .bind(chain.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        row.map(|row| {
            Ok((
                row.try_get::<i64, _>(0).map_err(|e| e.to_string())?,
                row.try_get::<String, _>(1).map_err(|e| e.to_string())?,
            ))
        })
        .transpose()
    }

    /// Append records (already numbered and hashed) in one transaction.
    pub async fn append(&self, records: &[Stored]) -> Result<(), String> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let insert = self.sql(
            "INSERT INTO lianqiao_audit (chain, seq, at, request_id, principal, division, status, decision, body, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        for r in records {
            sqlx::query(AssertSqlSafe(insert.as_str()))
                .bind(r.chain.clone())
                .bind(r.seq)
                .bind(r.at.clone())
                .bind(r.request_id.clone())
                .bind(r.principal.clone())
                .bind(r.division.clone())
                .bind(r.status)
                .bind(r.decision.clone())
                .bind(r.body.clone())
                .bind(r.prev_hash.clone())
                .bind(r.hash.clone())
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        let updated = sqlx::query(AssertSqlSafe(
            self.sql("UPDATE lianqiao_audit_head SET seq = ?, hash = ? WHERE chain = ?"),
        ))
        .bind(last.seq)
        .bind(last.hash.clone())
        .bind(last.chain.clone())
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        if updated.rows_affected() == 0 {
            sqlx::query(AssertSqlSafe(self.sql(
                "INSERT INTO lianqiao_audit_head (chain, seq, hash) VALUES (?, ?, ?)",
            )))
            .bind(last.chain.clone())
            .bind(last.seq)
            .bind(last.hash.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())
    }

    /// Every chain in the store.
    pub async fn chains(&self) -> Result<Vec<String>, String> {
        let rows = sqlx::query(
            "SELECT DISTINCT chain FROM lianqiao_audit UNION SELECT chain FROM lianqiao_audit_head",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(|e| e.to_string()))
            .collect()
    }

    /// The highest record number of `chain` (0 when it has none).
    pub async fn highest_seq(&self, chain: &str) -> Result<i64, String> {
        let sql = self.sql("SELECT COALESCE(MAX(seq), 0) FROM lianqiao_audit WHERE chain = ?");
        let row = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(chain.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        row.try_get::<i64, _>(0).map_err(|e| e.to_string())
    }

    /// Records of `chain` in order, handed to `visit` one at a time (the
    /// chain may be far larger than memory); `visit` returns false to stop.
    pub async fn walk(&self, chain: &str, visit: impl FnMut(Stored) -> bool) -> Result<(), String> {
        self.walk_range(chain, 0, i64::MAX, visit).await
    }

    /// Records of `chain` with `after < seq <= upto`, in order.
    pub async fn walk_range(
        &self,
        chain: &str,
        after: i64,
        upto: i64,
        mut visit: impl FnMut(Stored) -> bool,
    ) -> Result<(), String> {
        let sql = self.sql(&format!(
            "{SELECT} WHERE chain = ? AND seq > ? AND seq <= ? ORDER BY seq"
        ));
        let mut rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(chain.to_string())
            .bind(after)
            .bind(upto)
            .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
            if !visit(stored(&row)?) {
                break;
            }
        }
        Ok(())
    }

    /// Records matching `q`, newest first.
    pub async fn query(&self, q: &Query) -> Result<Vec<Stored>, String> {
        let mut sql = format!("{SELECT} WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(c) = &q.chain {
            sql.push_str(" AND chain = ?");
            binds.push(c.clone());
        }
        if let Some(p) = &q.principal {
            sql.push_str(" AND principal = ?");
            binds.push(p.clone());
        }
        if let Some(d) = &q.division {
            // Records in the subtree: the principal's division or the scope.
            sql.push_str(" AND division LIKE ?");
            binds.push(format!("{}%", d.replace(['%', '_'], "")));
        }
        if let Some(s) = &q.since {
            sql.push_str(" AND at >= ?");
            binds.push(s.clone());
        }
        if let Some(u) = &q.until {
            sql.push_str(" AND at < ?");
            binds.push(u.clone());
        }
        let read = if q.resource.is_some() {
            RESOURCE_SCAN.max(q.limit)
        } else {
            q.limit.max(1)
        };
        sql.push_str(&format!(" ORDER BY at DESC, seq DESC LIMIT {read}"));
        let sql = self.sql(&sql);
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let mut found: Vec<Stored> = rows.iter().map(stored).collect::<Result<_, _>>()?;
        if let Some(resource) = &q.resource {
            found.retain(|r| r.record().is_ok_and(|rec| &rec.resource == resource));
            found.truncate(q.limit.max(1) as usize);
        }
        Ok(found)
    }

    /// Run a raw statement (for tests that tamper with the store).
    pub async fn execute(&self, sql: &str) -> Result<u64, String> {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| e.to_string())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const SELECT: &str = "SELECT chain, seq, at, request_id, principal, division, status, decision, body, prev_hash, hash FROM lianqiao_audit";

fn stored(row: &sqlx::any::AnyRow) -> Result<Stored, String> {
    let s = |i: usize| row.try_get::<String, _>(i).map_err(|e| e.to_string());
    let n = |i: usize| row.try_get::<i64, _>(i).map_err(|e| e.to_string());
    Ok(Stored {
        chain: s(0)?,
        seq: n(1)?,
        at: s(2)?,
        request_id: s(3)?,
        principal: s(4)?,
        division: s(5)?,
        status: n(6)?,
        decision: s(7)?,
        body: s(8)?,
        prev_hash: s(9)?,
        hash: s(10)?,
    })
}

impl Stored {
    pub fn record(&self) -> Result<AuditRecord, String> {
        serde_json::from_str(&self.body).map_err(|e| e.to_string())
    }
}
