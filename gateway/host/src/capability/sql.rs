//! `sql`: read-only statements against the source's own database.
//!
//! The host owns the pool and its credentials; every statement runs
//! read-only (SQLite opened read-only; on PostgreSQL and MariaDB each
//! statement in a transaction begun `READ ONLY` and rolled back), so a
//! statement check here is for clear errors, not the last line of defence.
//! A session default would not do: a statement can switch it off
//! (PostgreSQL `set_config('default_transaction_read_only', 'off', …)`)
//! and the next statement on that pooled connection could then write (a
//! data-modifying `WITH`); a read-only transaction cannot be made
//! read-write once a query ran in it. Statements use `?` placeholders on
//! every backend; the host renumbers them for PostgreSQL.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, Column, Executor, Row, TypeInfo, ValueRef};

use super::sql_rows::{Stored, row_buffer};
use super::sqlite_reads::SqliteReader;
use crate::bindings::v1::lianqiao::source::sql::{Dialect, Host, ResultSet, SqlError};
use crate::bindings::v1::lianqiao::source::types::{Value, ValueKind};
use crate::bindings::v4::lianqiao::source0_4_0::rows::RowBuffer;

/// A SQLite statement's rows as 0.1's result set.
async fn sqlite_result_set(
    reader: &SqliteReader,
    sql: &str,
    params: &[Value],
    deadline: Instant,
) -> Result<ResultSet, SqlError> {
    let mut rows = Vec::new();
    let columns = reader
        .read(sql, params, deadline, |_, cells| {
            rows.push(cells.iter().map(|c| value_of(*c)).collect());
            Ok(())
        })
        .await?;
    Ok(ResultSet { columns, rows })
}

/// A SQLite cell as 0.1's `value`.
fn value_of(cell: Option<Stored<'_>>) -> Value {
    match cell {
        None => Value::Null,
        Some(Stored::Integer(i)) => Value::Integer(i),
        Some(Stored::Boolean(b)) => Value::Boolean(b),
        Some(Stored::Float(f)) => Value::Float(f),
        Some(Stored::Text(s)) => Value::Text(s.to_owned()),
    }
}
use crate::plugin::SourceGrants;
use crate::state::HostState;

/// Decode one cell by the type the driver reports, trying the few Rust
/// types every backend supports; anything else must be cast to text in the
/// source's SQL, and the error says so. (No allocation on the hot path:
/// type names are matched in place, the column name only on error.)
macro_rules! decode {
    ($row:expr, $i:expr) => {{
        let raw = $row.try_get_raw($i).map_err(classify)?;
        if raw.is_null() {
            Value::Null
        } else {
            let type_info = raw.type_info();
            let kind = cell_kind(type_info.name());
            match kind {
                CellKind::Integer => $row
                    .try_get::<i64, _>($i)
                    .map(Value::Integer)
                    .or_else(|_| $row.try_get::<i32, _>($i).map(|v| Value::Integer(v.into())))
                    .or_else(|_| $row.try_get::<i16, _>($i).map(|v| Value::Integer(v.into())))
                    .or_else(|_| $row.try_get::<bool, _>($i).map(Value::Boolean)),
                CellKind::Boolean => $row.try_get::<bool, _>($i).map(Value::Boolean),
                CellKind::Float => $row
                    .try_get::<f64, _>($i)
                    .map(Value::Float)
                    .or_else(|_| $row.try_get::<f32, _>($i).map(|v| Value::Float(v.into()))),
                CellKind::Text => $row.try_get::<String, _>($i).map(Value::Text),
            }
            .map_err(|_| {
                SqlError::Statement(format!(
                    "column `{}` has type {}, which the sql capability does not read; \
                     CAST it to text, integer or float in the source's sql",
                    $row.column($i).name(),
                    type_info.name()
                ))
            })?
        }
    }};
}

/// How to read a cell, from the driver's type name.
#[derive(Clone, Copy)]
pub(crate) enum CellKind {
    Integer,
    Boolean,
    Float,
    Text,
}

pub(crate) fn cell_kind(type_name: &str) -> CellKind {
    let has = |needle: &str| {
        type_name
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    if has("INT") {
        CellKind::Integer
    } else if has("BOOL") {
        CellKind::Boolean
    } else if has("REAL") || has("FLOAT") || has("DOUBLE") {
        CellKind::Float
    } else {
        CellKind::Text
    }
}

/// Bind, fetch and decode, the same for every backend.
/// Bind contract values to a query, positionally (reads and writes alike;
/// NULL goes as text, which PostgreSQL casts only where the SQL says so).
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                Value::Null => query.bind(None::<String>),
                Value::Boolean(b) => query.bind(*b),
                Value::Integer(i) => query.bind(*i),
                Value::Float(f) => query.bind(*f),
                Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => query.bind(s.clone()),
            };
        }
        query
    }};
}
pub(crate) use bind_params;

macro_rules! run {
    ($pool:expr, $sql:expr, $params:expr) => {
        run!($pool, $sql, $params, |rows| result_set!(rows))
    };
    ($pool:expr, $sql:expr, $params:expr, |$rows:ident| $collect:expr) => {{
        let query = bind_params!(sqlx::query(AssertSqlSafe($sql)), $params);
        let $rows = query.fetch_all($pool).await.map_err(classify)?;
        $collect
    }};
}

/// Rows as 0.1's result set: a `value` per cell.
macro_rules! result_set {
    ($rows:expr) => {{
        let rows = $rows;
        let columns = rows
            .first()
            .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut cells = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                cells.push(decode!(row, i));
            }
            out.push(cells);
        }
        Ok(ResultSet { columns, rows: out })
    }};
}

/// Run one checked statement on PostgreSQL or MariaDB in a read-only
/// transaction (rolled back), and collect its rows with `$collect`.
macro_rules! read_only {
    ($pool:expr, $sql:expr, $params:expr, |$rows:ident| $collect:expr) => {{
        match $pool {
            // SQLite is read on the caller's thread (`sqlite_reads.rs`).
            SqlPool::Sqlite(_) => Err(SqlError::Statement("not a network database".into())),
            SqlPool::Postgres(pool) => {
                let mut tx = pool.begin_with("BEGIN READ ONLY").await.map_err(classify)?;
                let result = async { run!(&mut *tx, $sql, $params, |$rows| $collect) }.await;
                // Nothing was written; ending it either way frees the
                // connection (a dropped transaction also rolls back).
                let _ = tx.rollback().await;
                result
            }
            SqlPool::MySql(pool) => {
                let mut tx = pool
                    .begin_with("START TRANSACTION READ ONLY")
                    .await
                    .map_err(classify)?;
                let result = async { run!(&mut *tx, $sql, $params, |$rows| $collect) }.await;
                let _ = tx.rollback().await;
                result
            }
        }
    }};
}

/// The last statements a source's database received, as sent (after
/// placeholder renumbering) with their parameters: for operators and tests
/// asking "what did the source actually get?".
#[derive(Debug, Default)]
pub struct StatementLog(std::sync::Mutex<std::collections::VecDeque<(String, Vec<Value>)>>);

impl StatementLog {
    const KEEP: usize = 64;

    fn push(&self, sql: &str, params: &[Value]) {
        if let Ok(mut log) = self.0.lock() {
            if log.len() == Self::KEEP {
                log.pop_front();
            }
            log.push_back((sql.to_string(), params.to_vec()));
        }
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<(String, Vec<Value>)> {
        self.0
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A connection unused this long is closed (shorter than the health
/// interval, so an idle district holds none): a hundred districts' pools
/// hold connections (PostgreSQL allows 100 in all here) only while busy.
pub(super) const IDLE_CONNECTION: Duration = Duration::from_secs(10);

/// A source's database pool.
#[derive(Clone, Debug)]
pub enum SqlPool {
    /// Read on the caller's thread (`sqlite_reads.rs`).
    Sqlite(Arc<SqliteReader>),
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
}

/// Pool sizing and timeouts from the source's `[sql]` section.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl SqlPool {
    /// Prepare a read-only pool for `url` (`sqlite:`, `postgres:`,
    /// `mysql:`/`mariadb:`). Connections are opened lazily, so a database
    /// that is down fails its source's requests, not the gateway's start.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<Self, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => {
                // sqlx reads the URL's forms (`sqlite://path`, `sqlite:path`,
                // `?mode=…`); the file is then read with rusqlite.
                let options = SqliteConnectOptions::from_str(url).map_err(|e| e.to_string())?;
                Ok(SqlPool::Sqlite(SqliteReader::new(
                    options.get_filename().to_path_buf(),
                    settings.max_connections,
                    settings.acquire_timeout,
                )))
            }
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|e| e.to_string())?
                    .options([("default_transaction_read_only", "on")]);
                Ok(SqlPool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(settings.acquire_timeout)
                        .min_connections(0)
                        .idle_timeout(Some(IDLE_CONNECTION))
                        .connect_lazy_with(options),
                ))
            }
            "mysql" | "mariadb" => {
                let url = url.replacen("mariadb:", "mysql:", 1);
                let options = MySqlConnectOptions::from_str(&url).map_err(|e| e.to_string())?;
                Ok(SqlPool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(settings.max_connections)
                        .acquire_timeout(settings.acquire_timeout)
                        .min_connections(0)
                        .idle_timeout(Some(IDLE_CONNECTION))
                        .after_connect(|conn, _| {
                            Box::pin(async move {
                                conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                                Ok(())
                            })
                        })
                        .connect_lazy_with(options),
                ))
            }
            other => Err(format!(
                "unsupported database scheme `{other}:` (use sqlite:, postgres: or mysql:)"
            )),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            SqlPool::Sqlite(_) => Dialect::Sqlite,
            SqlPool::Postgres(_) => Dialect::Postgres,
            SqlPool::MySql(_) => Dialect::Mysql,
        }
    }

    /// Check a statement and log it as the database will receive it.
    fn prepare(
        &self,
        statement: &str,
        params: &[Value],
        log: Option<&StatementLog>,
    ) -> Result<String, SqlError> {
        let checked = check_statement(statement, params.len())?;
        let sql = match self {
            SqlPool::Postgres(_) => renumber_for_postgres(&checked),
            _ => checked,
        };
        if let Some(log) = log {
            log.push(&sql, params);
        }
        Ok(sql)
    }

    /// Run one checked, read-only statement (contract 0.1's `sql.query`),
    /// stopping at `deadline`.
    pub async fn query(
        &self,
        statement: &str,
        params: &[Value],
        log: Option<&StatementLog>,
        deadline: Instant,
    ) -> Result<ResultSet, SqlError> {
        let sql = self.prepare(statement, params, log)?;
        match self {
            SqlPool::Sqlite(reader) => sqlite_result_set(reader, &sql, params, deadline).await,
            _ => read_only!(self, sql, params, |rows| result_set!(rows)),
        }
    }

    /// Run one checked, read-only statement into a row buffer, each column
    /// read as `kinds` asks (contract 0.4's `sql-rows.query`), stopping at
    /// `deadline`.
    pub async fn query_rows(
        &self,
        statement: &str,
        params: &[Value],
        kinds: &[Option<ValueKind>],
        log: Option<&StatementLog>,
        deadline: Instant,
    ) -> Result<RowBuffer, SqlError> {
        let sql = self.prepare(statement, params, log)?;
        match self {
            SqlPool::Sqlite(reader) => {
                let mut out = lianqiao_rows::Writer::new();
                let mut rows = 0u32;
                let columns = reader
                    .read(&sql, params, deadline, |columns, cells| {
                        rows += 1;
                        for (i, cell) in cells.iter().enumerate() {
                            match cell {
                                None => out.null(),
                                Some(cell) => super::sql_rows::write_cell(
                                    &mut out,
                                    *cell,
                                    kinds.get(i).copied().flatten(),
                                )
                                .map_err(|why| {
                                    SqlError::Statement(format!(
                                        "column `{}` of row {rows} {why}; fix the source's sql or the field's kind",
                                        columns[i]
                                    ))
                                })?,
                            }
                        }
                        Ok(())
                    })
                    .await?;
                Ok(RowBuffer {
                    columns,
                    rows,
                    cells: out.into_bytes(),
                })
            }
            _ => read_only!(self, sql, params, |rows| row_buffer!(rows, kinds)),
        }
    }
}

impl SqlPool {
    /// The database's plan for a statement this pool already ran (as the
    /// [`StatementLog`] holds it: checked, and renumbered for PostgreSQL),
    /// one line per plan node, in a read-only transaction. For the probe's
    /// warnings about full scans and sorts.
    pub async fn explain(&self, logged: &str, params: &[Value]) -> Result<Vec<String>, SqlError> {
        let text = |v: &Value| match v {
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Boolean(b) => b.to_string(),
            Value::Null => String::new(),
        };
        let result = match self {
            // Not through `query`: its check admits only SELECT and WITH.
            SqlPool::Sqlite(reader) => {
                let sql = format!("EXPLAIN QUERY PLAN {logged}");
                let deadline = Instant::now() + Duration::from_secs(10);
                sqlite_result_set(reader, &sql, params, deadline).await?
            }
            SqlPool::Postgres(pool) => {
                let mut tx = pool.begin_with("BEGIN READ ONLY").await.map_err(classify)?;
                let sql = format!("EXPLAIN {logged}");
                let r: Result<ResultSet, SqlError> = async { run!(&mut *tx, sql, params) }.await;
                let _ = tx.rollback().await;
                r?
            }
            SqlPool::MySql(pool) => {
                let mut tx = pool
                    .begin_with("START TRANSACTION READ ONLY")
                    .await
                    .map_err(classify)?;
                let sql = format!("EXPLAIN {logged}");
                let r: Result<ResultSet, SqlError> = async { run!(&mut *tx, sql, params) }.await;
                let _ = tx.rollback().await;
                r?
            }
        };
        Ok(match self {
            // `id, parent, notused, detail`: the detail says it all.
            SqlPool::Sqlite(_) => result
                .rows
                .iter()
                .filter_map(|r| r.last().map(text))
                .collect(),
            SqlPool::Postgres(_) => result
                .rows
                .iter()
                .filter_map(|r| r.first().map(text))
                .collect(),
            // One row per table: `name=value` for the columns that matter.
            SqlPool::MySql(_) => result
                .rows
                .iter()
                .map(|r| {
                    result
                        .columns
                        .iter()
                        .zip(r)
                        .filter(|(c, _)| matches!(c.as_str(), "table" | "type" | "key" | "Extra"))
                        .map(|(c, v)| format!("{c}={}", text(v)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
        })
    }
}

fn classify(e: sqlx::Error) -> SqlError {
    match e {
        sqlx::Error::Database(db) => SqlError::Statement(db.message().to_string()),
        sqlx::Error::PoolTimedOut => SqlError::Timeout("no database connection in time".into()),
        sqlx::Error::Io(e) => SqlError::Unavailable(e.to_string()),
        sqlx::Error::Tls(e) => SqlError::Unavailable(e.to_string()),
        sqlx::Error::PoolClosed => SqlError::Unavailable("the pool is closed".into()),
        other => SqlError::Statement(other.to_string()),
    }
}

/// Walk `sql` outside quoted strings, identifiers and comments, calling
/// `on_code` for each code character with its byte index.
pub(crate) fn scan_code(sql: &str, mut on_code: impl FnMut(usize, char)) {
    let bytes: Vec<(usize, char)> = sql.char_indices().collect();
    let mut i = 0;
    while i < bytes.len() {
        let (at, c) = bytes[i];
        match c {
            '\'' | '"' | '`' => {
                i += 1;
                while i < bytes.len() && bytes[i].1 != c {
                    i += 1;
                }
            }
            '-' if bytes.get(i + 1).map(|b| b.1) == Some('-') => {
                while i < bytes.len() && bytes[i].1 != '\n' {
                    i += 1;
                }
            }
            '/' if bytes.get(i + 1).map(|b| b.1) == Some('*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i].1 == '*' && bytes[i + 1].1 == '/') {
                    i += 1;
                }
                i += 1;
            }
            _ => on_code(at, c),
        }
        i += 1;
    }
}

/// Accept one `SELECT`/`WITH` statement whose `?` count matches `params`.
fn check_statement(statement: &str, params: usize) -> Result<String, SqlError> {
    let trimmed = statement.trim().trim_end_matches(';').trim_end();
    let first = trimmed
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        return Err(SqlError::Denied(format!(
            "only SELECT or WITH statements are allowed, not `{first}`"
        )));
    }
    let (mut semicolons, mut marks) = (0, 0);
    let mut code = String::with_capacity(trimmed.len());
    scan_code(trimmed, |_, c| {
        match c {
            ';' => semicolons += 1,
            '?' => marks += 1,
            _ => {}
        }
        code.push(c.to_ascii_uppercase());
    });
    if semicolons > 0 {
        return Err(SqlError::Denied("one statement per call".into()));
    }
    // MariaDB/MySQL write files from a SELECT, read-only transaction or not.
    if code.contains("OUTFILE") || code.contains("DUMPFILE") {
        return Err(SqlError::Denied(
            "SELECT … INTO OUTFILE/DUMPFILE writes files; a source reads rows".into(),
        ));
    }
    if marks != params {
        return Err(SqlError::Statement(format!(
            "the statement has {marks} `?` placeholders but {params} parameters were given"
        )));
    }
    Ok(trimmed.to_string())
}

/// `?` → `$1`, `$2`, … outside quotes and comments.
pub(crate) fn renumber_for_postgres(sql: &str) -> String {
    let mut marks = Vec::new();
    scan_code(sql, |at, c| {
        if c == '?' {
            marks.push(at);
        }
    });
    let mut out = String::with_capacity(sql.len() + marks.len() * 2);
    let mut last = 0;
    for (n, at) in marks.iter().enumerate() {
        out.push_str(&sql[last..*at]);
        out.push('$');
        out.push_str(&(n + 1).to_string());
        last = at + 1;
    }
    out.push_str(&sql[last..]);
    out
}

/// OpenTelemetry's `db.system` name of a dialect.
fn dialect_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgresql",
        Dialect::Mysql => "mysql",
    }
}

/// The kind of a failed statement, for its span.
fn sql_error_kind(e: &SqlError) -> &'static str {
    match e {
        SqlError::Denied(_) => "denied",
        SqlError::Statement(_) => "statement",
        SqlError::Unavailable(_) => "unavailable",
        SqlError::Timeout(_) => "timeout",
    }
}

impl Host for HostState {
    fn database_dialect(&mut self) -> wasmtime::Result<Dialect> {
        Ok(match &self.grants.sql {
            Some(pool) => pool.dialect(),
            // Asking is harmless; the query itself will be denied.
            None => Dialect::Sqlite,
        })
    }

    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<ResultSet, SqlError>> {
        let grants = self.grants.clone();
        let (sql, params, log) = (&statement, &params, &grants.sql_log);
        let deadline = self.deadline;
        Ok(sql_call(
            &grants,
            self.remaining(),
            sql,
            |set: &ResultSet| set.rows.len(),
            |pool| async move { pool.query(sql, params, Some(log), deadline).await },
        )
        .await)
    }
}

/// One host SQL call, whichever contract asks: the grant check, the
/// deadline and the span every statement gets.
pub(super) async fn sql_call<T, Run, Ran>(
    grants: &SourceGrants,
    remaining: Duration,
    statement: &str,
    returned_rows: fn(&T) -> usize,
    run: Run,
) -> Result<T, SqlError>
where
    Run: FnOnce(SqlPool) -> Ran,
    Ran: Future<Output = Result<T, SqlError>>,
{
    {
        let Some(pool) = grants.sql.clone() else {
            return Err(SqlError::Denied(format!(
                "source `{}` is granted no sql capability",
                grants.source
            )));
        };
        // The guest's fiber is suspended while this awaits; the deadline
        // bounds the wait, since epochs do not interrupt host code.
        // One span per statement: the statement's text is the plugin's,
        // its parameters may be a caller's filter values and stay out.
        let span = tracing::info_span!(
            "host.sql",
            source = %grants.source,
            db.system = dialect_name(pool.dialect()),
            db.query.text = %statement,
            db.response.returned_rows = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(
            tokio::time::timeout(remaining, run(pool)),
            span.clone(),
        )
        .await;
        match &outcome {
            Ok(Ok(set)) => {
                span.record("db.response.returned_rows", returned_rows(set));
            }
            Ok(Err(e)) => {
                span.record("error", sql_error_kind(e));
            }
            Err(_) => {
                span.record("error", "timeout");
            }
        }
        match outcome {
            Ok(result) => result,
            Err(_) => Err(SqlError::Timeout(format!(
                "the statement ran past the source's deadline ({} ms left)",
                remaining.as_millis()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_accepted() {
        assert!(check_statement("SELECT 1", 0).is_ok());
        assert!(check_statement("  with t as (select 1) select * from t;", 0).is_ok());
        assert!(matches!(
            check_statement("DELETE FROM grid", 0),
            Err(SqlError::Denied(_))
        ));
        assert!(matches!(
            check_statement("SELECT 1; DROP TABLE grid", 0),
            Err(SqlError::Denied(_))
        ));
    }

    #[test]
    fn a_select_cannot_write_a_file() {
        for sql in [
            "SELECT * FROM grid INTO OUTFILE '/tmp/x'",
            "select 1 into dumpfile '/tmp/x'",
        ] {
            assert!(
                matches!(check_statement(sql, 0), Err(SqlError::Denied(_))),
                "{sql}"
            );
        }
        assert!(check_statement("SELECT 'into outfile' AS words", 0).is_ok());
    }

    fn database_url(var: &str, test: &str) -> Option<String> {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!(
                    "\n*** SKIPPED {test}: {var} is not set. `.ci/run` sets it; locally export it to run this test. ***\n"
                );
                None
            }
        }
    }

    /// Before: sessions were read-only by default, and a statement could
    /// switch the default off for the next statement on the same pooled
    /// connection, which then deleted rows through a data-modifying WITH.
    #[tokio::test]
    async fn a_read_cannot_switch_postgres_out_of_read_only() {
        let Some(url) = database_url(
            "LIANQIAO_TEST_POSTGRES_URL",
            "a_read_cannot_switch_postgres_out_of_read_only",
        ) else {
            return;
        };
        let rw = sqlx::PgPool::connect(&url).await.unwrap();
        for sql in [
            "DROP TABLE IF EXISTS lq_read_only_probe",
            "CREATE TABLE lq_read_only_probe (n INTEGER)",
            "INSERT INTO lq_read_only_probe VALUES (1), (2), (3)",
        ] {
            sqlx::query(sql).execute(&rw).await.unwrap();
        }
        let settings = PoolSettings {
            max_connections: 1, // every statement on the same connection
            acquire_timeout: Duration::from_secs(5),
        };
        let pool = SqlPool::connect_lazy(&url, &settings).unwrap();
        let _ = pool
            .query(
                "SELECT set_config('default_transaction_read_only', 'off', false)",
                &[],
                None,
                soon(),
            )
            .await;
        let switched = pool
            .query(
                "SELECT set_config('transaction_read_only', 'off', false)",
                &[],
                None,
                soon(),
            )
            .await;
        assert!(
            switched.is_err(),
            "a running read-only transaction stays so"
        );
        let err = pool
            .query(
                "WITH gone AS (DELETE FROM lq_read_only_probe RETURNING n) SELECT count(*) AS n FROM gone",
                &[],
                None,
                soon(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SqlError::Statement(ref m) if m.contains("read-only")),
            "{err:?}"
        );
        let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM lq_read_only_probe")
            .fetch_one(&rw)
            .await
            .unwrap();
        assert_eq!(left, 3, "no row was deleted");
        sqlx::query("DROP TABLE lq_read_only_probe")
            .execute(&rw)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn mariadb_reads_run_in_read_only_transactions() {
        let Some(url) = database_url(
            "LIANQIAO_TEST_MYSQL_URL",
            "mariadb_reads_run_in_read_only_transactions",
        ) else {
            return;
        };
        let settings = PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        };
        let pool = SqlPool::connect_lazy(&url, &settings).unwrap();
        let rs = pool
            .query("SELECT @@tx_read_only AS ro", &[], None, soon())
            .await
            .unwrap();
        assert_eq!(rs.rows[0][0], Value::Integer(1), "{rs:?}");
    }

    #[test]
    fn placeholders_in_strings_do_not_count() {
        assert!(check_statement("SELECT '?;' AS q WHERE a = ?", 1).is_ok());
        assert!(matches!(
            check_statement("SELECT ? , ?", 1),
            Err(SqlError::Statement(_))
        ));
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            renumber_for_postgres("SELECT '?' AS q, a FROM t WHERE a = ? AND b IN (?, ?) -- ?"),
            "SELECT '?' AS q, a FROM t WHERE a = $1 AND b IN ($2, $3) -- ?"
        );
    }

    /// A SQLite file in `dir` made by `statements`: its URL.
    async fn sqlite_file(dir: &tempfile::TempDir, statements: &[&str]) -> String {
        let url = format!("sqlite://{}", dir.path().join("d.sqlite").display());
        let rw = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        for statement in statements {
            sqlx::query(AssertSqlSafe(*statement))
                .execute(&rw)
                .await
                .unwrap();
        }
        rw.close().await;
        url
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    async fn sqlite_pool(url: &str) -> SqlPool {
        let settings = PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(2),
        };
        SqlPool::connect_lazy(url, &settings).unwrap()
    }

    /// No worker thread per connection and no hop per statement: the rows
    /// are read on the thread that asked (so also at its priority: the
    /// wide lane's lowered threads run region statements lowered).
    #[tokio::test(flavor = "current_thread")]
    async fn sqlite_rows_are_read_on_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_file(
            &dir,
            &[
                "CREATE TABLE g (code TEXT)",
                "INSERT INTO g VALUES ('a'), ('b')",
            ],
        )
        .await;
        let SqlPool::Sqlite(reader) = sqlite_pool(&url).await else {
            panic!("a SQLite pool")
        };
        let caller = std::thread::current().id();
        let mut threads = Vec::new();
        reader
            .read("SELECT code FROM g", &[], soon(), |_, _| {
                threads.push(std::thread::current().id());
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(threads, vec![caller, caller]);
        assert_eq!(reader.idle_connections(), 1, "the connection is kept");
    }

    /// Epochs cannot stop host code: SQLite's progress handler stops a
    /// statement at the call's deadline instead.
    #[tokio::test]
    async fn a_sqlite_statement_stops_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_file(&dir, &["CREATE TABLE g (code TEXT)"]).await;
        let pool = sqlite_pool(&url).await;
        let endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        let began = Instant::now();
        let err = pool
            .query(
                endless,
                &[],
                None,
                Instant::now() + Duration::from_millis(50),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::Timeout(_)), "{err:?}");
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        // The connection is fine for the next statement.
        let rs = pool.query("SELECT 1", &[], None, soon()).await.unwrap();
        assert_eq!(rs.rows, vec![vec![Value::Integer(1)]]);
    }

    /// `lq_record_key` (what `md5()` gives PostgreSQL and MariaDB) agrees
    /// with the gateway's record keys; NULL for NULL.
    #[tokio::test]
    async fn sqlite_computes_the_same_record_keys_as_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_file(&dir, &["CREATE TABLE g (code TEXT)"]).await;
        let pool = sqlite_pool(&url).await;
        for id in ["15010300100101", "m-0001", "网格一", ""] {
            let rs = pool
                .query(
                    "SELECT lq_record_key(?)",
                    &[Value::Text(id.into())],
                    None,
                    soon(),
                )
                .await
                .unwrap();
            let expected = i64::from(crate::record_key::record_key(id));
            assert_eq!(rs.rows, vec![vec![Value::Integer(expected)]], "{id}");
        }
        let rs = pool
            .query(
                "SELECT lq_record_key(NULL), SUM(lq_record_key(x)) FROM (SELECT 'a' AS x UNION ALL SELECT 'b')",
                &[],
                None,
                soon(),
            )
            .await
            .unwrap();
        let sum = i64::from(crate::record_key::record_key("a"))
            + i64::from(crate::record_key::record_key("b"));
        assert_eq!(rs.rows, vec![vec![Value::Null, Value::Integer(sum)]]);
    }

    /// A `BOOLEAN` column holds 0/1: read as booleans, as before.
    #[tokio::test]
    async fn sqlite_booleans_and_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_file(
            &dir,
            &[
                "CREATE TABLE g (code TEXT, open BOOLEAN, at TEXT)",
                "INSERT INTO g VALUES ('a', 1, '2026-12-03T10:00:00+08:00')",
            ],
        )
        .await;
        let pool = sqlite_pool(&url).await;
        let rs = pool
            .query("SELECT code, open FROM g", &[], None, soon())
            .await
            .unwrap();
        assert_eq!(
            rs.rows,
            vec![vec![Value::Text("a".into()), Value::Boolean(true)]]
        );
        let buffer = pool
            .query_rows(
                "SELECT code, at FROM g",
                &[],
                &[None, Some(ValueKind::Timestamp)],
                None,
                soon(),
            )
            .await
            .unwrap();
        assert_eq!((buffer.columns.len(), buffer.rows), (2, 1));
        let cells: Vec<_> = lianqiao_rows::Reader::new(&buffer.cells)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cells[0], lianqiao_rows::Cell::Text("a"));
        assert!(matches!(cells[1], lianqiao_rows::Cell::Timestamp(t) if t.offset_minutes == 480));
        // A cell that is not what the plugin asks for is named, not shown.
        let err = pool
            .query_rows(
                "SELECT code FROM g",
                &[],
                &[Some(ValueKind::Date)],
                None,
                soon(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SqlError::Statement(m) if m.contains("column `code` of row 1") && !m.contains("'a'")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn sqlite_connection_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_file(
            &dir,
            &[
                "CREATE TABLE g (code TEXT, n INTEGER, r REAL)",
                "INSERT INTO g VALUES ('150103001', 7, 0.5), (NULL, NULL, NULL)",
            ],
        )
        .await;
        let pool = sqlite_pool(&url).await;
        let rs = pool
            .query(
                "SELECT code, n, r FROM g ORDER BY code DESC",
                &[],
                None,
                soon(),
            )
            .await
            .unwrap();
        assert_eq!(rs.columns, vec!["code", "n", "r"]);
        assert_eq!(
            rs.rows[0],
            vec![
                Value::Text("150103001".into()),
                Value::Integer(7),
                Value::Float(0.5)
            ]
        );
        assert_eq!(rs.rows[1], vec![Value::Null, Value::Null, Value::Null]);
        // A write disguised as a read is stopped by the connection itself.
        let err = pool
            .query(
                "WITH x AS (SELECT 1) INSERT INTO g VALUES ('x', 1, 1)",
                &[],
                None,
                soon(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SqlError::Statement(ref m) if m.contains("readonly")),
            "{err:?}"
        );
    }
}
