//! Batched inserts over `sqlx::Any`, so one writer serves SQLite,
//! PostgreSQL and MariaDB alike.

use sqlx::{AnyConnection, Connection, Executor};

/// One cell to insert.
#[derive(Debug, Clone)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// NULL of a text column (PostgreSQL wants the type).
    NullText,
    NullInt,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_string())
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}
impl From<&String> for Cell {
    fn from(s: &String) -> Self {
        Cell::Text(s.clone())
    }
}
impl From<i64> for Cell {
    fn from(i: i64) -> Self {
        Cell::Int(i)
    }
}
impl From<usize> for Cell {
    fn from(i: usize) -> Self {
        Cell::Int(i as i64)
    }
}
impl From<Option<String>> for Cell {
    fn from(o: Option<String>) -> Self {
        o.map_or(Cell::NullText, Cell::Text)
    }
}
impl From<Option<&String>> for Cell {
    fn from(o: Option<&String>) -> Self {
        o.map_or(Cell::NullText, |s| Cell::Text(s.clone()))
    }
}
impl From<Option<i64>> for Cell {
    fn from(o: Option<i64>) -> Self {
        o.map_or(Cell::NullInt, Cell::Int)
    }
}

/// Which SQL the connection speaks (placeholders differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn of(conn: &AnyConnection) -> Backend {
        match conn.backend_name() {
            "PostgreSQL" => Backend::Postgres,
            "MySQL" => Backend::MySql,
            _ => Backend::Sqlite,
        }
    }
}

/// Insert `rows` into `table` (`columns` in order), 200 rows a statement.
pub async fn insert(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Cell>>,
) -> anyhow::Result<()> {
    let backend = Backend::of(conn);
    let mut tx = conn.begin().await?;
    for chunk in rows.chunks(200) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for (r, _) in chunk.iter().enumerate() {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..columns.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                match backend {
                    Backend::Postgres => sql.push_str(&format!("${n}")),
                    _ => sql.push('?'),
                }
            }
            sql.push(')');
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            for cell in row {
                query = match cell {
                    Cell::Text(s) => query.bind(s.clone()),
                    Cell::Int(i) => query.bind(*i),
                    Cell::NullText => query.bind(None::<String>),
                    Cell::NullInt => query.bind(None::<i64>),
                };
            }
        }
        tx.execute(query).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Run each `;`-separated DDL statement (none may contain a `;` itself).
pub async fn ddl(conn: &mut AnyConnection, script: &str) -> anyhow::Result<()> {
    for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.execute(sqlx::AssertSqlSafe(statement.to_string()))
            .await?;
    }
    Ok(())
}
