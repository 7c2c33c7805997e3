//! K-way merge of source pages on (`division`, `id`), tracking how far each
//! source was consumed so the next page resumes exactly there.

use std::sync::Arc;

use lianqiao_host::contract::{Page, Value};

use super::cursor::SourcePosition;
use super::filter;
use super::planner::SourceCall;

/// One merged row, cells by column name.
#[derive(Debug, Clone)]
pub struct MergedRow {
    pub source: Arc<str>,
    pub division: String,
    pub id: String,
    pub cells: Vec<(String, Value)>,
}

/// A source's page as the merge walks it.
pub(crate) struct Buffer<'a> {
    pub call: &'a SourceCall,
    pub start: SourcePosition,
    pub page: Page,
    /// Rows of `page` already consumed (including the skipped prefix).
    pub pos: usize,
    /// Skip still owed after this page ran out (the source's pages shrank).
    pub owed_skip: u32,
    division_col: Option<usize>,
    id_col: Option<usize>,
}

impl<'a> Buffer<'a> {
    /// Wrap a page read from `start`; its first `start.skip` rows were
    /// returned earlier and are passed over.
    pub fn new(call: &'a SourceCall, start: SourcePosition, page: Page) -> Self {
        // The host checked every row has both; an empty page may have neither.
        let division_col = page.columns.iter().position(|c| c == "division");
        let id_col = page.columns.iter().position(|c| c == "id");
        let skipped = (start.skip as usize).min(page.rows.len());
        Buffer {
            call,
            owed_skip: start.skip - skipped as u32,
            start,
            page,
            pos: skipped,
            division_col,
            id_col,
        }
    }

    fn key(&self) -> Option<(&str, &str)> {
        let row = self.page.rows.get(self.pos)?;
        match (row.get(self.division_col?)?, row.get(self.id_col?)?) {
            (Value::Text(d), Value::Text(i)) => Some((d, i)),
            _ => None,
        }
    }

    fn more_upstream(&self) -> bool {
        self.page.next_cursor.is_some()
    }

    /// Where this source stands after the merge.
    pub fn position(&self) -> Option<SourcePosition> {
        if self.pos < self.page.rows.len() {
            Some(SourcePosition {
                cursor: self.start.cursor.clone(),
                skip: self.pos as u32,
            })
        } else {
            self.page.next_cursor.as_ref().map(|c| SourcePosition {
                cursor: Some(c.clone()),
                skip: self.owed_skip,
            })
        }
    }
}

/// Merge up to `limit` rows. Stops early when a source with more rows
/// upstream has run out of buffered ones: its next rows might sort first.
pub(crate) fn merge(buffers: &mut [Buffer<'_>], limit: usize) -> Vec<MergedRow> {
    let mut out: Vec<MergedRow> = Vec::with_capacity(limit);
    loop {
        if buffers
            .iter()
            .any(|b| b.pos >= b.page.rows.len() && b.more_upstream())
        {
            break;
        }
        let next = buffers
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.key().map(|k| (k, b.call.source.name(), i)))
            .min();
        let Some(((division, id), _, i)) = next else {
            break;
        };
        // The same record from another source joins the row just emitted,
        // even past the limit, so it never reappears on the next page.
        let joins_last = out
            .last()
            .is_some_and(|l| l.division == division && l.id == id);
        if out.len() >= limit && !joins_last {
            break;
        }
        let buffer = &mut buffers[i];
        let row = &buffer.page.rows[buffer.pos];
        buffer.pos += 1;
        let call = buffer.call;
        let cell = |name: &str| {
            buffer
                .page
                .columns
                .iter()
                .position(|c| c == name)
                .map(|j| &row[j])
        };
        if !call
            .residual
            .iter()
            .all(|f| filter::matches(f, cell(f.field.name)))
        {
            continue;
        }
        let cells = buffer.page.columns.iter().cloned().zip(row.iter().cloned());
        if joins_last && let Some(last) = out.last_mut() {
            join_into(last, call.source.name(), cells);
            continue;
        }
        let text_at = |j: Option<usize>| match j.and_then(|j| row.get(j)) {
            Some(Value::Text(s)) => s.clone(),
            _ => String::new(),
        };
        out.push(MergedRow {
            source: Arc::from(call.source.name()),
            division: text_at(buffer.division_col),
            id: text_at(buffer.id_col),
            cells: cells.collect(),
        });
    }
    out
}

/// Fill the fields `row` lacks (absent or null) from another source's
/// copy of the same record, and name both sources.
fn join_into(row: &mut MergedRow, source: &str, cells: impl Iterator<Item = (String, Value)>) {
    for (name, value) in cells {
        match row.cells.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) if matches!(existing, Value::Null) => *existing = value,
            Some(_) => {}
            None => row.cells.push((name, value)),
        }
    }
    row.source = Arc::from(format!("{}+{source}", row.source));
}
