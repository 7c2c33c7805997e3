//! K-way merge of source pages on (`division`, `id`), over sources that
//! are asked lazily: a source is read only once its rows could sort before
//! the next row the page would return, so a region page reads what it
//! returns, not `sources × limit` rows.
//!
//! Each source is a [`Lane`] of the merge. Lanes are ordered by their
//! floor — the smallest division their part of the scope can hold — then
//! name; the executor starts them in that order, so "the first k lanes
//! have been started" is all a cursor needs to say about the others.

use std::sync::Arc;
use std::time::Duration;

use lianqiao_host::PluginError;
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

/// Where one source stands in a listing.
pub(crate) enum LaneState {
    /// Not asked yet: its rows all sort after what was returned so far.
    Waiting,
    /// To be read from this position (resumed from a cursor, or its
    /// buffered rows ran out while it has more).
    At(SourcePosition),
    /// A page it answered, as the merge walks it.
    Reading(Buffer),
    /// Every row it has was returned.
    Done,
    /// Its last call failed: its place is kept for a later page.
    Failed(SourcePosition),
}

/// A source's page as the merge walks it.
pub(crate) struct Buffer {
    pub start: SourcePosition,
    pub page: Page,
    /// Rows of `page` already consumed (including the skipped prefix).
    pub pos: usize,
    /// Skip still owed after this page ran out (the source's pages shrank).
    pub owed_skip: u32,
    division_col: Option<usize>,
    id_col: Option<usize>,
}

impl Buffer {
    /// Wrap a page read from `start`; its first `start.skip` rows were
    /// returned earlier and are passed over.
    pub fn new(start: SourcePosition, page: Page) -> Self {
        // The host checked every row has both; an empty page may have neither.
        let division_col = page.columns.iter().position(|c| c == "division");
        let id_col = page.columns.iter().position(|c| c == "id");
        let skipped = (start.skip as usize).min(page.rows.len());
        Buffer {
            owed_skip: start.skip - skipped as u32,
            start,
            page,
            pos: skipped,
            division_col,
            id_col,
        }
    }

    pub fn key(&self) -> Option<(&str, &str)> {
        let row = self.page.rows.get(self.pos)?;
        match (row.get(self.division_col?)?, row.get(self.id_col?)?) {
            (Value::Text(d), Value::Text(i)) => Some((d, i)),
            _ => None,
        }
    }

    /// Where the source stands when the merge stops here.
    fn position(&self) -> Option<SourcePosition> {
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

/// One source's part in a listing, and what it did for this request.
pub(crate) struct Lane {
    pub call: SourceCall,
    /// The smallest division its part of the scope can hold.
    pub floor: String,
    pub state: LaneState,
    /// Calls made for this request, their time and rows.
    pub calls: u32,
    pub latency: Duration,
    pub rows: usize,
    /// The last call's failure, if it failed.
    pub error: Option<PluginError>,
    /// It gave the row the page ends with (so its next row, greater in
    /// its own order, cannot be that record again).
    gave_last: bool,
}

impl Lane {
    pub fn new(call: SourceCall, state: LaneState) -> Self {
        let floor = call.scope.iter().min().cloned().unwrap_or_default();
        Lane {
            call,
            floor,
            state,
            calls: 0,
            latency: Duration::ZERO,
            rows: 0,
            error: None,
            gave_last: false,
        }
    }

    /// The order lanes are started in.
    pub fn order(&self) -> (&str, &str) {
        (&self.floor, self.call.source.name())
    }

    fn key(&self) -> Option<(&str, &str)> {
        match &self.state {
            LaneState::Reading(b) => b.key(),
            _ => None,
        }
    }

    /// Where the source stands for the next page; `None` when it is done,
    /// or not started (the cursor says which by the started prefix).
    pub fn position(&self) -> Option<SourcePosition> {
        match &self.state {
            LaneState::At(p) | LaneState::Failed(p) => Some(p.clone()),
            LaneState::Reading(b) => b.position(),
            LaneState::Waiting | LaneState::Done => None,
        }
    }

    /// Its buffered rows ran out: read on from the next page, or done.
    fn drained(&mut self) {
        if let LaneState::Reading(b) = &self.state
            && b.pos >= b.page.rows.len()
        {
            self.state = match b.position() {
                Some(next) => LaneState::At(next),
                None => LaneState::Done,
            };
        }
    }
}

/// Why the merge stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The page is full.
    Full,
    /// Some lane must be read before another row can be returned.
    Read,
    /// Every lane is done (or failed).
    Exhausted,
}

/// Merge rows into `out` until the page holds `limit`, or a lane must be
/// read first: one waiting for its next page, or a waiting one whose floor
/// does not sort after the next row.
pub(crate) fn merge(lanes: &mut [Lane], out: &mut Vec<MergedRow>, limit: usize) -> Stop {
    loop {
        for lane in lanes.iter_mut() {
            lane.drained();
        }
        let waiting_for_page = |l: &Lane| matches!(l.state, LaneState::At(_));
        // A full page needs another read only if a lane's next row could
        // be the record the page ends with (from another source).
        if out.len() >= limit
            && lanes.iter().all(|l| !waiting_for_page(l) || l.gave_last)
            && lanes.iter().all(|l| {
                l.key().is_none_or(|k| {
                    out.last()
                        .is_none_or(|last| (last.division.as_str(), last.id.as_str()) != k)
                })
            })
        {
            return Stop::Full;
        }
        if lanes.iter().any(waiting_for_page) {
            return Stop::Read;
        }
        let next = lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.key().map(|k| (k, l.call.source.name(), i)))
            .min();
        let waiting_before = |division: Option<&str>| {
            lanes.iter().any(|l| {
                matches!(l.state, LaneState::Waiting)
                    && division.is_none_or(|d| l.floor.as_str() <= d)
            })
        };
        let Some(((division, id), _, i)) = next else {
            return if waiting_before(None) {
                Stop::Read
            } else {
                Stop::Exhausted
            };
        };
        if waiting_before(Some(division)) {
            return Stop::Read;
        }
        // The same record from another source joins the row just emitted,
        // even past the limit, so it never reappears on the next page.
        let joins_last = out
            .last()
            .is_some_and(|l| l.division == division && l.id == id);
        if out.len() >= limit && !joins_last {
            return Stop::Full;
        }
        let (division, id) = (division.to_string(), id.to_string());
        let lane = &mut lanes[i];
        let LaneState::Reading(buffer) = &mut lane.state else {
            continue;
        };
        let row = &buffer.page.rows[buffer.pos];
        buffer.pos += 1;
        let call = &lane.call;
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
        let cells: Vec<(String, Value)> = buffer
            .page
            .columns
            .iter()
            .cloned()
            .zip(row.iter().cloned())
            .collect();
        let source = call.source.name().to_string();
        if joins_last && let Some(last) = out.last_mut() {
            join_into(last, &source, cells.into_iter());
            lanes[i].gave_last = true;
            continue;
        }
        for (j, other) in lanes.iter_mut().enumerate() {
            other.gave_last = j == i;
        }
        out.push(MergedRow {
            source: Arc::from(source.as_str()),
            division,
            id,
            cells,
        });
    }
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
