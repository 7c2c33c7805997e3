//! The row buffer of contract 0.4 (`sdk/wit/source.wit`, interface `rows`).
//!
//! Before 0.4 a page crossed the plugin boundary as `list<list<value>>`:
//! the component model lowered and lifted every cell on its own, and every
//! text cell cost a call into the guest's allocator and a copy (about half
//! of a grids request's instructions, BENCHMARKS.md). In 0.4 the cells of a
//! page, and of a host SQL result, are one `list<u8>`: one allocation, one
//! copy, and a plugin that only passes a database's rows on never looks
//! inside them.
//!
//! # Layout
//!
//! Cells are row-major: row 0's cells in column order, then row 1's. Each
//! cell is a one-byte tag and its payload, little-endian:
//!
//! | tag  | kind       | payload                                                  |
//! |------|------------|----------------------------------------------------------|
//! | 0x00 | null       | none                                                     |
//! | 0x01 | boolean    | none (false)                                             |
//! | 0x02 | boolean    | none (true)                                              |
//! | 0x03 | integer    | i64                                                      |
//! | 0x04 | float      | f64                                                      |
//! | 0x05 | text       | u32 byte length, then that many bytes of UTF-8           |
//! | 0x06 | date       | i32: days since 1970-01-01 (proleptic Gregorian)         |
//! | 0x07 | timestamp  | i64: microseconds since 1970-01-01T00:00:00Z, then i16:  |
//! |      |            | the offset from UTC, in minutes, the source wrote it in  |
//!
//! A timestamp is an instant: two timestamps compare by their first field
//! alone, whatever offsets they were written with; the offset is kept only
//! to show the time as the source did. A buffer holds exactly
//! `rows × columns` cells and nothing after them; anything else is
//! malformed ([`BufferError`]).

#![forbid(unsafe_code)]

use std::fmt;

/// The tag bytes of the layout.
pub mod tag {
    pub const NULL: u8 = 0x00;
    pub const FALSE: u8 = 0x01;
    pub const TRUE: u8 = 0x02;
    pub const INTEGER: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const TEXT: u8 = 0x05;
    pub const DATE: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
}

/// An instant, and the offset it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instant {
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub micros: i64,
    /// Minutes east of UTC (`+08:00` is 480).
    pub offset_minutes: i16,
}

impl PartialOrd for Instant {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Instant {
    /// Time order; the same instant written with two offsets is ordered
    /// by offset only so that `Ord` agrees with `Eq`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.micros, self.offset_minutes).cmp(&(other.micros, other.offset_minutes))
    }
}

/// One cell, borrowing its text from the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(&'a str),
    /// Days since 1970-01-01.
    Date(i32),
    Timestamp(Instant),
}

/// Why a buffer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferError {
    /// A tag byte the layout does not define.
    UnknownTag { at: usize, tag: u8 },
    /// The buffer ends inside a cell.
    Truncated { at: usize },
    /// A text cell that is not UTF-8.
    NotUtf8 { at: usize },
    /// Fewer or more cells than `rows × columns`, or bytes after the last.
    CellCount { expected: usize, found: usize },
}

impl fmt::Display for BufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BufferError::UnknownTag { at, tag } => {
                write!(f, "unknown cell tag 0x{tag:02x} at byte {at}")
            }
            BufferError::Truncated { at } => {
                write!(f, "the buffer ends inside the cell at byte {at}")
            }
            BufferError::NotUtf8 { at } => write!(f, "the text cell at byte {at} is not UTF-8"),
            BufferError::CellCount { expected, found } => write!(
                f,
                "the buffer holds {found} cells (or trailing bytes) where rows × columns is {expected}"
            ),
        }
    }
}

impl std::error::Error for BufferError {}

/// Appends cells to a buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
    cells: usize,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    /// With room for about `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Writer {
            bytes: Vec::with_capacity(bytes),
            cells: 0,
        }
    }

    pub fn null(&mut self) {
        self.bytes.push(tag::NULL);
        self.cells += 1;
    }

    pub fn boolean(&mut self, b: bool) {
        self.bytes.push(if b { tag::TRUE } else { tag::FALSE });
        self.cells += 1;
    }

    pub fn integer(&mut self, i: i64) {
        self.bytes.push(tag::INTEGER);
        self.bytes.extend_from_slice(&i.to_le_bytes());
        self.cells += 1;
    }

    pub fn float(&mut self, f: f64) {
        self.bytes.push(tag::FLOAT);
        self.bytes.extend_from_slice(&f.to_le_bytes());
        self.cells += 1;
    }

    /// A text cell. Text longer than 4 GiB cannot be a cell (no page
    /// comes near; it is cut at the limit rather than mis-framed).
    pub fn text(&mut self, s: &str) {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.bytes.push(tag::TEXT);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(&s.as_bytes()[..len as usize]);
        self.cells += 1;
    }

    pub fn date(&mut self, days: i32) {
        self.bytes.push(tag::DATE);
        self.bytes.extend_from_slice(&days.to_le_bytes());
        self.cells += 1;
    }

    pub fn timestamp(&mut self, t: Instant) {
        self.bytes.push(tag::TIMESTAMP);
        self.bytes.extend_from_slice(&t.micros.to_le_bytes());
        self.bytes
            .extend_from_slice(&t.offset_minutes.to_le_bytes());
        self.cells += 1;
    }

    pub fn cell(&mut self, cell: Cell<'_>) {
        match cell {
            Cell::Null => self.null(),
            Cell::Boolean(b) => self.boolean(b),
            Cell::Integer(i) => self.integer(i),
            Cell::Float(f) => self.float(f),
            Cell::Text(s) => self.text(s),
            Cell::Date(d) => self.date(d),
            Cell::Timestamp(t) => self.timestamp(t),
        }
    }

    /// Cells written so far.
    pub fn cells(&self) -> usize {
        self.cells
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads cells one by one, checking the layout as it goes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    /// The byte offset of the next cell.
    pub fn position(&self) -> usize {
        self.at
    }

    pub fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn take<const N: usize>(&mut self, cell_at: usize) -> Result<[u8; N], BufferError> {
        let end = self.at + N;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(BufferError::Truncated { at: cell_at })?;
        self.at = end;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// The next cell, `None` at the end of the buffer.
    pub fn next_cell(&mut self) -> Option<Result<Cell<'a>, BufferError>> {
        let at = self.at;
        let tag = *self.bytes.get(at)?;
        self.at += 1;
        Some(self.payload(at, tag))
    }

    fn payload(&mut self, at: usize, tag: u8) -> Result<Cell<'a>, BufferError> {
        Ok(match tag {
            tag::NULL => Cell::Null,
            tag::FALSE => Cell::Boolean(false),
            tag::TRUE => Cell::Boolean(true),
            tag::INTEGER => Cell::Integer(i64::from_le_bytes(self.take(at)?)),
            tag::FLOAT => Cell::Float(f64::from_le_bytes(self.take(at)?)),
            tag::TEXT => {
                let len = u32::from_le_bytes(self.take(at)?) as usize;
                let end = self
                    .at
                    .checked_add(len)
                    .ok_or(BufferError::Truncated { at })?;
                let bytes = self
                    .bytes
                    .get(self.at..end)
                    .ok_or(BufferError::Truncated { at })?;
                self.at = end;
                Cell::Text(std::str::from_utf8(bytes).map_err(|_| BufferError::NotUtf8 { at })?)
            }
            tag::DATE => Cell::Date(i32::from_le_bytes(self.take(at)?)),
            tag::TIMESTAMP => {
                let micros = i64::from_le_bytes(self.take(at)?);
                let offset_minutes = i16::from_le_bytes(self.take(at)?);
                Cell::Timestamp(Instant {
                    micros,
                    offset_minutes,
                })
            }
            tag => return Err(BufferError::UnknownTag { at, tag }),
        })
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Cell<'a>, BufferError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_cell()
    }
}

/// Check a whole buffer: every cell well-formed, exactly `rows × columns`
/// of them. Returns the byte offset where each row starts.
pub fn row_starts(bytes: &[u8], columns: usize, rows: usize) -> Result<Vec<usize>, BufferError> {
    let expected = columns.saturating_mul(rows);
    let mut starts = Vec::with_capacity(rows);
    let mut reader = Reader::new(bytes);
    let mut found = 0usize;
    while !reader.is_done() {
        if columns > 0 && found.is_multiple_of(columns) {
            starts.push(reader.position());
        }
        if let Some(cell) = reader.next_cell() {
            cell?;
        }
        found += 1;
    }
    if found != expected {
        return Err(BufferError::CellCount { expected, found });
    }
    Ok(starts)
}

/// Keep only the first `keep` rows of a checked buffer (e.g. a statement
/// fetched one row more than the page to know whether another follows).
pub fn truncate_rows(
    bytes: &mut Vec<u8>,
    columns: usize,
    rows: usize,
    keep: usize,
) -> Result<(), BufferError> {
    if keep >= rows {
        return Ok(());
    }
    let starts = row_starts(bytes, columns, rows)?;
    if let Some(end) = starts.get(keep) {
        bytes.truncate(*end);
    }
    Ok(())
}

// --- Dates and times -------------------------------------------------------

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Howard
/// Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// `YYYY-MM-DD` → days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return None;
    }
    i32::try_from(days_from_civil(i64::from(year), month, day)).ok()
}

/// Days since 1970-01-01 → `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// An RFC 3339 date-time with an offset (`Z`, `+08:00`, `-0330` is not
/// one): `2026-12-07T16:53:11.5+08:00`; a space may stand for the `T`, and
/// up to nine fractional digits are read (kept to the microsecond). A
/// time without an offset is refused: the same text means different
/// instants in different places.
pub fn parse_timestamp(s: &str) -> Option<Instant> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let days = parse_date(s.get(..10)?)?;
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut at = 19;
    let mut micros_part = 0i64;
    if b.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let frac = &b[start..end];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        for i in 0..6 {
            micros_part = micros_part * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
        }
        at = end;
    }
    let offset_minutes: i16 = match &b[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2])?;
            let om = digits(&[*m1, *m2])?;
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = (oh * 60 + om) as i16;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return None,
    };
    // A leap second is read as the last microsecond of its minute's end.
    let seconds = i64::from(days) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(sec.min(59))
        - i64::from(offset_minutes) * 60;
    let micros = seconds * 1_000_000 + if sec == 60 { 999_999 } else { micros_part };
    Some(Instant {
        micros,
        offset_minutes,
    })
}

/// An instant as RFC 3339 in the offset it was written with: seconds
/// always, a fraction of 3 or 6 digits only when not zero, `Z` for UTC.
pub fn format_timestamp(t: Instant) -> String {
    let local = t.micros + i64::from(t.offset_minutes) * 60_000_000;
    let (secs, micros) = (local.div_euclid(1_000_000), local.rem_euclid(1_000_000));
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        (of_day / 60) % 60,
        of_day % 60
    );
    if micros != 0 {
        if micros % 1000 == 0 {
            out.push_str(&format!(".{:03}", micros / 1000));
        } else {
            out.push_str(&format!(".{micros:06}"));
        }
    }
    if t.offset_minutes == 0 {
        out.push('Z');
    } else {
        let sign = if t.offset_minutes < 0 { '-' } else { '+' };
        let m = t.offset_minutes.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", m / 60, m % 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_and_the_count_is_checked() {
        let t = parse_timestamp("2026-12-07T16:53:11.5+08:00").expect("timestamp");
        let mut w = Writer::new();
        w.text("150102001001");
        w.integer(-42);
        w.float(1.5);
        w.null();
        w.boolean(true);
        w.date(parse_date("2021-07-01").expect("date"));
        w.timestamp(t);
        w.text("网格");
        assert_eq!(w.cells(), 8);
        let bytes = w.into_bytes();
        let cells: Vec<Cell<'_>> = Reader::new(&bytes)
            .collect::<Result<_, _>>()
            .expect("well formed");
        assert_eq!(
            cells,
            vec![
                Cell::Text("150102001001"),
                Cell::Integer(-42),
                Cell::Float(1.5),
                Cell::Null,
                Cell::Boolean(true),
                Cell::Date(18809),
                Cell::Timestamp(t),
                Cell::Text("网格"),
            ]
        );
        assert_eq!(row_starts(&bytes, 4, 2).expect("2 rows").len(), 2);
        assert_eq!(
            row_starts(&bytes, 3, 2),
            Err(BufferError::CellCount {
                expected: 6,
                found: 8
            })
        );
        let mut cut = bytes.clone();
        truncate_rows(&mut cut, 4, 2, 1).expect("truncated");
        assert_eq!(Reader::new(&cut).count(), 4);
    }

    #[test]
    fn malformed_buffers_are_refused_not_misread() {
        assert_eq!(
            Reader::new(&[0x09]).next(),
            Some(Err(BufferError::UnknownTag { at: 0, tag: 9 }))
        );
        assert_eq!(
            Reader::new(&[tag::INTEGER, 1, 2]).next(),
            Some(Err(BufferError::Truncated { at: 0 }))
        );
        // A text length past the end, and one that overflows.
        assert_eq!(
            Reader::new(&[tag::TEXT, 9, 0, 0, 0, b'a']).next(),
            Some(Err(BufferError::Truncated { at: 0 }))
        );
        assert!(matches!(
            Reader::new(&[tag::TEXT, 0xff, 0xff, 0xff, 0xff]).next(),
            Some(Err(BufferError::Truncated { .. }))
        ));
        assert_eq!(
            Reader::new(&[tag::TEXT, 2, 0, 0, 0, 0xc3, 0x28]).next(),
            Some(Err(BufferError::NotUtf8 { at: 0 }))
        );
    }

    #[test]
    fn days_round_trip_over_five_centuries() {
        for days in -200_000..200_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            if (0..=9999).contains(&y) {
                let text = format!("{y:04}-{m:02}-{d:02}");
                assert_eq!(parse_date(&text), Some(days as i32), "{text}");
                assert_eq!(format_date(days as i32), text);
            }
        }
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19782));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "20240101",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_instants_whatever_their_offset() {
        let a = parse_timestamp("2026-12-07T16:53:11+08:00").expect("a");
        let b = parse_timestamp("2026-12-07T08:53:11Z").expect("b");
        let c = parse_timestamp("2026-12-07 03:23:11.000000-05:30").expect("c");
        assert_eq!(a.micros, b.micros);
        assert_eq!(b.micros, c.micros);
        assert_eq!(a.offset_minutes, 480);
        assert_eq!(c.offset_minutes, -330);
        assert_eq!(b.micros, 1_796_633_591_000_000);
        let fine = parse_timestamp("2026-12-07T16:53:11.123456789+08:00").expect("nanos");
        assert_eq!(fine.micros - a.micros, 123_456);
        for (text, shown) in [
            ("2026-12-07T16:53:11+08:00", "2026-12-07T16:53:11+08:00"),
            (
                "2026-12-07T16:53:11.5+08:00",
                "2026-12-07T16:53:11.500+08:00",
            ),
            ("2026-12-07T16:53:11.000+08:00", "2026-12-07T16:53:11+08:00"),
            ("1969-12-31T23:59:59.999999Z", "1969-12-31T23:59:59.999999Z"),
            ("2026-12-07t00:00:00-05:30", "2026-12-07T00:00:00-05:30"),
        ] {
            let t = parse_timestamp(text).expect(text);
            assert_eq!(format_timestamp(t), shown, "{text}");
            assert_eq!(parse_timestamp(shown), Some(t));
        }
        for bad in [
            "2026-12-07T16:53:11",
            "2026-12-07T16:53:11+0800",
            "2026-12-07T24:00:00Z",
            "2026-12-07T16:53:11.Z",
            "2026-12-07T16:53:11.1234567890Z",
            "2026-02-30T00:00:00Z",
            "yesterday",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
