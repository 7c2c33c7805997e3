//! Builds the one SQL statement that answers a [`Query`] over a base
//! `SELECT` that yields the unified fields as columns.
//!
//! The integrator writes the base statement (their schema → our field
//! names) in config; this module adds scope, filters, keyset position,
//! order and limit, with `?` placeholders only — no value is ever spliced
//! into SQL text, and field names must come from the manifest.

use crate::keyset::Position;
use crate::rows::{Cell, Reader, row_starts};
use crate::sql::Dialect;
use crate::{AggregateQuery, Filter, FilterOp, Page, Query, RowBuffer, SourceError, Value};

/// A statement and its positional parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// `true` for names that are safe to splice as identifiers.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

/// Escape `!`, `%` and `_` so a value matches literally under `ESCAPE '!'`
/// (a character that needs no quoting in any of the three dialects).
fn like_literal_prefix(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 1);
    for c in value.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The record key of `column` (an `id`) in SQL: the first four bytes of
/// its MD5, big-endian, as [`crate::record_key`] computes it. SQLite has no
/// `md5()`; the host adds `lq_record_key` to its SQLite connections.
pub fn record_key_sql(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("lq_record_key({column})"),
        Dialect::Postgres => format!(
            "('x' || lpad(substr(md5(CAST({column} AS text)), 1, 8), 16, '0'))::bit(64)::bigint"
        ),
        Dialect::Mysql => format!("CAST(CONV(SUBSTRING(MD5({column}), 1, 8), 16, 10) AS UNSIGNED)"),
    }
}

/// A column expression that compares and sorts by bytes, like the gateway's
/// merge does, whatever the database's default collation.
fn ordered(dialect: Dialect, column: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("t.{column}"),
        Dialect::Postgres => format!("t.{column} COLLATE \"C\""),
        Dialect::Mysql => format!("BINARY t.{column}"),
    }
}

/// `t.a, t.b, …` for the projection (each a plain identifier, since it is
/// spliced into SQL), then `t.<changed_at> AS lq_changed_at` when a change
/// time is asked for.
fn select_list(projection: &[String], changed_at: Option<&str>) -> Result<String, SourceError> {
    let mut columns = Vec::with_capacity(projection.len() + 1);
    for field in projection.iter().map(String::as_str).chain(changed_at) {
        if !is_identifier(field) {
            return Err(SourceError::Unsupported(format!("field name `{field}`")));
        }
        columns.push(format!("t.{field}"));
    }
    if let (Some(at), Some(last)) = (changed_at, columns.last_mut()) {
        *last = format!("t.{at} AS {CHANGED_AT_COLUMN}");
    }
    Ok(columns.join(", "))
}

/// Build the page statement. `pushed` are the filters to apply in SQL
/// (the caller checked they are on known fields); one extra row is fetched
/// so the caller knows whether another page follows.
pub fn page_statement(
    dialect: Dialect,
    base_sql: &str,
    query: &Query,
    pushed: &[&Filter],
) -> Result<Statement, SourceError> {
    let columns = select_list(&query.projection, None)?;
    let (mut clauses, mut params) = conditions(&query.scope, pushed)?;

    let division = ordered(dialect, "division");
    let id = ordered(dialect, "id");
    if let Some(cursor) = &query.cursor {
        let after = Position::decode(cursor)?;
        clauses.push(format!("({division} > ? OR ({division} = ? AND {id} > ?))"));
        params.push(Value::Text(after.division.clone()));
        params.push(Value::Text(after.division));
        params.push(Value::Text(after.id));
    }

    params.push(Value::Integer(i64::from(query.limit) + 1));
    let sql = format!(
        "SELECT {columns} FROM ({base_sql}) AS t WHERE {} ORDER BY {division}, {id} LIMIT ?",
        clauses.join(" AND ")
    );
    Ok(Statement { sql, params })
}

/// The page a [`page_statement`] result makes (contract 0.4): at most
/// `limit` rows of the buffer, and a cursor after the last when the
/// statement found one more. The rows are not copied out of the buffer;
/// only the last kept row's `division` and `id` are read.
pub fn keyset_page(mut rows: RowBuffer, limit: u32) -> Result<Page, SourceError> {
    let broken =
        |e: crate::rows::BufferError| SourceError::Internal(format!("the host's rows: {e}"));
    let width = rows.columns.len();
    let found = rows.rows as usize;
    let limit = limit as usize;
    if found <= limit {
        return Ok(Page {
            rows,
            next_cursor: None,
        });
    }
    let starts = row_starts(&rows.cells, width, found).map_err(broken)?;
    let (Some(last), Some(end)) = (
        limit.checked_sub(1).and_then(|l| starts.get(l)),
        starts.get(limit),
    ) else {
        return Err(SourceError::Internal(
            "a page of no rows with more after it".into(),
        ));
    };
    let column = |name: &str| {
        rows.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| SourceError::Internal(format!("no `{name}` column")))
    };
    let (d, i) = (column("division")?, column("id")?);
    let (mut division, mut id) = (None, None);
    for (n, cell) in Reader::new(&rows.cells[*last..*end]).enumerate() {
        if let Cell::Text(text) = cell.map_err(broken)? {
            if n == d {
                division = Some(text.to_owned());
            }
            if n == i {
                id = Some(text.to_owned());
            }
        }
    }
    let (Some(division), Some(id)) = (division, id) else {
        return Err(SourceError::UpstreamError(
            "a row without a text `division` and `id`".into(),
        ));
    };
    rows.cells.truncate(*end);
    rows.rows = limit as u32;
    Ok(Page {
        rows,
        next_cursor: Some(Position { division, id }.encode()),
    })
}

/// The column a [`changes_statement`] adds after the projection: the
/// change time as the database stores it, for the watermark.
pub const CHANGED_AT_COLUMN: &str = "lq_changed_at";

/// Build the statement listing rows changed after `after` (the change
/// time as stored, and the `id` of the last row seen at that time), in
/// change order: `changed_at` then `id`, one more row than `limit` to
/// know whether more follow. `changed_at` must sort as text in the order
/// of time (one offset throughout), which the integrator's docs say.
pub fn changes_statement(
    dialect: Dialect,
    base_sql: &str,
    changed_at: &str,
    query: &crate::ChangesQuery,
    after: Option<&Position>,
) -> Result<Statement, SourceError> {
    let columns = select_list(&query.projection, Some(changed_at))?;
    let (mut clauses, mut params) = conditions(&query.scope, &[])?;
    clauses.push(format!("t.{changed_at} IS NOT NULL"));
    let time = ordered(dialect, changed_at);
    let id = ordered(dialect, "id");
    if let Some(after) = after {
        // `Position` reused: `division` holds the change time here.
        clauses.push(format!("({time} > ? OR ({time} = ? AND {id} > ?))"));
        params.push(Value::Text(after.division.clone()));
        params.push(Value::Text(after.division.clone()));
        params.push(Value::Text(after.id.clone()));
    }
    params.push(Value::Integer(i64::from(query.limit) + 1));
    let sql = format!(
        "SELECT {columns} FROM ({base_sql}) AS t WHERE {} ORDER BY {time}, {id} LIMIT ?",
        clauses.join(" AND ")
    );
    Ok(Statement { sql, params })
}

/// Build a counting statement: `SELECT [g,] [k,] COUNT(*) AS n … GROUP BY`,
/// `g` the division prefix and `k` the `by` field's value.
pub fn aggregate_statement(
    dialect: Dialect,
    base_sql: &str,
    query: &AggregateQuery,
    pushed: &[&Filter],
    digests: bool,
) -> Result<Statement, SourceError> {
    let (clauses, mut params) = conditions(&query.scope, pushed)?;
    let mut columns = Vec::new();
    let mut group = Vec::new();
    let constant = query
        .division_prefix
        .and_then(|n| one_group(&query.scope, n as usize));
    match (query.division_prefix, constant) {
        // The scope lies inside one group (a district's source asked for
        // a region table by district or city): every row's group is that
        // prefix, so no SUBSTR per row and no sort for GROUP BY — most of
        // what a region statistic costs a district database.
        (Some(_), Some(prefix)) => {
            columns.push("? AS g".to_string());
            params.insert(0, Value::Text(prefix.to_string()));
        }
        (Some(n), None) => {
            // A number, never caller text: safe to write into the statement.
            columns.push(format!("SUBSTR(t.division, 1, {n}) AS g"));
            group.push(columns.len());
        }
        (None, _) => {}
    }
    if let Some(by) = &query.by {
        if !is_identifier(by) {
            return Err(SourceError::Unsupported(format!("field name `{by}`")));
        }
        columns.push(format!("t.{by} AS k"));
        group.push(columns.len());
    }
    // A constant group with nothing else to group by is still a group:
    // empty, it has no row (as under GROUP BY), not a row counting 0.
    let having_rows = query.division_prefix.is_some() && group.is_empty();
    let group = group
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    columns.push("COUNT(*) AS n".into());
    // The cell's record digest (contract 0.3), when asked for: the sum of
    // its records' keys, a hash per record. At most 2^31 records per cell
    // keep the sum inside a BIGINT.
    if digests {
        let key = record_key_sql(dialect, "t.id");
        columns.push(match dialect {
            Dialect::Sqlite => format!("SUM({key}) AS d"),
            Dialect::Postgres => format!("CAST(SUM({key}) AS BIGINT) AS d"),
            Dialect::Mysql => format!("CAST(SUM({key}) AS SIGNED) AS d"),
        });
    }
    let mut sql = format!(
        "SELECT {} FROM ({base_sql}) AS t WHERE {}",
        columns.join(", "),
        clauses.join(" AND ")
    );
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {group}"));
    }
    if having_rows {
        sql.push_str(" HAVING COUNT(*) > 0");
    }
    Ok(Statement { sql, params })
}

/// The one group prefix of length `n` every code in the scope (and so
/// every row it matches) starts with, if there is one.
fn one_group(scope: &[String], n: usize) -> Option<&str> {
    let first = scope.first()?.get(..n)?;
    scope
        .iter()
        .all(|code| code.get(..n) == Some(first))
        .then_some(first)
}

/// The scope clause (first, and never missing) and the pushed filters, as
/// SQL with `?` parameters.
fn conditions(
    scope_codes: &[String],
    pushed: &[&Filter],
) -> Result<(Vec<String>, Vec<Value>), SourceError> {
    let mut params = Vec::new();
    let mut clauses = Vec::new();
    if scope_codes.is_empty() {
        return Err(SourceError::Unsupported(
            "a query with an empty scope".into(),
        ));
    }
    let mut scope = Vec::new();
    for code in scope_codes {
        scope.push("t.division LIKE ? ESCAPE '!'".to_string());
        params.push(Value::Text(like_literal_prefix(code)));
    }
    clauses.push(format!("({})", scope.join(" OR ")));

    for filter in pushed {
        if !is_identifier(&filter.field) {
            return Err(SourceError::Unsupported(format!(
                "field name `{}`",
                filter.field
            )));
        }
        let column = format!("t.{}", filter.field);
        let one = || {
            filter.values.first().cloned().ok_or_else(|| {
                SourceError::Unsupported(format!("filter on `{}` without a value", filter.field))
            })
        };
        match filter.op {
            FilterOp::Eq => {
                clauses.push(format!("{column} = ?"));
                params.push(one()?);
            }
            FilterOp::Gte => {
                clauses.push(format!("{column} >= ?"));
                params.push(one()?);
            }
            FilterOp::Lte => {
                clauses.push(format!("{column} <= ?"));
                params.push(one()?);
            }
            FilterOp::OneOf => {
                if filter.values.is_empty() {
                    clauses.push("1 = 0".into());
                } else {
                    let marks = vec!["?"; filter.values.len()].join(", ");
                    clauses.push(format!("{column} IN ({marks})"));
                    params.extend(filter.values.iter().cloned());
                }
            }
            FilterOp::Prefix => {
                let text = one()?;
                let text = text.as_text().ok_or_else(|| {
                    SourceError::Unsupported(format!(
                        "prefix filter on `{}` needs text",
                        filter.field
                    ))
                })?;
                clauses.push(format!("{column} LIKE ? ESCAPE '!'"));
                params.push(Value::Text(like_literal_prefix(text)));
            }
        }
    }
    Ok((clauses, params))
}

#[cfg(test)]
mod tests {
    use crate::rows::{Reader, Writer};

    fn grids(n: usize) -> RowBuffer {
        let mut w = Writer::new();
        for i in 0..n {
            w.text(&format!("15010300100{i}"));
            w.text("150103001");
            w.integer(i as i64);
        }
        RowBuffer {
            columns: vec!["id".into(), "division".into(), "households".into()],
            rows: n as u32,
            cells: w.into_bytes(),
        }
    }

    /// The statement fetched one row more than the page: the page keeps
    /// `limit` rows and the cursor is the last kept row's position.
    #[test]
    fn a_keyset_page_cuts_the_extra_row_and_resumes_after_the_last() {
        let page = keyset_page(grids(4), 3).expect("page");
        assert_eq!(page.rows.rows, 3);
        assert_eq!(Reader::new(&page.rows.cells).count(), 9);
        let cursor = page.next_cursor.expect("more follow");
        assert_eq!(
            Position::decode(&cursor).expect("cursor"),
            Position {
                division: "150103001".into(),
                id: "150103001002".into()
            }
        );
        let last = keyset_page(grids(3), 3).expect("page");
        assert_eq!((last.rows.rows, last.next_cursor), (3, None));
    }

    use super::*;

    fn query() -> Query {
        Query {
            entity: "grids".into(),
            scope: vec!["150103001".into()],
            filters: vec![],
            projection: vec!["id".into(), "division".into(), "name".into()],
            limit: 10,
            cursor: None,
        }
    }

    #[test]
    fn scope_and_limit_are_parameters() {
        let s = page_statement(Dialect::Sqlite, "SELECT * FROM g", &query(), &[]).unwrap();
        assert_eq!(
            s.sql,
            "SELECT t.id, t.division, t.name FROM (SELECT * FROM g) AS t WHERE \
             (t.division LIKE ? ESCAPE '!') ORDER BY t.division, t.id LIMIT ?"
        );
        assert_eq!(
            s.params,
            vec![Value::Text("150103001%".into()), Value::Integer(11)]
        );
    }

    #[test]
    fn like_wildcards_in_values_match_literally() {
        assert_eq!(like_literal_prefix("a%b_c!"), "a!%b!_c!!%");
    }

    #[test]
    fn injected_field_names_are_refused() {
        let mut q = query();
        q.projection.push("name; DROP TABLE g".into());
        assert!(page_statement(Dialect::Sqlite, "SELECT 1", &q, &[]).is_err());
    }

    #[test]
    fn counts_group_by_division_prefix_and_field() {
        let q = AggregateQuery {
            entity: "grids".into(),
            scope: vec!["15".into()],
            filters: vec![],
            division_prefix: Some(6),
            by: Some("tier".into()),
        };
        let s = aggregate_statement(Dialect::Sqlite, "SELECT * FROM g", &q, &[], true).unwrap();
        assert_eq!(
            s.sql,
            "SELECT SUBSTR(t.division, 1, 6) AS g, t.tier AS k, COUNT(*) AS n, SUM(lq_record_key(t.id)) AS d \
             FROM (SELECT * FROM g) AS t WHERE (t.division LIKE ? ESCAPE '!') GROUP BY 1, 2"
        );
        // A district's scope inside one group: the group is a parameter.
        let district = AggregateQuery {
            scope: vec!["150102".into(), "150102003".into()],
            ..q.clone()
        };
        let s =
            aggregate_statement(Dialect::Sqlite, "SELECT * FROM g", &district, &[], false).unwrap();
        assert_eq!(
            s.sql,
            "SELECT ? AS g, t.tier AS k, COUNT(*) AS n \
             FROM (SELECT * FROM g) AS t WHERE (t.division LIKE ? ESCAPE '!' OR t.division LIKE ? ESCAPE '!') GROUP BY 2"
        );
        assert_eq!(s.params[0], Value::Text("150102".into()));
        let only_division = AggregateQuery {
            by: None,
            ..district
        };
        let s = aggregate_statement(
            Dialect::Mysql,
            "SELECT * FROM g",
            &only_division,
            &[],
            false,
        )
        .unwrap();
        assert!(
            s.sql.ends_with("HAVING COUNT(*) > 0") && !s.sql.contains("GROUP BY"),
            "{}",
            s.sql
        );
        // Two groups in the scope: grouped per row as before.
        let two = AggregateQuery {
            scope: vec!["150102".into(), "150103".into()],
            by: None,
            ..q.clone()
        };
        let s = aggregate_statement(Dialect::Sqlite, "SELECT * FROM g", &two, &[], false).unwrap();
        assert!(s.sql.contains("SUBSTR(t.division, 1, 6) AS g") && s.sql.ends_with("GROUP BY 1"));
        let plain = AggregateQuery {
            division_prefix: None,
            by: None,
            ..q
        };
        let s =
            aggregate_statement(Dialect::Postgres, "SELECT * FROM g", &plain, &[], true).unwrap();
        let without =
            aggregate_statement(Dialect::Postgres, "SELECT * FROM g", &plain, &[], false).unwrap();
        assert!(
            !without.sql.contains("md5"),
            "no digest unless asked: {}",
            without.sql
        );
        assert!(
            s.sql.starts_with(
                "SELECT COUNT(*) AS n, CAST(SUM(('x' || lpad(substr(md5(CAST(t.id AS text))"
            ) && !s.sql.contains("GROUP BY"),
            "{}",
            s.sql
        );
    }

    #[test]
    fn postgres_orders_bytewise() {
        let mut q = query();
        q.cursor = Some(
            Position {
                division: "1".into(),
                id: "2".into(),
            }
            .encode(),
        );
        let s = page_statement(Dialect::Postgres, "SELECT 1", &q, &[]).unwrap();
        assert!(
            s.sql
                .contains("ORDER BY t.division COLLATE \"C\", t.id COLLATE \"C\"")
        );
        assert!(s.sql.contains("t.division COLLATE \"C\" > ?"));
    }
}
