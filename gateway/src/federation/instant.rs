//! Time as time: a timestamp filter is an instant, whatever offset and
//! precision the caller wrote it in, and rows are compared with it as
//! instants. Sources store timestamps as text in their own form
//! (`2026-12-07T16:53:11+08:00`, `…11.851+08:00`, `…08:53:11Z`), which
//! sort as text only within one form; compared as text, `Z` against
//! `+08:00` picks the wrong rows silently.

use lianqiao_host::contract::{FilterOp, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// Parse an RFC 3339 timestamp (any offset, any precision).
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The one form timestamps leave in: UTC, `Z`, and only the fractional
/// digits the instant needs (`2026-12-07T08:53:11Z`,
/// `2026-12-07T08:53:11.5Z`).
pub fn canonical(instant: OffsetDateTime) -> String {
    let utc = instant.to_offset(UtcOffset::UTC);
    let (year, month, day) = (utc.year(), u8::from(utc.month()), utc.day());
    let (hour, minute, second, nanos) = (utc.hour(), utc.minute(), utc.second(), utc.nanosecond());
    let mut out = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
    if nanos > 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// How far a source's text, compared as text, can be from the instant it
/// means: its local wall clock differs from UTC by at most 14 hours, and
/// a day covers that with room for precision differences.
const TEXT_MARGIN: Duration = Duration::days(1);

/// What to push to a source for a timestamp range filter: the bound
/// widened by a day, so that a source comparing its text with it (in
/// whatever form it stores) returns every row the exact filter keeps and
/// some more; the gateway then applies the exact filter to those
/// (`federation::filter`). `None`: push nothing (equality and lists are
/// applied here only: no text form of an instant matches every other).
pub fn widened(op: FilterOp, bound: &Value) -> Option<Value> {
    let Value::Timestamp(text) = bound else {
        return None;
    };
    let instant = parse(text)?;
    let widened = match op {
        FilterOp::Gte => instant.checked_sub(TEXT_MARGIN)?,
        FilterOp::Lte => instant.checked_add(TEXT_MARGIN)?,
        _ => return None,
    };
    Some(Value::Timestamp(canonical(widened)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_instant_in_many_forms_is_one_value() {
        let forms = [
            "2026-12-07T08:53:11.5Z",
            "2026-12-07T16:53:11.500+08:00",
            "2026-12-07T16:53:11.500000+08:00",
            "2026-12-07t08:53:11.5z",
            "2026-12-06T20:53:11.5-12:00",
        ];
        for form in forms {
            assert_eq!(
                parse(form).map(canonical).as_deref(),
                Some("2026-12-07T08:53:11.5Z"),
                "{form}"
            );
        }
        for bad in [
            "yesterday",
            "2026-12-07",
            "2026-12-07 08:53:11",
            "2026-13-01T00:00:00Z",
            "2026-12-07T08:53:11",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    /// An instant, written with a random offset and precision, as a
    /// source or a client might.
    fn written(seconds: i64, nanos: u32, offset_minutes: i16, digits: usize) -> String {
        let instant = OffsetDateTime::from_unix_timestamp(seconds)
            .unwrap()
            .replace_nanosecond(nanos)
            .unwrap();
        let offset = UtcOffset::from_whole_seconds(i32::from(offset_minutes) * 60).unwrap();
        let local = instant.to_offset(offset);
        let fraction = if digits == 0 {
            String::new()
        } else {
            format!(".{}", &format!("{:09}", local.nanosecond())[..digits])
        };
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let (h, m) = (
            offset_minutes.unsigned_abs() / 60,
            offset_minutes.unsigned_abs() % 60,
        );
        let zone = if offset_minutes == 0 && digits.is_multiple_of(2) {
            "Z".to_string()
        } else {
            format!("{sign}{h:02}:{m:02}")
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{zone}",
            local.year(),
            u8::from(local.month()),
            local.day(),
            local.hour(),
            local.minute(),
            local.second()
        )
    }

    proptest! {
        /// Against the oracle (the instants themselves, truncated to what
        /// each text says): a row passes `gte`/`lte` exactly when its
        /// instant does, and the widened bound a source gets never drops a
        /// row the exact filter keeps, compared as text in any form.
        #[test]
        fn filters_compare_instants_and_widened_bounds_lose_nothing(
            row_s in 1_700_000_000i64..1_900_000_000,
            delta in -200_000i64..200_000,
            row_nanos in 0u32..1_000_000_000,
            bound_nanos in 0u32..1_000_000_000,
            row_offset in -720i16..=840,
            bound_offset in -720i16..=840,
            row_digits in 0usize..=9,
            bound_digits in 0usize..=9,
        ) {
            let row = written(row_s, row_nanos, row_offset, row_digits);
            let bound = written(row_s + delta, bound_nanos, bound_offset, bound_digits);
            let (r, b) = (parse(&row).unwrap(), parse(&bound).unwrap());
            for op in [FilterOp::Gte, FilterOp::Lte] {
                let keeps = match op {
                    FilterOp::Gte => r >= b,
                    _ => r <= b,
                };
                let pushed = widened(op, &Value::Timestamp(bound.clone())).unwrap();
                let Value::Timestamp(pushed) = pushed else { unreachable!() };
                let text_passes = match op {
                    FilterOp::Gte => row.as_str() >= pushed.as_str(),
                    _ => row.as_str() <= pushed.as_str(),
                };
                prop_assert!(!keeps || text_passes, "{row} {op:?} {bound}: pushed {pushed} drops it");
            }
        }
    }
}
