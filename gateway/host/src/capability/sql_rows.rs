//! `sql-rows` (contract 0.4): a statement's rows as one row buffer, each
//! column read as the kind the plugin asks for.
//!
//! Why it exists: through 0.1's `sql.query` every cell was a `value`
//! lowered into the guest on its own, a call into the guest's allocator
//! per text cell, and the plugin then typed each cell and the gateway
//! lifted it again. Here the host reads the driver's cells straight into
//! the buffer (text borrowed from the driver's row, not copied into a
//! `String` first) and does the typing a plugin would, natively: a
//! `district-sql` page then crosses the boundary twice as bytes and the
//! plugin never looks inside it.

use lianqiao_rows::{Writer, parse_date, parse_timestamp};

use crate::bindings::v1::lianqiao::source::sql::SqlError;
use crate::bindings::v1::lianqiao::source::types::{Value, ValueKind};
use crate::bindings::v4::lianqiao::source0_4_0::rows::RowBuffer;
use crate::bindings::v4::lianqiao::source0_4_0::sql_rows::Host;
use crate::state::HostState;

/// A cell as the database stored it, text borrowed from the driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stored<'a> {
    Integer(i64),
    Boolean(bool),
    Float(f64),
    Text(&'a str),
}

impl Stored<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Stored::Integer(_) => "an integer",
            Stored::Boolean(_) => "a boolean",
            Stored::Float(_) => "a float",
            Stored::Text(_) => "a text",
        }
    }
}

/// Write one stored cell as `asked` (or as stored, when not asked), by
/// the rules of `sql-rows.query` in `source.wit`: the same conversions a
/// plugin made through 0.1 (`district-sql`'s `convert_cell`), plus dates
/// and timestamps read as time. `Err` names what the cell held, never its
/// value (it may be a record the caller may not see).
pub(crate) fn write_cell(
    out: &mut Writer,
    stored: Stored<'_>,
    asked: Option<ValueKind>,
) -> Result<(), String> {
    use ValueKind as K;
    let refuse = |what: &str| {
        Err(format!(
            "holds {what}, which cannot be read as {}",
            match asked {
                Some(K::Boolean) => "a boolean",
                Some(K::Integer) => "an integer",
                Some(K::Float) => "a float",
                Some(K::Text) => "text",
                Some(K::Date) => "a date (YYYY-MM-DD)",
                Some(K::Timestamp) | None =>
                    "a timestamp (an RFC 3339 date-time with its offset, e.g. 2026-12-07T16:53:11+08:00)",
            }
        ))
    };
    match (stored, asked) {
        (Stored::Integer(i), None | Some(K::Integer)) => out.integer(i),
        (Stored::Integer(i), Some(K::Text)) => out.text(&i.to_string()),
        (Stored::Integer(i), Some(K::Boolean)) => out.boolean(i != 0),
        (Stored::Integer(i), Some(K::Float)) => out.float(i as f64),
        (Stored::Boolean(b), None | Some(K::Boolean)) => out.boolean(b),
        (Stored::Boolean(b), Some(K::Integer)) => out.integer(i64::from(b)),
        (Stored::Float(f), None | Some(K::Float)) => out.float(f),
        (Stored::Text(s), None | Some(K::Text)) => out.text(s),
        (Stored::Text(s), Some(K::Integer)) => match s.trim().parse() {
            Ok(i) => out.integer(i),
            Err(_) => return refuse("a text that is not a whole number"),
        },
        (Stored::Text(s), Some(K::Float)) => match s.trim().parse() {
            Ok(f) => out.float(f),
            Err(_) => return refuse("a text that is not a number"),
        },
        (Stored::Text(s), Some(K::Date)) => match parse_date(s) {
            Some(days) => out.date(days),
            None => return refuse("a text that is not a date"),
        },
        (Stored::Text(s), Some(K::Timestamp)) => match parse_timestamp(s) {
            Some(t) => out.timestamp(t),
            None => return refuse("a text that is not a date-time with an offset"),
        },
        (stored, _) => return refuse(stored.kind()),
    }
    Ok(())
}

/// Read one non-null cell as stored, by the type the driver reports (the
/// same few Rust types `decode!` tries, text borrowed).
macro_rules! stored {
    ($row:expr, $i:expr, $kind:expr) => {{
        use $crate::capability::sql::CellKind;
        use $crate::capability::sql_rows::Stored;
        match $kind {
            CellKind::Integer => $row
                .try_get::<i64, _>($i)
                .map(Stored::Integer)
                .or_else(|_| {
                    $row.try_get::<i32, _>($i)
                        .map(|v| Stored::Integer(v.into()))
                })
                .or_else(|_| {
                    $row.try_get::<i16, _>($i)
                        .map(|v| Stored::Integer(v.into()))
                })
                .or_else(|_| $row.try_get::<bool, _>($i).map(Stored::Boolean)),
            CellKind::Boolean => $row.try_get::<bool, _>($i).map(Stored::Boolean),
            CellKind::Float => $row
                .try_get::<f64, _>($i)
                .map(Stored::Float)
                .or_else(|_| $row.try_get::<f32, _>($i).map(|v| Stored::Float(v.into()))),
            CellKind::Text => $row.try_get::<&str, _>($i).map(Stored::Text),
        }
    }};
}
pub(crate) use stored;

/// A statement's rows as one buffer, column `i` read as `kinds[i]`.
macro_rules! row_buffer {
    ($rows:expr, $kinds:expr) => {{
        let rows = $rows;
        let kinds: &[Option<ValueKind>] = $kinds;
        let columns: Vec<String> = rows
            .first()
            .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
            .unwrap_or_default();
        let mut out = lianqiao_rows::Writer::with_capacity(rows.len() * columns.len() * 16);
        for (r, row) in rows.iter().enumerate() {
            for i in 0..row.len() {
                let raw = row.try_get_raw(i).map_err(classify)?;
                if raw.is_null() {
                    out.null();
                    continue;
                }
                let kind = $crate::capability::sql::cell_kind(raw.type_info().name());
                let cell = $crate::capability::sql_rows::stored!(row, i, kind).map_err(|_| {
                    let type_name = row
                        .try_get_raw(i)
                        .map(|raw| raw.type_info().name().to_string())
                        .unwrap_or_default();
                    SqlError::Statement(format!(
                        "column `{}` has type {type_name}, which the sql capability does not read; \
                         CAST it to text, integer or float in the source's sql",
                        row.column(i).name(),
                    ))
                })?;
                $crate::capability::sql_rows::write_cell(
                    &mut out,
                    cell,
                    kinds.get(i).copied().flatten(),
                )
                .map_err(|why| {
                    SqlError::Statement(format!(
                        "column `{}` of row {} {why}; fix the source's sql or the field's kind",
                        row.column(i).name(),
                        r + 1
                    ))
                })?;
            }
        }
        Ok(RowBuffer {
            columns,
            rows: u32::try_from(rows.len()).unwrap_or(u32::MAX),
            cells: out.into_bytes(),
        })
    }};
}
pub(crate) use row_buffer;

impl Host for HostState {
    async fn query(
        &mut self,
        statement: String,
        params: Vec<Value>,
        kinds: Vec<Option<ValueKind>>,
    ) -> wasmtime::Result<Result<RowBuffer, SqlError>> {
        let grants = self.grants.clone();
        let (sql, params, kinds) = (&statement, &params, &kinds);
        let log = &grants.sql_log;
        let deadline = self.deadline;
        Ok(super::sql::sql_call(
            &grants,
            self.remaining(),
            sql,
            |buffer: &RowBuffer| buffer.rows as usize,
            |pool| async move {
                pool.query_rows(sql, params, kinds, Some(log), deadline)
                    .await
            },
        )
        .await)
    }
}

// The `rows` and `reads` interfaces have no functions: empty host traits.
impl crate::bindings::v4::lianqiao::source0_4_0::rows::Host for HostState {}
impl crate::bindings::v4::lianqiao::source0_4_0::reads::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;
    use lianqiao_rows::{Cell, Reader};

    fn one(stored: Stored<'_>, asked: Option<ValueKind>) -> Result<Vec<u8>, String> {
        let mut out = Writer::new();
        write_cell(&mut out, stored, asked)?;
        Ok(out.into_bytes())
    }

    fn read(bytes: &[u8]) -> Cell<'_> {
        match Reader::new(bytes).next() {
            Some(Ok(cell)) => cell,
            other => panic!("one cell expected, got {other:?}"),
        }
    }

    #[test]
    fn cells_are_read_as_the_plugin_asks() {
        use ValueKind as K;
        let cases: [(Stored<'_>, Option<ValueKind>, Cell<'_>); 9] = [
            (Stored::Integer(7), None, Cell::Integer(7)),
            (Stored::Integer(7), Some(K::Boolean), Cell::Boolean(true)),
            (Stored::Integer(0), Some(K::Boolean), Cell::Boolean(false)),
            (Stored::Integer(7), Some(K::Float), Cell::Float(7.0)),
            (Stored::Text(" 42 "), Some(K::Integer), Cell::Integer(42)),
            (Stored::Text("2021-07-01"), Some(K::Date), Cell::Date(18809)),
            (Stored::Boolean(true), Some(K::Integer), Cell::Integer(1)),
            (Stored::Float(2.5), None, Cell::Float(2.5)),
            (Stored::Text("网格"), Some(K::Text), Cell::Text("网格")),
        ];
        for (stored, asked, expected) in cases {
            let bytes = one(stored, asked).expect("readable");
            assert_eq!(read(&bytes), expected, "{stored:?} as {asked:?}");
        }
        let text = one(Stored::Integer(150102), Some(K::Text)).expect("text");
        assert_eq!(read(&text), Cell::Text("150102"));
        let a = one(
            Stored::Text("2026-12-07T16:53:11+08:00"),
            Some(K::Timestamp),
        )
        .expect("a");
        let b = one(Stored::Text("2026-12-07 08:53:11Z"), Some(K::Timestamp)).expect("b");
        match (read(&a), read(&b)) {
            (Cell::Timestamp(a), Cell::Timestamp(b)) => {
                assert_eq!(a.micros, b.micros, "one instant, two offsets");
                assert_eq!((a.offset_minutes, b.offset_minutes), (480, 0));
            }
            other => panic!("timestamps expected, got {other:?}"),
        }
    }

    #[test]
    fn a_cell_that_cannot_be_read_as_asked_is_named_not_shown() {
        use ValueKind as K;
        for (stored, asked) in [
            (Stored::Text("15010219800101123X"), Some(K::Integer)),
            (Stored::Text("2026-12-07T16:53:11"), Some(K::Timestamp)),
            (Stored::Text("yesterday"), Some(K::Date)),
            (Stored::Float(1.5), Some(K::Integer)),
            (Stored::Boolean(true), Some(K::Text)),
            (Stored::Integer(1), Some(K::Timestamp)),
        ] {
            let refused = one(stored, asked).expect_err("refused");
            assert!(refused.starts_with("holds "), "{refused}");
            assert!(
                !refused.contains("15010219800101123X") && !refused.contains("yesterday"),
                "the value stays out of the error: {refused}"
            );
        }
    }
}
