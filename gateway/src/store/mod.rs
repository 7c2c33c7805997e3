//! The gateway's own database: the audit trail and the write store's
//! idempotency keys live in it (SQLite by default, PostgreSQL for
//! replicas). One way to open it and one placeholder rule for both.

pub mod registry;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// Open the store at `url` (creating a SQLite file if needed), with up to
/// `postgres_connections` connections on PostgreSQL and one on SQLite (a
/// single writer). Committed means on disk: SQLite runs WAL with a sync
/// per commit. `what` names the store in the error.
pub async fn connect(
    url: &str,
    postgres_connections: u32,
    what: &str,
) -> Result<(AnyPool, bool), String> {
    sqlx::any::install_default_drivers();
    let postgres = url.starts_with("postgres");
    let url = if postgres || url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .max_connections(if postgres { postgres_connections } else { 1 })
        .acquire_timeout(std::time::Duration::from_secs(3))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if !postgres {
                    sqlx::raw_sql(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;",
                    )
                    .execute(conn)
                    .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| format!("cannot open the {what}: {e}"))?;
    Ok((pool, postgres))
}

/// `$n` placeholders for PostgreSQL, `?` as written for SQLite. The
/// gateway's own statements carry no `?` in literals.
pub fn numbered(postgres: bool, text: &str) -> String {
    if !postgres {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}
