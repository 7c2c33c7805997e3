//! `sql-write` (contract 0.2): the only way a plugin changes a database.
//!
//! A source that may write declares, in `[sql.write.statements]`, each
//! statement by name; the plugin names a statement and gives parameters,
//! never SQL text, so what a source can do to its database is exactly what
//! its config lists, reviewable by the district's DBA. The calls of one
//! `transaction` run in one database transaction on a pool of their own
//! (reads keep their read-only pool): all or nothing, with a per-call
//! expected row count that turns a lost race into a `conflict` and a
//! rollback.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Executor};

use super::sql::{bind_params, renumber_for_postgres, scan_code};
use crate::bindings::v1::lianqiao::source::types::Value;
use crate::bindings::v2::lianqiao::source0_2_0::sql_write::{Host, StatementCall, WriteError};
use crate::state::HostState;

#[derive(Clone, Debug)]
enum WritePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

/// A source's write grant: its own pool and its declared statements.
#[derive(Clone, Debug)]
pub struct SqlWriter {
    pool: WritePool,
    /// Name → statement as sent (checked; renumbered for PostgreSQL).
    statements: BTreeMap<String, (String, usize)>,
}

/// Check a declared statement: one `INSERT` or `UPDATE` (no `DELETE`: a
/// case's history is never erased), returning it trimmed with its `?` count.
pub fn check_write_statement(name: &str, statement: &str) -> Result<(String, usize), String> {
    let trimmed = statement.trim().trim_end_matches(';').trim_end();
    let first = trimmed
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if first != "INSERT" && first != "UPDATE" {
        return Err(format!(
            "statement `{name}` must be one INSERT or UPDATE, not `{first}`"
        ));
    }
    let (mut semicolons, mut marks) = (0, 0);
    scan_code(trimmed, |_, c| match c {
        ';' => semicolons += 1,
        '?' => marks += 1,
        _ => {}
    });
    if semicolons > 0 {
        return Err(format!("statement `{name}` must be a single statement"));
    }
    Ok((trimmed.to_string(), marks))
}

impl SqlWriter {
    /// Prepare the write pool for `url` and check every statement. Opened
    /// lazily, like the read pool.
    pub fn connect_lazy(
        url: &str,
        statements: &BTreeMap<String, String>,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        let postgres = matches!(scheme, "postgres" | "postgresql");
        let mut checked = BTreeMap::new();
        for (name, statement) in statements {
            let (sql, marks) = check_write_statement(name, statement)?;
            let sql = if postgres {
                renumber_for_postgres(&sql)
            } else {
                sql
            };
            checked.insert(name.clone(), (sql, marks));
        }
        let pool = match scheme {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| e.to_string())?
                    .create_if_missing(false)
                    .busy_timeout(Duration::from_secs(5));
                WritePool::Sqlite(
                    SqlitePoolOptions::new()
                        // SQLite has one writer at a time anyway.
                        .max_connections(1)
                        .acquire_timeout(acquire_timeout)
                        .idle_timeout(Some(super::sql::IDLE_CONNECTION))
                        .connect_lazy_with(options),
                )
            }
            "postgres" | "postgresql" => WritePool::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire_timeout)
                    .idle_timeout(Some(super::sql::IDLE_CONNECTION))
                    .connect_lazy_with(PgConnectOptions::from_str(url).map_err(|e| e.to_string())?),
            ),
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                WritePool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(max_connections)
                        .acquire_timeout(acquire_timeout)
                        .idle_timeout(Some(super::sql::IDLE_CONNECTION))
                        .connect_lazy_with(
                            MySqlConnectOptions::from_str(&url).map_err(|e| e.to_string())?,
                        ),
                )
            }
            other => return Err(format!("unsupported database scheme `{other}:`")),
        };
        Ok(SqlWriter {
            pool,
            statements: checked,
        })
    }

    /// The declared statement names.
    pub fn statement_names(&self) -> impl Iterator<Item = &str> {
        self.statements.keys().map(String::as_str)
    }

    /// Run `calls` in one transaction.
    pub async fn transaction(&self, calls: &[StatementCall]) -> Result<Vec<u64>, WriteError> {
        let mut resolved = Vec::with_capacity(calls.len());
        for call in calls {
            let Some((sql, marks)) = self.statements.get(&call.statement) else {
                return Err(WriteError::Denied(format!(
                    "`{}` is not a statement declared in [sql.write.statements] (declared: {})",
                    call.statement,
                    self.statements
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if *marks != call.params.len() {
                return Err(WriteError::Statement(format!(
                    "statement `{}` has {marks} `?` placeholders but {} parameters were given",
                    call.statement,
                    call.params.len()
                )));
            }
            resolved.push((sql.as_str(), call));
        }
        match &self.pool {
            WritePool::Sqlite(pool) => run_all!(pool, resolved),
            WritePool::Postgres(pool) => run_all!(pool, resolved),
            WritePool::MySql(pool) => run_all!(pool, resolved),
        }
    }
}

/// Begin, run each call checking its row count, commit; any error rolls
/// back (a dropped transaction rolls back too).
macro_rules! run_all {
    ($pool:expr, $calls:expr) => {{
        let mut tx = $pool.begin().await.map_err(classify)?;
        let mut counts = Vec::with_capacity($calls.len());
        for (sql, call) in &$calls {
            // Not kept prepared: one declared statement gets a NULL (sent
            // as text) in one call and an integer in the next, and
            // PostgreSQL binds a cached statement with its first types.
            let query = bind_params!(
                sqlx::query(AssertSqlSafe(*sql)).persistent(false),
                &call.params
            );
            let changed = tx.execute(query).await.map_err(classify)?.rows_affected();
            if let Some(expected) = call.expect_rows
                && expected != changed
            {
                let _ = tx.rollback().await;
                return Err(WriteError::Conflict(format!(
                    "statement `{}` changed {changed} rows, expected {expected}; nothing was written",
                    call.statement
                )));
            }
            counts.push(changed);
        }
        tx.commit().await.map_err(classify)?;
        Ok(counts)
    }};
}
use run_all;

fn classify(e: sqlx::Error) -> WriteError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => WriteError::Conflict(format!(
            "a key is already taken: {}; nothing was written",
            db.message()
        )),
        sqlx::Error::Database(db) => {
            WriteError::Statement(format!("{}; nothing was written", db.message()))
        }
        sqlx::Error::PoolTimedOut => WriteError::Timeout("no database connection in time".into()),
        sqlx::Error::Io(e) => WriteError::Unavailable(e.to_string()),
        sqlx::Error::Tls(e) => WriteError::Unavailable(e.to_string()),
        sqlx::Error::PoolClosed => WriteError::Unavailable("the pool is closed".into()),
        other => WriteError::Statement(other.to_string()),
    }
}

impl Host for HostState {
    async fn transaction(
        &mut self,
        calls: Vec<StatementCall>,
    ) -> wasmtime::Result<Result<Vec<u64>, WriteError>> {
        let Some(writer) = self.grants.sql_write.clone() else {
            return Ok(Err(WriteError::Denied(format!(
                "source `{}` is granted no writes (declare [sql.write.statements] in its config)",
                self.grants.source
            ))));
        };
        let remaining = self.remaining();
        let span = tracing::info_span!(
            "host.sql_write",
            source = %self.grants.source,
            statements = %calls.iter().map(|c| c.statement.as_str()).collect::<Vec<_>>().join(","),
        );
        let outcome = tracing::Instrument::instrument(
            async { tokio::time::timeout(remaining, writer.transaction(&calls)).await },
            span,
        )
        .await;
        Ok(match outcome {
            Ok(result) => result,
            // The transaction future was dropped mid-way: sqlx rolls it back.
            Err(_) => Err(WriteError::Timeout(format!(
                "the transaction ran past the source's deadline ({} ms left); nothing was written",
                remaining.as_millis()
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_inserts_and_updates_are_declared() {
        assert!(check_write_statement("a", "INSERT INTO t VALUES (?, ?)").is_ok());
        assert_eq!(
            check_write_statement("a", "UPDATE t SET s = ? WHERE id = ? AND s = ?").map(|(_, n)| n),
            Ok(3)
        );
        assert!(check_write_statement("a", "DELETE FROM t").is_err());
        assert!(check_write_statement("a", "SELECT 1").is_err());
        assert!(check_write_statement("a", "INSERT INTO t VALUES (1); DROP TABLE t").is_err());
        assert_eq!(
            check_write_statement("a", "INSERT INTO t VALUES ('?;', ?)").map(|(_, n)| n),
            Ok(1)
        );
    }

    #[tokio::test]
    async fn a_transaction_is_all_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.sqlite");
        let url = format!("sqlite://{}", path.display());
        {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
                .await
                .expect("create");
            conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, s TEXT)")
                .await
                .expect("table");
            conn.execute("INSERT INTO t VALUES ('a', 'x')")
                .await
                .expect("row");
        }
        let statements = BTreeMap::from([
            ("add".to_string(), "INSERT INTO t VALUES (?, ?)".to_string()),
            (
                "move".to_string(),
                "UPDATE t SET s = ? WHERE id = ? AND s = ?".to_string(),
            ),
        ]);
        let writer =
            SqlWriter::connect_lazy(&url, &statements, 1, Duration::from_secs(2)).expect("pool");
        let text = |s: &str| Value::Text(s.into());
        let call = |statement: &str, params: Vec<Value>, expect_rows| StatementCall {
            statement: statement.into(),
            params,
            expect_rows,
        };
        // The second call finds `a` no longer at `y`: both roll back.
        let lost = writer
            .transaction(&[
                call("add", vec![text("b"), text("x")], Some(1)),
                call("move", vec![text("z"), text("a"), text("y")], Some(1)),
            ])
            .await;
        assert!(
            matches!(&lost, Err(WriteError::Conflict(m)) if m.contains("changed 0 rows")),
            "{lost:?}"
        );
        let taken = writer
            .transaction(&[call("add", vec![text("a"), text("x")], None)])
            .await;
        assert!(
            matches!(&taken, Err(WriteError::Conflict(m)) if m.contains("already taken")),
            "{taken:?}"
        );
        let undeclared = writer.transaction(&[call("drop", vec![], None)]).await;
        assert!(
            matches!(&undeclared, Err(WriteError::Denied(m)) if m.contains("add, move")),
            "{undeclared:?}"
        );
        let done = writer
            .transaction(&[
                call("add", vec![text("b"), text("x")], Some(1)),
                call("move", vec![text("y"), text("a"), text("x")], Some(1)),
            ])
            .await;
        assert_eq!(done, Ok(vec![1, 1]));
        let SqlWriter {
            pool: WritePool::Sqlite(pool),
            ..
        } = writer
        else {
            panic!("sqlite")
        };
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, s FROM t ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("read");
        assert_eq!(
            rows,
            vec![("a".into(), "y".into()), ("b".into(), "x".into())]
        );
    }
}
