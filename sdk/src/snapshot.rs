//! Serving upstreams that cannot sort by (`division`, `id`): fetch a scope
//! code's records once, sort them, keep them in the host's cache for a
//! while, and page through them with keyset cursors.
//!
//! Instances are fresh on every call (contract 0.1), so whatever a call
//! needs from a snapshot crosses from the host's cache into the guest and
//! is parsed again. A snapshot is therefore kept **in chunks** of
//! [`CHUNK`] records behind a small index (the last key of each chunk): a
//! page reads the index and the one or two chunks its rows are in, O(page)
//! rather than O(snapshot). Counts are kept per (scope code, division
//! prefix, grouping field) once computed, so a repeated count reads a few
//! cells. A chunk evicted from the cache (it is bounded) makes the next
//! call fetch the snapshot again, never serve a partial one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::keyset::Position;
use crate::rows::{Cell, Reader, Writer, row_starts};
use crate::{
    AggregateCell, AggregateQuery, Filter, FilterOp, FilterSupport, Query, RowBuffer, SourceError,
    Value, ValueKind, ValuePage, cache,
};

/// The one filter a snapshot answers itself: a lookup by `id` (`=` or
/// one-of). Declare it for a snapshot entity and the gateway pushes an id
/// lookup down instead of paging through every record to find one.
pub fn id_lookup() -> FilterSupport {
    FilterSupport {
        field: "id".into(),
        ops: vec![FilterOp::Eq, FilterOp::OneOf],
    }
}

/// The ids a query's filters ask for (`None`: no id filter). Only
/// `id_lookup`'s filters are accepted; several intersect.
pub fn wanted_ids(filters: &[Filter]) -> Result<Option<BTreeSet<String>>, SourceError> {
    let mut wanted: Option<BTreeSet<String>> = None;
    for f in filters {
        if f.field != "id" || !matches!(f.op, FilterOp::Eq | FilterOp::OneOf) {
            return Err(SourceError::Unsupported(format!(
                "filter on `{}` (a snapshot answers only `id` = or one-of)",
                f.field
            )));
        }
        let ids: BTreeSet<String> = f
            .values
            .iter()
            .filter_map(|v| match v {
                Value::Text(t) => Some(t.clone()),
                Value::Integer(i) => Some(i.to_string()),
                _ => None,
            })
            .collect();
        wanted = Some(match wanted {
            Some(before) => before.intersection(&ids).cloned().collect(),
            None => ids,
        });
    }
    Ok(wanted)
}

/// One record: its sort key and its fields as JSON.
pub type Record = (String, String, Map<String, Json>);

/// Records per cached chunk: a page of 50 touches one or two chunks, and a
/// chunk (~40 KB of JSON for members) parses in well under a millisecond.
pub const CHUNK: usize = 128;

/// Each field of an entity and its kind.
pub type Kinds = &'static [(&'static str, ValueKind)];

/// Answer with the [`Snapshots`] of `entity` of an upstream reached with
/// [`UpstreamSettings`](crate::settings::UpstreamSettings): its kinds from
/// `kinds`, its records from `fetch` (settings, entity, scope code).
pub fn serve<T>(
    entity: &str,
    kinds: fn(&str) -> Result<Kinds, SourceError>,
    fetch: fn(&crate::settings::UpstreamSettings, &str, &str) -> Result<Vec<Record>, SourceError>,
    answer: impl FnOnce(&Snapshots) -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    let settings: crate::settings::UpstreamSettings = crate::settings::load()?;
    let fetch = |code: &str| fetch(&settings, entity, code);
    answer(&Snapshots {
        entity,
        kinds: kinds(entity)?,
        ttl_ms: settings.snapshot_ttl_ms,
        fetch: &fetch,
    })
}

/// Where snapshots are kept between calls: the host's per-source cache in
/// a plugin, a map in tests.
pub trait Store {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    fn set(&self, key: &str, value: &[u8], ttl_ms: u32);
}

/// The host's cache (`lianqiao:source/cache`).
pub struct HostCache;

impl Store for HostCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        cache::get(key)
    }
    fn set(&self, key: &str, value: &[u8], ttl_ms: u32) {
        cache::set(key, value, ttl_ms);
    }
}

/// An entity served from snapshots: its fields' kinds, how long a
/// snapshot stays fresh, and how to fetch one scope code's records.
pub struct Snapshots<'a> {
    pub entity: &'a str,
    pub kinds: &'a [(&'a str, ValueKind)],
    pub ttl_ms: u32,
    pub fetch: &'a dyn Fn(&str) -> Result<Vec<Record>, SourceError>,
}

/// What the cache holds under a snapshot's key.
#[derive(Serialize, Deserialize)]
struct Index {
    /// Names this fetch's chunks and counts, so a re-fetch never mixes
    /// with the chunks of an earlier one.
    generation: String,
    /// The last (division, id) of every chunk, ascending.
    lasts: Vec<(String, String)>,
}

/// One scope code's snapshot as a call sees it: the index, and the
/// encoded chunks themselves when this call fetched them.
struct View {
    code: String,
    index: Index,
    fresh: Option<Vec<Vec<u8>>>,
}

/// A row picked for a page: its position, and where its cells lie in the
/// chunks a call loaded (chunk number, byte range).
struct Picked {
    division: String,
    id: String,
    chunk: usize,
    cells: std::ops::Range<usize>,
}

/// Cached counts of one code: (division prefix, `by` value, count).
/// (division group, key, count, record digest) per cell.
type Cells = Vec<(Option<String>, Option<Json>, i64, u64)>;

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

/// Scope codes whose snapshots together hold the scope once: duplicates
/// and codes inside another code of the scope are dropped.
fn covering(scope: &[String]) -> Vec<&str> {
    let mut codes: Vec<&str> = scope.iter().map(String::as_str).collect();
    codes.sort_unstable();
    codes.dedup();
    codes
        .iter()
        .copied()
        .filter(|c| !codes.iter().any(|d| d != c && c.starts_with(d)))
        .collect()
}

impl Snapshots<'_> {
    fn key(&self, code: &str) -> String {
        format!("{}:{code}", self.entity)
    }

    fn chunk_key(&self, view: &View, i: usize) -> String {
        format!("{}@{}/{i}", self.key(&view.code), view.index.generation)
    }

    /// Fetch `code`'s records, sort them and store them in chunks.
    fn refresh(&self, store: &impl Store, code: &str) -> Result<View, SourceError> {
        let mut records = (self.fetch)(code)?;
        sort(&mut records);
        records.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let mut chunks = Vec::new();
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for chunk in records.chunks(CHUNK) {
            let bytes = self.encode_chunk(chunk)?;
            fnv(&mut hash, &bytes);
            chunks.push(bytes);
        }
        let index = Index {
            generation: format!("{hash:016x}"),
            lasts: records
                .chunks(CHUNK)
                .filter_map(|c| c.last().map(|(d, i, _)| (d.clone(), i.clone())))
                .collect(),
        };
        let view = View {
            code: code.to_string(),
            index,
            fresh: None,
        };
        // Chunks before the index: a reader that finds the index finds its
        // chunks (unless the cache evicted one, which it then notices).
        for (i, bytes) in chunks.iter().enumerate() {
            store.set(&self.chunk_key(&view, i), bytes, self.ttl_ms);
        }
        if let Ok(bytes) = serde_json::to_vec(&view.index) {
            store.set(&self.key(code), &bytes, self.ttl_ms);
        }
        Ok(View {
            fresh: Some(chunks),
            ..view
        })
    }

    /// The fields a chunk holds after `division` and `id`, in order.
    fn stored_fields(&self) -> impl Iterator<Item = &(&str, ValueKind)> {
        self.kinds
            .iter()
            .filter(|(n, _)| !matches!(*n, "id" | "division"))
    }

    /// A chunk as the cache keeps it (contract 0.4's row layout, so a page
    /// copies cells out of it instead of parsing records): the row count
    /// (u32, little-endian), then per record `division`, `id` and every
    /// other field of the entity, typed by its kind.
    fn encode_chunk(&self, records: &[Record]) -> Result<Vec<u8>, SourceError> {
        let mut out = Writer::with_capacity(records.len() * 64);
        for (division, id, fields) in records {
            out.text(division);
            out.text(id);
            for (name, kind) in self.stored_fields() {
                crate::write_value(&mut out, &to_value(fields.get(*name), *kind), name)?;
            }
        }
        let mut bytes = (records.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&out.into_bytes());
        Ok(bytes)
    }

    /// The row starts of an encoded chunk (checked whole), `None` when it
    /// is not one (an entry of an older layout: refetched).
    fn chunk_rows<'b>(&self, bytes: &'b [u8]) -> Option<(&'b [u8], Vec<usize>)> {
        let count = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let cells = bytes.get(4..)?;
        let width = 2 + self.stored_fields().count();
        let starts = row_starts(cells, width, count).ok()?;
        Some((cells, starts))
    }

    /// A chunk's records, for counting.
    fn decode_chunk(&self, bytes: &[u8]) -> Option<Vec<Record>> {
        let (cells, _) = self.chunk_rows(bytes)?;
        let names: Vec<&str> = self.stored_fields().map(|(n, _)| *n).collect();
        let mut reader = Reader::new(cells);
        let mut out = Vec::new();
        while !reader.is_done() {
            let text = |cell: Option<Result<Cell<'_>, _>>| match cell {
                Some(Ok(Cell::Text(t))) => Some(t.to_string()),
                _ => None,
            };
            let division = text(reader.next_cell())?;
            let id = text(reader.next_cell())?;
            let mut fields = Map::new();
            for name in &names {
                let json = match reader.next_cell()?.ok()? {
                    Cell::Null => Json::Null,
                    Cell::Boolean(b) => Json::Bool(b),
                    Cell::Integer(i) => Json::from(i),
                    Cell::Float(f) => Json::from(f),
                    Cell::Text(t) => Json::from(t),
                    Cell::Date(d) => Json::from(crate::rows::format_date(d)),
                    Cell::Timestamp(t) => Json::from(crate::rows::format_timestamp(t)),
                };
                fields.insert((*name).to_string(), json);
            }
            out.push((division, id, fields));
        }
        Some(out)
    }

    /// `code`'s snapshot: the cached index, or a fresh fetch.
    fn view(&self, store: &impl Store, code: &str) -> Result<View, SourceError> {
        match store
            .get(&self.key(code))
            .and_then(|bytes| serde_json::from_slice::<Index>(&bytes).ok())
        {
            Some(index) => Ok(View {
                code: code.to_string(),
                index,
                fresh: None,
            }),
            None => self.refresh(store, code),
        }
    }

    /// Chunk `i` of `view`, encoded; `None` when the cache no longer has it.
    fn chunk<'v>(&self, store: &impl Store, view: &'v View, i: usize) -> Option<Cow<'v, [u8]>> {
        if let Some(chunks) = &view.fresh {
            return chunks.get(i).map(|c| Cow::Borrowed(c.as_slice()));
        }
        store.get(&self.chunk_key(view, i)).map(Cow::Owned)
    }

    /// Up to `want` rows of `view` strictly after `after`, inside its code
    /// and passing `keep` (on the id), with their chunks appended to
    /// `loaded`; `None` when a chunk is gone from the cache.
    fn after(
        &self,
        store: &impl Store,
        view: &View,
        after: Option<&Position>,
        want: usize,
        keep: &dyn Fn(&str) -> bool,
        loaded: &mut Vec<Vec<u8>>,
    ) -> Option<Vec<Picked>> {
        let beyond = |d: &str, i: &str| match after {
            Some(p) => (d, i) > (p.division.as_str(), p.id.as_str()),
            None => true,
        };
        let first = view.index.lasts.partition_point(|(d, i)| !beyond(d, i));
        let mut out = Vec::new();
        for i in first..view.index.lasts.len() {
            let bytes = self.chunk(store, view, i)?.into_owned();
            let (cells, starts) = self.chunk_rows(&bytes)?;
            let ends: Vec<usize> = starts
                .iter()
                .skip(1)
                .copied()
                .chain([cells.len()])
                .collect();
            let mut picked = Vec::new();
            for (start, end) in starts.iter().zip(ends) {
                if out.len() + picked.len() == want {
                    break;
                }
                let mut reader = Reader::new(&cells[*start..end]);
                let (Some(Ok(Cell::Text(d))), Some(Ok(Cell::Text(id)))) =
                    (reader.next_cell(), reader.next_cell())
                else {
                    return None;
                };
                if beyond(d, id) && d.starts_with(view.code.as_str()) && keep(id) {
                    picked.push(Picked {
                        division: d.to_string(),
                        id: id.to_string(),
                        chunk: loaded.len(),
                        // Past the row-count prefix of the stored chunk.
                        cells: start + 4..end + 4,
                    });
                }
            }
            let full = out.len() + picked.len() == want;
            out.extend(picked);
            loaded.push(bytes);
            if full {
                break;
            }
        }
        Some(out)
    }

    /// Every record of `view`; `None` when a chunk is gone from the cache.
    fn all(&self, store: &impl Store, view: &View) -> Option<Vec<Record>> {
        let mut out = Vec::new();
        for i in 0..view.index.lasts.len() {
            let bytes = self.chunk(store, view, i)?;
            out.extend(self.decode_chunk(&bytes)?);
        }
        Some(out)
    }

    fn kind(&self, field: &str) -> Option<ValueKind> {
        self.kinds
            .iter()
            .find(|(n, _)| *n == field)
            .map(|(_, k)| *k)
    }

    /// A page for `query` from the host's cache (fetching what is missing).
    pub fn page(&self, query: &Query) -> Result<crate::Page, SourceError> {
        self.page_in(&HostCache, query)
    }

    /// Counts for `query` from the host's cache (fetching what is missing).
    pub fn count(&self, query: &AggregateQuery) -> Result<Vec<AggregateCell>, SourceError> {
        self.count_in(&HostCache, query)
    }

    /// A page of the entity; the only filter it takes is a lookup by id
    /// (`id_lookup`), answered from the snapshot. The page's buffer is
    /// copied cell by cell out of the cached chunks: nothing is parsed.
    pub fn page_in(&self, store: &impl Store, query: &Query) -> Result<crate::Page, SourceError> {
        let ids = wanted_ids(&query.filters)?;
        let keep = |id: &str| ids.as_ref().is_none_or(|ids| ids.contains(id));
        let after = query.cursor.as_deref().map(Position::decode).transpose()?;
        // One row past the limit tells whether another page follows.
        let want = query.limit as usize + 1;
        let mut loaded = Vec::new();
        let mut rows = Vec::new();
        for code in covering(&query.scope) {
            let view = self.view(store, code)?;
            let found = match self.after(store, &view, after.as_ref(), want, &keep, &mut loaded) {
                Some(found) => found,
                None => {
                    let view = self.refresh(store, code)?;
                    self.after(store, &view, after.as_ref(), want, &keep, &mut loaded)
                        .ok_or_else(|| {
                            SourceError::Internal(
                                "a snapshot chunk just written is unreadable".into(),
                            )
                        })?
                }
            };
            rows.extend(found);
        }
        rows.sort_by(|a, b| {
            (a.division.as_str(), a.id.as_str()).cmp(&(b.division.as_str(), b.id.as_str()))
        });
        rows.dedup_by(|a, b| a.division == b.division && a.id == b.id);
        let more = rows.len() > query.limit as usize;
        rows.truncate(query.limit as usize);
        // Where each projected field lies in a stored row (`None`: not a
        // field of the entity, served as null).
        let stored: Vec<&str> = ["division", "id"]
            .into_iter()
            .chain(self.stored_fields().map(|(n, _)| *n))
            .collect();
        let at: Vec<Option<usize>> = query
            .projection
            .iter()
            .map(|f| stored.iter().position(|s| s == f))
            .collect();
        let mut out = Writer::with_capacity(rows.len() * 128);
        let mut cells = Vec::with_capacity(stored.len());
        for row in &rows {
            let bytes = &loaded[row.chunk][row.cells.clone()];
            cells.clear();
            for cell in Reader::new(bytes) {
                cells.push(
                    cell.map_err(|e| SourceError::Internal(format!("a snapshot chunk: {e}")))?,
                );
            }
            for i in &at {
                match i.and_then(|i| cells.get(i)) {
                    Some(cell) => out.cell(*cell),
                    None => out.null(),
                }
            }
        }
        let next_cursor = match (more, rows.last()) {
            (true, Some(last)) => Some(
                Position {
                    division: last.division.clone(),
                    id: last.id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(crate::Page {
            rows: RowBuffer {
                columns: query.projection.clone(),
                rows: rows.len() as u32,
                cells: out.into_bytes(),
            },
            next_cursor,
        })
    }

    /// Counts grouped by division prefix and/or a field, so an upstream
    /// that cannot count still ships no rows to the gateway.
    pub fn count_in(
        &self,
        store: &impl Store,
        query: &AggregateQuery,
    ) -> Result<Vec<AggregateCell>, SourceError> {
        if !query.filters.is_empty() {
            return Err(SourceError::Unsupported(
                "filters (none are declared)".into(),
            ));
        }
        let by_kind = match &query.by {
            Some(b) => Some(
                self.kind(b)
                    .ok_or_else(|| SourceError::Unsupported(format!("grouping by `{b}`")))?,
            ),
            None => None,
        };
        let mut groups: BTreeMap<GroupKey, (Option<Value>, i64, u64)> = BTreeMap::new();
        for code in covering(&query.scope) {
            for (division, key, count, digest) in self.cells(store, code, query)? {
                let key = by_kind.map(|k| to_value(key.as_ref(), k));
                let entry = groups
                    .entry((division, key.as_ref().map(|k| format!("{k:?}"))))
                    .or_insert((key, 0, 0));
                entry.1 += count;
                entry.2 = entry.2.wrapping_add(digest);
            }
        }
        Ok(groups
            .into_iter()
            .map(|((division, _), (key, count, digest))| AggregateCell {
                division,
                key,
                count,
                digest,
            })
            .collect())
    }

    /// `code`'s counts for `query`'s grouping: cached, or counted now.
    fn cells(
        &self,
        store: &impl Store,
        code: &str,
        query: &AggregateQuery,
    ) -> Result<Cells, SourceError> {
        let mut view = self.view(store, code)?;
        let count_key = |view: &View| {
            format!(
                "{}@{}/count/{:?}/{:?}",
                self.key(code),
                view.index.generation,
                query.division_prefix,
                query.by
            )
        };
        if let Some(cells) = store
            .get(&count_key(&view))
            .and_then(|bytes| serde_json::from_slice::<Cells>(&bytes).ok())
        {
            return Ok(cells);
        }
        let records = match self.all(store, &view) {
            Some(records) => records,
            None => {
                view = self.refresh(store, code)?;
                self.all(store, &view).unwrap_or_default()
            }
        };
        let cells = group(&records, query);
        if let Ok(bytes) = serde_json::to_vec(&cells) {
            store.set(&count_key(&view), &bytes, self.ttl_ms);
        }
        Ok(cells)
    }
}

/// A cell being counted: its division group and key (as text, for order),
/// then the key, the count and the record digest so far.
type Tally = BTreeMap<(Option<String>, String), (Option<Json>, i64, u64)>;

/// `records` grouped as `query` asks (division prefix and/or a field).
fn group(records: &[Record], query: &AggregateQuery) -> Cells {
    let mut groups = Tally::new();
    for (division, id, fields) in records {
        let group = query
            .division_prefix
            .map(|n| division.chars().take(n as usize).collect());
        let key = query
            .by
            .as_ref()
            .map(|b| fields.get(b).cloned().unwrap_or(Json::Null));
        let text = key.as_ref().map(Json::to_string).unwrap_or_default();
        let cell = groups.entry((group, text)).or_insert((key, 0, 0));
        cell.1 += 1;
        cell.2 = cell.2.wrapping_add(u64::from(crate::record_key(id)));
    }
    groups
        .into_iter()
        .map(|((division, _), (key, count, digest))| (division, key, count, digest))
        .collect()
}

/// Counts of `records` (already filtered, in scope) for `query`, for a
/// plugin that read them fresh instead of from a snapshot (a feed read).
pub fn count_records(
    records: &[Record],
    query: &AggregateQuery,
    kind: impl Fn(&str) -> Option<ValueKind>,
) -> Vec<AggregateCell> {
    let by_kind = query
        .by
        .as_deref()
        .map(|b| kind(b).unwrap_or(ValueKind::Text));
    group(records, query)
        .into_iter()
        .map(|(division, key, count, digest)| AggregateCell {
            division,
            key: by_kind.map(|k| to_value(key.as_ref(), k)),
            count,
            digest,
        })
        .collect()
}

/// A JSON scalar as a contract value of `kind`.
pub fn to_value(json: Option<&Json>, kind: ValueKind) -> Value {
    match (json, kind) {
        (None | Some(Json::Null), _) => Value::Null,
        (Some(Json::Bool(b)), _) => Value::Boolean(*b),
        (Some(Json::Number(n)), ValueKind::Integer) => {
            n.as_i64().map_or(Value::Null, Value::Integer)
        }
        (Some(Json::Number(n)), ValueKind::Float) => n.as_f64().map_or(Value::Null, Value::Float),
        (Some(Json::Number(n)), _) => Value::Text(n.to_string()),
        (Some(Json::String(s)), ValueKind::Date) => Value::Date(s.clone()),
        (Some(Json::String(s)), ValueKind::Timestamp) => Value::Timestamp(s.clone()),
        (Some(Json::String(s)), ValueKind::Integer) => {
            s.parse().map_or(Value::Null, Value::Integer)
        }
        (Some(Json::String(s)), _) => Value::Text(s.clone()),
        (Some(other), _) => Value::Text(other.to_string()),
    }
}

/// A page of `records` (sorted by division, id) for `query`: scope,
/// keyset position, limit and projection applied. `kind` gives each
/// field's kind.
pub fn page_of(
    records: &[Record],
    query: &Query,
    kind: impl Fn(&str) -> Option<ValueKind>,
) -> Result<ValuePage, SourceError> {
    let after = query.cursor.as_deref().map(Position::decode).transpose()?;
    let start = match &after {
        Some(p) => records.partition_point(|(d, i, _)| {
            (d.as_str(), i.as_str()) <= (p.division.as_str(), p.id.as_str())
        }),
        None => 0,
    };
    let in_scope = |d: &str| query.scope.iter().any(|s| d.starts_with(s.as_str()));
    let mut rows = Vec::new();
    let mut last = None;
    let mut more = false;
    for (division, id, fields) in records[start..].iter().filter(|(d, _, _)| in_scope(d)) {
        if rows.len() == query.limit as usize {
            more = true;
            break;
        }
        let row = query
            .projection
            .iter()
            .map(|f| match f.as_str() {
                "id" => Value::Text(id.clone()),
                "division" => Value::Text(division.clone()),
                other => to_value(fields.get(other), kind(other).unwrap_or(ValueKind::Text)),
            })
            .collect();
        rows.push(row);
        last = Some((division, id));
    }
    let next_cursor = match (more, last) {
        (true, Some((d, i))) => Some(
            Position {
                division: d.clone(),
                id: i.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(ValuePage {
        columns: query.projection.clone(),
        rows,
        next_cursor,
    })
}

/// A group: division prefix and the debug text of the `by` value.
type GroupKey = (Option<String>, Option<String>);

/// Sort records into the contract's order.
pub fn sort(records: &mut [Record]) {
    records.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
}

/// The manifest entry of an entity served from snapshots: every field, no
/// filter pushed down (the gateway applies them), counts done in the plugin.
pub fn entity_spec(name: &str, fields: &[(&str, ValueKind)]) -> crate::EntitySpec {
    crate::EntitySpec {
        name: name.into(),
        fields: fields
            .iter()
            .map(|(n, k)| crate::FieldSpec {
                name: (*n).into(),
                kind: *k,
            })
            .collect(),
        filters: vec![],
        aggregates: true,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// The host's cache as a map; `evict` drops keys containing a text.
    #[derive(Default)]
    struct MapStore(RefCell<HashMap<String, Vec<u8>>>);

    impl Store for MapStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], _ttl_ms: u32) {
            self.0.borrow_mut().insert(key.into(), value.to_vec());
        }
    }

    impl MapStore {
        fn evict(&self, containing: &str) {
            self.0.borrow_mut().retain(|k, _| !k.contains(containing));
        }
    }

    const KINDS: &[(&str, ValueKind)] = &[
        ("id", ValueKind::Text),
        ("division", ValueKind::Text),
        ("gender", ValueKind::Text),
    ];

    /// `n` records per community of 150103001 and 150104001, unsorted.
    fn upstream(code: &str, n: usize) -> Vec<Record> {
        let mut out = Vec::new();
        for community in ["150103001001", "150103001002", "150104001001"] {
            for i in (0..n).rev() {
                let mut f = Map::new();
                f.insert("gender".into(), Json::from(["male", "female"][i % 2]));
                out.push((community.to_string(), format!("m{i:05}"), f));
            }
        }
        out.retain(|r| r.0.starts_with(code));
        out
    }

    type Fetch<'a> = Box<dyn Fn(&str) -> Result<Vec<Record>, SourceError> + 'a>;

    /// `upstream(code, n)`, counting the fetches in `fetches`.
    fn counting(fetches: &std::cell::Cell<usize>, n: usize) -> Fetch<'_> {
        Box::new(move |code: &str| {
            fetches.set(fetches.get() + 1);
            Ok(upstream(code, n))
        })
    }

    fn members<'a>(fetch: &'a Fetch<'a>) -> Snapshots<'a> {
        Snapshots {
            entity: "members",
            kinds: KINDS,
            ttl_ms: 60_000,
            fetch: fetch.as_ref(),
        }
    }

    fn query(scope: &[&str], limit: u32, cursor: Option<String>) -> Query {
        Query {
            entity: "members".into(),
            scope: scope.iter().map(|s| s.to_string()).collect(),
            filters: vec![],
            projection: vec!["id".into(), "division".into()],
            limit,
            cursor,
        }
    }

    /// A page's buffer read back as values.
    fn values(page: crate::Page) -> ValuePage {
        let width = page.rows.columns.len();
        let cells: Vec<Value> = Reader::new(&page.rows.cells)
            .map(|c| match c.expect("a well-formed buffer") {
                Cell::Null => Value::Null,
                Cell::Boolean(b) => Value::Boolean(b),
                Cell::Integer(i) => Value::Integer(i),
                Cell::Float(f) => Value::Float(f),
                Cell::Text(t) => Value::Text(t.into()),
                Cell::Date(d) => Value::Date(crate::rows::format_date(d)),
                Cell::Timestamp(t) => Value::Timestamp(crate::rows::format_timestamp(t)),
            })
            .collect();
        assert_eq!(cells.len(), width * page.rows.rows as usize);
        ValuePage {
            columns: page.rows.columns,
            rows: cells.chunks(width.max(1)).map(<[Value]>::to_vec).collect(),
            next_cursor: page.next_cursor,
        }
    }

    fn walk(snapshots: &Snapshots, store: &MapStore, scope: &[&str]) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = values(
                snapshots
                    .page_in(store, &query(scope, 50, cursor))
                    .expect("a page"),
            );
            assert!(page.rows.len() <= 50);
            for row in &page.rows {
                let text = |i: usize| row[i].as_text().expect("text").to_string();
                seen.push((text(1), text(0)));
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return seen,
            }
        }
    }

    #[test]
    fn a_lookup_by_id_is_answered_from_the_snapshot_and_other_filters_are_refused() {
        let fetches = std::cell::Cell::new(0);
        let fetch = counting(&fetches, 300);
        let snapshots = members(&fetch);
        let store = MapStore::default();
        let mut q = query(&["1501"], 2, None);
        // The last ids in the order: a walk would read every chunk first.
        q.filters = vec![Filter {
            field: "id".into(),
            op: FilterOp::OneOf,
            values: vec![Value::Text("m00007".into()), Value::Text("m00299".into())],
        }];
        let page = values(snapshots.page_in(&store, &q).expect("a page"));
        let ids: Vec<(String, String)> = page
            .rows
            .iter()
            .map(|r| {
                let text = |i: usize| r[i].as_text().expect("text").to_string();
                (text(1), text(0))
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("150103001001".to_string(), "m00007".to_string()),
                ("150103001001".to_string(), "m00299".to_string()),
            ]
        );
        assert!(
            page.next_cursor.is_some(),
            "two of six matches on a page of two"
        );
        q.filters[0].op = FilterOp::Eq;
        q.filters[0].values.truncate(1);
        q.limit = 10;
        let page = values(snapshots.page_in(&store, &q).expect("a page"));
        assert_eq!(page.rows.len(), 3, "m00007 in each of three communities");
        assert!(page.next_cursor.is_none());
        q.filters[0].field = "gender".into();
        assert!(matches!(
            snapshots.page_in(&store, &q),
            Err(SourceError::Unsupported(_))
        ));
    }

    #[test]
    fn pages_walk_every_record_once_in_order_from_one_fetch() {
        let fetches = std::cell::Cell::new(0);
        let fetch = counting(&fetches, 300);
        let snapshots = members(&fetch);
        let store = MapStore::default();
        let seen = walk(&snapshots, &store, &["150103"]);
        let mut expected: Vec<(String, String)> = upstream("150103", 300)
            .into_iter()
            .map(|(d, i, _)| (d, i))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "every record once, in (division, id) order");
        assert_eq!(fetches.get(), 1, "later pages come from the cached chunks");
        // The snapshot spans several chunks, and a page reads only its own.
        let chunks = store.0.borrow().keys().filter(|k| k.contains('/')).count();
        assert_eq!(chunks, 600usize.div_ceil(CHUNK));
    }

    #[test]
    fn overlapping_and_several_scope_codes_give_each_record_once() {
        let fetches = std::cell::Cell::new(0);
        let fetch = counting(&fetches, 70);
        let snapshots = members(&fetch);
        let store = MapStore::default();
        let seen = walk(&snapshots, &store, &["150103001002", "1501", "150104"]);
        assert_eq!(seen.len(), 210);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let two = walk(&snapshots, &store, &["150104", "150103001001"]);
        assert_eq!(two.len(), 140);
        assert!(two.iter().all(|(d, _)| d != "150103001002"));
    }

    #[test]
    fn an_evicted_chunk_means_a_fresh_fetch_not_a_partial_page() {
        let fetches = std::cell::Cell::new(0);
        let fetch = counting(&fetches, 300);
        let snapshots = members(&fetch);
        let store = MapStore::default();
        let first = snapshots
            .page_in(&store, &query(&["150103"], 50, None))
            .unwrap();
        store.evict("/2");
        let seen = walk(&snapshots, &store, &["150103"]);
        assert_eq!(seen.len(), 600);
        assert_eq!(fetches.get(), 2);
        let again = snapshots
            .page_in(&store, &query(&["150103"], 50, None))
            .unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn counts_match_the_records_and_are_kept() {
        let fetches = std::cell::Cell::new(0);
        let fetch = counting(&fetches, 301);
        let snapshots = members(&fetch);
        let store = MapStore::default();
        let q = AggregateQuery {
            entity: "members".into(),
            scope: vec!["150103".into(), "150104".into(), "150103001".into()],
            filters: vec![],
            division_prefix: Some(9),
            by: Some("gender".into()),
        };
        let cells = snapshots.count_in(&store, &q).unwrap();
        let count = |d: &str, g: &str| {
            cells
                .iter()
                .find(|c| c.division.as_deref() == Some(d) && c.key == Some(Value::Text(g.into())))
                .map(|c| c.count)
        };
        // 301 per community: ids 0..=300, even ids male.
        assert_eq!(count("150103001", "male"), Some(2 * 151));
        assert_eq!(count("150103001", "female"), Some(2 * 150));
        assert_eq!(count("150104001", "male"), Some(151));
        assert_eq!(cells.len(), 4);
        assert_eq!(fetches.get(), 2, "one fetch per covering code");
        // Kept: with the records' chunks gone, the counts still answer.
        store
            .0
            .borrow_mut()
            .retain(|k, _| !k.contains('@') || k.contains("/count/"));
        assert_eq!(snapshots.count_in(&store, &q).unwrap(), cells);
        assert_eq!(fetches.get(), 2, "counted from the kept cells");
        let plain = AggregateQuery {
            division_prefix: None,
            by: None,
            ..q.clone()
        };
        let total = snapshots.count_in(&store, &plain).unwrap();
        assert_eq!(total.len(), 1);
        assert_eq!(total[0].count, 3 * 301);
        // A digest is the sum of its records' keys: the parts add up to
        // the whole, and different records give different digests.
        let parts = cells.iter().fold(0u64, |d, c| d.wrapping_add(c.digest));
        assert_eq!(parts, total[0].digest);
        assert_ne!(cells[0].digest, cells[1].digest);
        let before = fetches.get();
        assert_eq!(snapshots.count_in(&store, &plain).unwrap(), total);
        assert_eq!(fetches.get(), before, "a repeated count reads its cells");
        let err = snapshots
            .count_in(
                &store,
                &AggregateQuery {
                    by: Some("phone".into()),
                    ..q
                },
            )
            .unwrap_err();
        assert!(matches!(err, SourceError::Unsupported(_)));
    }
}
