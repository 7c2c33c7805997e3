//! Row buffers (contract 0.4) read into the gateway's rows.
//!
//! The gateway works on `Vec<Value>` rows; a 0.4 plugin's page arrives as
//! one buffer (`lianqiao_rows`), which is checked whole here, and a
//! malformed one fails its call as a contract violation: never half read.
//! Dates and timestamps become the gateway's text forms again, from typed
//! values: a timestamp is shown in the offset the source wrote it in, with
//! seconds always and a fraction only when there is one.

use lianqiao_rows::{Cell, Reader, format_date, format_timestamp};

use crate::bindings::v1::lianqiao::source::types::Value;
use crate::bindings::v4::lianqiao::source0_4_0::rows::RowBuffer;
use crate::error::{PluginError, Violation};

/// The buffer's rows, each `columns.len()` values long.
pub(crate) fn decode(buffer: &RowBuffer) -> Result<Vec<Vec<Value>>, PluginError> {
    let width = buffer.columns.len();
    let rows = buffer.rows as usize;
    let bad = |why: String| PluginError::Contract(Violation::RowBuffer(why));
    if width == 0 && (rows > 0 || !buffer.cells.is_empty()) {
        return Err(bad("rows without columns".into()));
    }
    // Each cell is at least one byte: a count beyond that is a lie, and
    // must not size an allocation.
    if rows.saturating_mul(width) > buffer.cells.len() {
        return Err(bad(format!(
            "{rows} rows of {width} columns in {} bytes",
            buffer.cells.len()
        )));
    }
    let mut reader = Reader::new(&buffer.cells);
    let mut out = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut row = Vec::with_capacity(width);
        for _ in 0..width {
            let cell = match reader.next_cell() {
                Some(cell) => cell.map_err(|e| bad(e.to_string()))?,
                None => {
                    return Err(bad(format!(
                        "{} cells where {rows} rows × {width} columns were announced",
                        out.len() * width + row.len()
                    )));
                }
            };
            row.push(value(cell));
        }
        out.push(row);
    }
    if !reader.is_done() {
        return Err(bad(format!(
            "bytes after the last of {rows} rows (at byte {})",
            reader.position()
        )));
    }
    Ok(out)
}

fn value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Boolean(b) => Value::Boolean(b),
        Cell::Integer(i) => Value::Integer(i),
        Cell::Float(f) => Value::Float(f),
        Cell::Text(s) => Value::Text(s.to_owned()),
        Cell::Date(days) => Value::Date(format_date(days)),
        Cell::Timestamp(t) => Value::Timestamp(format_timestamp(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lianqiao_rows::{Writer, parse_timestamp};

    fn buffer(columns: &[&str], rows: u32, cells: Vec<u8>) -> RowBuffer {
        RowBuffer {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            cells,
        }
    }

    #[test]
    fn typed_cells_come_back_as_the_gateways_values() {
        let mut w = Writer::new();
        w.text("g1");
        w.date(18809);
        w.timestamp(parse_timestamp("2026-12-03T10:00:00.500+08:00").expect("t"));
        w.text("g2");
        w.null();
        w.integer(3);
        let rows = decode(&buffer(&["id", "d", "t"], 2, w.into_bytes())).expect("decoded");
        assert_eq!(
            rows,
            vec![
                vec![
                    Value::Text("g1".into()),
                    Value::Date("2021-07-01".into()),
                    Value::Timestamp("2026-12-03T10:00:00.500+08:00".into()),
                ],
                vec![Value::Text("g2".into()), Value::Null, Value::Integer(3)],
            ]
        );
    }

    #[test]
    fn a_buffer_that_lies_about_its_rows_fails_the_call() {
        let mut w = Writer::new();
        w.text("g1");
        w.text("150102");
        let cells = w.into_bytes();
        for (rows, columns) in [(2, 2), (1, 1), (u32::MAX, 2), (1, 0)] {
            let names: Vec<&str> = ["id", "division"].into_iter().take(columns).collect();
            let refused = decode(&buffer(&names, rows, cells.clone()));
            assert!(
                matches!(refused, Err(PluginError::Contract(Violation::RowBuffer(_)))),
                "{rows} rows × {columns}: {refused:?}"
            );
        }
        assert!(decode(&buffer(&["id", "division"], 1, cells)).is_ok());
    }
}
