//! Reading a district database's catalog: its tables and columns, and a
//! bounded sample of a column's values, through the same read-only pool a
//! source uses (so introspection can never write to a district).

use lianqiao_host::capability::sql::SqlPool;
use lianqiao_host::contract::{Dialect, Value};

/// How long one introspection statement may run (the kit's own reads of
/// a schema and samples, not a plugin's call).
fn introspection_deadline() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(30)
}

/// One column as the database declares it.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// The declared type, lowercased (`integer`, `varchar`, `text`, …).
    pub db_type: String,
}

/// One table or view with its columns in declaration order.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl Column {
    /// Whether the declared type holds numbers, so a text field mapped
    /// onto it needs a cast to sort and compare as the gateway does.
    pub fn is_numeric(&self) -> bool {
        let t = self.db_type.as_str();
        [
            "int", "serial", "numeric", "decimal", "real", "double", "float",
        ]
        .iter()
        .any(|n| t.contains(n))
    }
}

/// Quotes an identifier for `dialect`, doubling the quote character.
pub fn quote(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Null => None,
    }
}

/// Every table and view of the database (the current schema on
/// PostgreSQL, the connected database on MariaDB), with its columns.
pub async fn tables(pool: &SqlPool) -> Result<Vec<Table>, String> {
    let statement = match pool.dialect() {
        Dialect::Sqlite => {
            "SELECT m.name, p.name, lower(p.type) FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p \
             WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite!_%' ESCAPE '!' \
             ORDER BY m.name, p.cid"
        }
        Dialect::Postgres => {
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT), CAST(data_type AS TEXT) \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             ORDER BY table_name, ordinal_position"
        }
        Dialect::Mysql => {
            "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR), CAST(lower(data_type) AS CHAR) \
             FROM information_schema.columns WHERE table_schema = database() \
             ORDER BY table_name, ordinal_position"
        }
    };
    let result = pool
        .query(statement, &[], None, introspection_deadline())
        .await
        .map_err(|e| format!("reading the catalog: {e:?}"))?;
    let mut out: Vec<Table> = Vec::new();
    for row in &result.rows {
        let (Some(table), Some(column)) = (row.first().and_then(text), row.get(1).and_then(text))
        else {
            continue;
        };
        let db_type = row.get(2).and_then(text).unwrap_or_default().to_lowercase();
        let column = Column {
            name: column,
            db_type,
        };
        match out.last_mut() {
            Some(last) if last.name == table => last.columns.push(column),
            _ => out.push(Table {
                name: table,
                columns: vec![column],
            }),
        }
    }
    Ok(out)
}

/// Up to `limit` distinct non-null values of one column, as text, in
/// ascending order.
pub async fn distinct_values(
    pool: &SqlPool,
    table: &str,
    column: &str,
    limit: u32,
) -> Result<Vec<String>, String> {
    let dialect = pool.dialect();
    let (t, c) = (quote(dialect, table), quote(dialect, column));
    let statement =
        format!("SELECT DISTINCT {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {c} LIMIT {limit}");
    let result = pool
        .query(&statement, &[], None, introspection_deadline())
        .await
        .map_err(|e| format!("sampling {table}.{column}: {e:?}"))?;
    Ok(result
        .rows
        .iter()
        .filter_map(|row| row.first().and_then(text))
        .collect())
}
