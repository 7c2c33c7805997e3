//! SQLite reads on the caller's thread.
//!
//! A district's SQLite file is in this process and, when hot, in the OS
//! page cache: a page's statement is CPU work of tens of microseconds.
//! sqlx runs each SQLite connection on a worker thread of its own, so
//! every statement was two thread hand-offs (the request's task to the
//! worker and back), which the distinct-query profile put among the
//! kernel's largest shares (`finish_task_switch`, BENCHMARKS.md). Here a
//! statement runs where it is asked, on the tokio worker already running
//! the plugin's call:
//!
//! - no thread per connection, and no hop per statement;
//! - a caller's priority is the statement's: the wide lane's lowered
//!   threads run region queries' statements at their lowered priority
//!   (before, two connection sets per source, one opened from each lane,
//!   did that); there, the statement runs in `block_in_place`, so the lane
//!   keeps serving its other requests while a long one runs;
//! - the deadline still holds: SQLite's progress handler interrupts a
//!   statement past it (every 4,000 virtual-machine steps, a few µs);
//! - connections are kept per source, at most `max_connections` in use
//!   (a caller waits for one, up to `acquire_timeout`, without blocking
//!   its thread), and closed after [`IDLE`] unused.
//!
//! Writes stay on sqlx (`sql_write.rs`): they wait on locks and fsync,
//! which must not hold a tokio worker.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::bindings::v1::lianqiao::source::sql::SqlError;
use crate::bindings::v1::lianqiao::source::types::Value;
use crate::capability::sql_rows::Stored;

/// A connection unused this long is closed: an idle district holds none
/// (each keeps a page cache and its prepared statements, ~0.7 MiB).
pub(crate) const IDLE: Duration = Duration::from_secs(3);

/// SQLite's page cache per connection, KiB: a read-only district file is
/// in the OS page cache already.
const CACHE_KIB: u32 = 512;

/// Prepared statements kept per connection: a plugin runs a few statement
/// shapes per entity, and each holds its compiled program.
const STATEMENTS_KEPT: usize = 24;

/// Virtual-machine steps between deadline checks.
const PROGRESS_STEPS: i32 = 4000;

/// One source's SQLite database, read on the caller's thread.
#[derive(Debug)]
pub struct SqliteReader {
    path: std::path::PathBuf,
    /// Connections not in use, the most recently used last.
    idle: Mutex<Vec<(Connection, Instant)>>,
    /// One permit per connection that may be in use at once.
    permits: tokio::sync::Semaphore,
    acquire_timeout: Duration,
}

/// A cell of a row as SQLite holds it, with the column's declared type
/// (a `BOOLEAN` column holds 0/1 integers, read as booleans as sqlx did).
fn stored<'a>(value: ValueRef<'a>, declared: Option<&str>) -> Result<Option<Stored<'a>>, ()> {
    Ok(Some(match value {
        ValueRef::Null => return Ok(None),
        ValueRef::Integer(i) => match declared {
            Some(d) if contains_ignore_case(d, "BOOL") => Stored::Boolean(i != 0),
            _ => Stored::Integer(i),
        },
        ValueRef::Real(f) => Stored::Float(f),
        ValueRef::Text(t) => Stored::Text(std::str::from_utf8(t).map_err(|_| ())?),
        ValueRef::Blob(_) => return Err(()),
    }))
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Errors as the `sql` capability names them.
fn classify(e: rusqlite::Error) -> SqlError {
    match &e {
        rusqlite::Error::SqliteFailure(f, message) => match f.code {
            rusqlite::ErrorCode::OperationInterrupted => {
                SqlError::Timeout("the statement ran past the source's deadline".into())
            }
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::NotADatabase => {
                SqlError::Unavailable(message.clone().unwrap_or_else(|| e.to_string()))
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                SqlError::Unavailable(message.clone().unwrap_or_else(|| e.to_string()))
            }
            _ => SqlError::Statement(message.clone().unwrap_or_else(|| e.to_string())),
        },
        _ => SqlError::Statement(e.to_string()),
    }
}

impl SqliteReader {
    /// A reader of the file `path`, opened read-only on first use.
    pub fn new(
        path: std::path::PathBuf,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Arc<Self> {
        let reader = Arc::new(SqliteReader {
            path,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(max_connections.max(1) as usize),
            acquire_timeout,
        });
        // Close idle connections even when no call comes any more; the
        // task ends with the reader.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak: Weak<SqliteReader> = Arc::downgrade(&reader);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(IDLE / 2);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(reader) => reader.close_idle(),
                        None => return,
                    }
                }
            });
        }
        reader
    }

    /// Connections open and not in use (for tests and metrics).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    fn close_idle(&self) {
        let stale: Vec<(Connection, Instant)> = match self.idle.lock() {
            Ok(mut idle) => {
                let keep = idle
                    .iter()
                    .position(|(_, at)| at.elapsed() < IDLE)
                    .unwrap_or(idle.len());
                idle.drain(..keep).collect()
            }
            Err(_) => return,
        };
        drop(stale);
    }

    fn open(&self) -> Result<Connection, SqlError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(classify)?;
        conn.pragma_update(None, "cache_size", -i64::from(CACHE_KIB))
            .map_err(classify)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        // `lq_record_key`, which PostgreSQL and MariaDB have as `md5()`:
        // counts carry record digests.
        conn.create_scalar_function(
            "lq_record_key",
            1,
            FunctionFlags::SQLITE_UTF8
                | FunctionFlags::SQLITE_DETERMINISTIC
                | FunctionFlags::SQLITE_INNOCUOUS,
            |ctx| {
                Ok(match ctx.get_raw(0) {
                    ValueRef::Null => None,
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Some(i64::from(crate::record_key::key_of(t)))
                    }
                    ValueRef::Integer(i) => Some(i64::from(crate::record_key::key_of(
                        i.to_string().as_bytes(),
                    ))),
                    ValueRef::Real(f) => Some(i64::from(crate::record_key::key_of(
                        f.to_string().as_bytes(),
                    ))),
                })
            },
        )
        .map_err(classify)?;
        Ok(conn)
    }

    /// Run one read-only statement on this thread, each row handed to
    /// `on_row` as its cells (`None` for NULL) with the column names; the
    /// statement stops at `deadline`.
    pub(crate) async fn read(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
        mut on_row: impl FnMut(&[String], &[Option<Stored<'_>>]) -> Result<(), SqlError>,
    ) -> Result<Vec<String>, SqlError> {
        let wait = self
            .acquire_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(wait, self.permits.acquire())
                .await
                .map_err(|_| SqlError::Timeout("no database connection in time".into()))?
                .map_err(|_| SqlError::Unavailable("the pool is closed".into()))?,
        };
        let conn = match self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            Some((conn, _)) => conn,
            None => self.open()?,
        };
        // On the wide lane (a lowered thread of a multi-thread runtime) a
        // region statement can run for tens of milliseconds: the worker
        // hands its other tasks to another lane thread meanwhile, so one
        // district's statement does not hold up the rest of the lane.
        // Elsewhere the statement is short and runs in place.
        let lane = crate::priority::this_thread_is_lowered()
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let outcome = if lane {
            tokio::task::block_in_place(|| run(&conn, sql, params, deadline, &mut on_row))
        } else {
            run(&conn, sql, params, deadline, &mut on_row)
        };
        // Kept only when its deadline check is off again (else closed).
        if conn.progress_handler(0, None::<fn() -> bool>).is_ok()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push((conn, Instant::now()));
        }
        outcome
    }
}

fn run(
    conn: &Connection,
    sql: &str,
    params: &[Value],
    deadline: Instant,
    on_row: &mut impl FnMut(&[String], &[Option<Stored<'_>>]) -> Result<(), SqlError>,
) -> Result<Vec<String>, SqlError> {
    conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline))
        .map_err(classify)?;
    let mut statement = conn.prepare_cached(sql).map_err(classify)?;
    for (i, param) in params.iter().enumerate() {
        let at = i + 1;
        match param {
            Value::Null => statement.raw_bind_parameter(at, rusqlite::types::Null),
            Value::Boolean(b) => statement.raw_bind_parameter(at, i64::from(*b)),
            Value::Integer(n) => statement.raw_bind_parameter(at, *n),
            Value::Float(f) => statement.raw_bind_parameter(at, *f),
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => {
                statement.raw_bind_parameter(at, s.as_str())
            }
        }
        .map_err(classify)?;
    }
    let columns: Vec<String> = statement
        .column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let declared: Vec<Option<String>> = statement
        .columns()
        .iter()
        .map(|c| c.decl_type().map(str::to_string))
        .collect();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(classify)? {
        let mut cells = Vec::with_capacity(columns.len());
        for (i, decl) in declared.iter().enumerate() {
            let value = row.get_ref(i).map_err(classify)?;
            cells.push(stored(value, decl.as_deref()).map_err(|()| {
                SqlError::Statement(format!(
                    "column `{}` holds a blob or text that is not UTF-8, which the sql capability does not read; \
                     CAST it to text, integer or float in the source's sql",
                    columns[i]
                ))
            })?);
        }
        on_row(&columns, &cells)?;
    }
    Ok(columns)
}
