//! SQL functions the host adds to its SQLite connections, so the SQL a
//! plugin writes for SQLite can do what PostgreSQL and MariaDB do built in.
//!
//! - `lq_record_key(id)`: a record's key (contract 0.3, `record_key.rs`),
//!   what `md5()` gives the other engines. NULL for NULL.
//!
//! SQLite's C API is the only way to add a function to a connection that
//! sqlx opened, hence the one `unsafe` block of the host, kept to this
//! file: the callback only reads its argument and sets its result, and
//! never unwinds across the FFI boundary (nothing in it can panic).

#![allow(unsafe_code)]

use std::ffi::c_int;

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;

/// Add the host's functions to one connection (from `after_connect`).
pub async fn register(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the live connection held locked by `handle` for this
    // call; the name is a NUL-terminated static string; no user data
    // pointer or destructor is passed.
    let rc = unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"lq_record_key".as_ptr(),
            1,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC | ffi::SQLITE_INNOCUOUS,
            std::ptr::null_mut(),
            Some(record_key_fn),
            None,
            None,
            None,
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "SQLite refused to register lq_record_key (code {rc})"
        )))
    }
}

/// `lq_record_key(value)`: the record key of the value's text.
unsafe extern "C" fn record_key_fn(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite passes `argc` valid values in `argv` for the duration
    // of the call; `sqlite3_value_text` returns a pointer to
    // `sqlite3_value_bytes` bytes valid until the value changes, which it
    // does not before we return.
    unsafe {
        if argc != 1 || argv.is_null() {
            ffi::sqlite3_result_null(ctx);
            return;
        }
        let value = *argv;
        if ffi::sqlite3_value_type(value) == ffi::SQLITE_NULL {
            ffi::sqlite3_result_null(ctx);
            return;
        }
        let text = ffi::sqlite3_value_text(value);
        let len = ffi::sqlite3_value_bytes(value);
        if text.is_null() || len < 0 {
            ffi::sqlite3_result_null(ctx);
            return;
        }
        let bytes = std::slice::from_raw_parts(text, len as usize);
        ffi::sqlite3_result_int64(ctx, i64::from(crate::record_key::key_of(bytes)));
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;
    use sqlx::Row;

    #[tokio::test]
    async fn sqlite_computes_the_same_record_keys_as_the_host() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        super::register(&mut conn).await.unwrap();
        for id in ["15010300100101", "m-0001", "网格一", ""] {
            let row = sqlx::query("SELECT lq_record_key(?)")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            let key: i64 = row.get(0);
            assert_eq!(key, i64::from(crate::record_key::record_key(id)), "{id}");
        }
        let row = sqlx::query("SELECT lq_record_key(NULL), SUM(lq_record_key(x)) FROM (SELECT 'a' AS x UNION ALL SELECT 'b')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.get::<Option<i64>, _>(0), None);
        let sum = i64::from(crate::record_key::record_key("a"))
            + i64::from(crate::record_key::record_key("b"));
        assert_eq!(row.get::<i64, _>(1), sum);
    }
}
