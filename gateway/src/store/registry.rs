//! The division registry in the gateway's store (the audit trail's
//! database: SQLite by default, PostgreSQL for replicas): every source's
//! divisions and grids as it last answered, so a start serves the stored
//! copy at once instead of pulling ~a million codes through federation.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use futures::TryStreamExt;
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::sync::OnceCell;

use super::numbered;

/// A source's part of the registry as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// SHA-256 (hex) of its (code, name) pairs: unchanged → not written.
    pub digest: String,
    pub rows: i64,
    pub fetched_at: String,
}

/// Rows per INSERT statement (PostgreSQL takes 65,535 parameters).
const BATCH: usize = 500;

pub struct RegistryStore {
    url: String,
    pool: OnceCell<(AnyPool, bool)>,
}

impl std::fmt::Debug for RegistryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryStore")
    }
}

impl RegistryStore {
    /// Opened at first use.
    pub fn new(url: String) -> RegistryStore {
        RegistryStore {
            url,
            pool: OnceCell::new(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn pool(&self) -> Result<&(AnyPool, bool), String> {
        self.pool
            .get_or_try_init(|| async {
                let (pool, postgres) =
                    crate::store::connect(&self.url, 2, "registry store").await?;
                for statement in [
                    "CREATE TABLE IF NOT EXISTS lianqiao_registry (source TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (source, code))",
                    "CREATE TABLE IF NOT EXISTS lianqiao_registry_source (source TEXT PRIMARY KEY, digest TEXT NOT NULL, row_count BIGINT NOT NULL, fetched_at TEXT NOT NULL)",
                ] {
                    sqlx::query(statement)
                        .execute(&pool)
                        .await
                        .map_err(|e| format!("cannot create the registry tables: {e}"))?;
                }
                Ok((pool, postgres))
            })
            .await
    }

    /// What is stored for each source.
    pub async fn sources(&self) -> Result<HashMap<String, Stored>, String> {
        let (pool, _) = self.pool().await?;
        let rows = sqlx::query(
            "SELECT source, digest, row_count, fetched_at FROM lianqiao_registry_source",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>(0).map_err(|e| e.to_string())?,
                    Stored {
                        digest: r.try_get(1).map_err(|e| e.to_string())?,
                        rows: r.try_get(2).map_err(|e| e.to_string())?,
                        fetched_at: r.try_get(3).map_err(|e| e.to_string())?,
                    },
                ))
            })
            .collect()
    }

    /// Every stored (code, name) of `sources`, streamed into the compact
    /// registry (a code two sources name keeps the first name read).
    pub async fn load(
        &self,
        sources: &[String],
    ) -> Result<lianqiao_policy::division::Registry, String> {
        let (pool, pg) = self.pool().await?;
        let mut names = lianqiao_policy::division::RegistryBuilder::default();
        for source in sources {
            let mut rows = sqlx::query(AssertSqlSafe(numbered(
                *pg,
                "SELECT code, name FROM lianqiao_registry WHERE source = ?",
            )))
            .bind(source.clone())
            .fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
                let code: &str = row.try_get(0).map_err(|e| e.to_string())?;
                let name: &str = row.try_get(1).map_err(|e| e.to_string())?;
                names.push(code, name);
            }
        }
        Ok(names.build())
    }

    /// Replace `source`'s part with `rows`, in one transaction.
    pub async fn replace(
        &self,
        source: &str,
        rows: &BTreeMap<String, String>,
        digest: &str,
        at: SystemTime,
    ) -> Result<(), String> {
        let (pool, pg) = self.pool().await?;
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        sqlx::query(AssertSqlSafe(numbered(
            *pg,
            "DELETE FROM lianqiao_registry WHERE source = ?",
        )))
        .bind(source.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        let pairs: Vec<(&String, &String)> = rows.iter().collect();
        for chunk in pairs.chunks(BATCH) {
            let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!("INSERT INTO lianqiao_registry (source, code, name) VALUES {values}");
            let mut q = sqlx::query(AssertSqlSafe(numbered(*pg, &sql)));
            for (code, name) in chunk {
                q = q
                    .bind(source.to_string())
                    .bind((*code).clone())
                    .bind((*name).clone());
            }
            q.execute(&mut *tx).await.map_err(|e| e.to_string())?;
        }
        upsert_source(&mut tx, *pg, source, digest, rows.len() as i64, at).await?;
        tx.commit().await.map_err(|e| e.to_string())
    }

    /// Record that `source` answered the same as stored, at `at`.
    pub async fn touch(&self, source: &str, stored: &Stored, at: SystemTime) -> Result<(), String> {
        let (pool, pg) = self.pool().await?;
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        upsert_source(&mut tx, *pg, source, &stored.digest, stored.rows, at).await?;
        tx.commit().await.map_err(|e| e.to_string())
    }
}

async fn upsert_source(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    pg: bool,
    source: &str,
    digest: &str,
    rows: i64,
    at: SystemTime,
) -> Result<(), String> {
    sqlx::query(AssertSqlSafe(numbered(
        pg,
        "DELETE FROM lianqiao_registry_source WHERE source = ?",
    )))
    .bind(source.to_string())
    .execute(&mut **tx)
    .await
    .map_err(|e| e.to_string())?;
    sqlx::query(AssertSqlSafe(numbered(
        pg,
        "INSERT INTO lianqiao_registry_source (source, digest, row_count, fetched_at) VALUES (?, ?, ?, ?)",
    )))
    .bind(source.to_string())
    .bind(digest.to_string())
    .bind(rows)
    .bind(crate::telemetry::rfc3339(at))
    .execute(&mut **tx)
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}
