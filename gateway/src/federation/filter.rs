//! Filters the gateway applies itself, to rows from sources that cannot
//! push them down.

use std::cmp::Ordering;

use lianqiao_host::contract::{FilterOp, Value};

use super::FieldFilter;

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => Some(s),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

/// Order two values of comparable kinds; `None` for null or mixed kinds.
/// A timestamp compares as an instant (`2026-12-07T08:53:11Z` equals
/// `2026-12-07T16:53:11+08:00`); text that is not one matches nothing.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Boolean(x), Value::Boolean(y)) => Some(x.cmp(y)),
        (Value::Timestamp(_), _) | (_, Value::Timestamp(_)) => {
            Some(super::instant::parse(text(a)?)?.cmp(&super::instant::parse(text(b)?)?))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => Some(text(a)?.cmp(text(b)?)),
        },
    }
}

/// Does `value` (absent = null) pass `filter`? Null passes nothing, as in SQL.
pub fn matches(filter: &FieldFilter, value: Option<&Value>) -> bool {
    let Some(value) = value.filter(|v| !matches!(v, Value::Null)) else {
        return false;
    };
    let first = filter.values.first();
    match filter.op {
        FilterOp::Eq => first.and_then(|f| compare(value, f)) == Some(Ordering::Equal),
        FilterOp::Gte => first
            .and_then(|f| compare(value, f))
            .is_some_and(|o| o != Ordering::Less),
        FilterOp::Lte => first
            .and_then(|f| compare(value, f))
            .is_some_and(|o| o != Ordering::Greater),
        FilterOp::OneOf => filter
            .values
            .iter()
            .any(|f| compare(value, f) == Some(Ordering::Equal)),
        FilterOp::Prefix => match (text(value), first.and_then(text)) {
            (Some(v), Some(p)) => v.starts_with(p),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GRIDS;

    fn f(op: FilterOp, values: Vec<Value>) -> FieldFilter {
        FieldFilter {
            field: &GRIDS.fields[0],
            op,
            values,
        }
    }

    /// Before: compared as text, `…08:53:11.500Z` sorted after
    /// `…16:53:11+08:00` (an earlier instant) and the same instant
    /// written with `Z` and `+08:00` matched differently.
    #[test]
    fn timestamps_compare_as_instants() {
        let ts = |s: &str| Value::Timestamp(s.into());
        let bound = ts("2026-12-07T08:53:11.500Z");
        let earlier = ts("2026-12-07T16:53:11+08:00");
        let same = ts("2026-12-07T16:53:11.5+08:00");
        let later = ts("2026-12-07T16:53:11.851+08:00");
        assert!(!matches(
            &f(FilterOp::Gte, vec![bound.clone()]),
            Some(&earlier)
        ));
        assert!(matches(&f(FilterOp::Gte, vec![bound.clone()]), Some(&same)));
        assert!(matches(&f(FilterOp::Eq, vec![bound.clone()]), Some(&same)));
        assert!(matches(
            &f(FilterOp::Gte, vec![bound.clone()]),
            Some(&later)
        ));
        assert!(matches(
            &f(FilterOp::Lte, vec![bound.clone()]),
            Some(&earlier)
        ));
        // A source's text that is no timestamp matches no time filter.
        assert!(!matches(
            &f(FilterOp::Lte, vec![bound]),
            Some(&Value::Text("昨天".into()))
        ));
    }

    #[test]
    fn operators() {
        let t = |s: &str| Value::Text(s.into());
        assert!(matches(&f(FilterOp::Eq, vec![t("a")]), Some(&t("a"))));
        assert!(!matches(&f(FilterOp::Eq, vec![t("a")]), Some(&t("b"))));
        assert!(matches(
            &f(FilterOp::Gte, vec![Value::Integer(3)]),
            Some(&Value::Integer(3))
        ));
        assert!(!matches(
            &f(FilterOp::Lte, vec![Value::Integer(3)]),
            Some(&Value::Float(3.5))
        ));
        assert!(matches(
            &f(FilterOp::OneOf, vec![t("a"), t("b")]),
            Some(&t("b"))
        ));
        assert!(matches(
            &f(FilterOp::Prefix, vec![t("1501")]),
            Some(&t("150103"))
        ));
        assert!(!matches(&f(FilterOp::Eq, vec![t("a")]), None));
        assert!(!matches(&f(FilterOp::Eq, vec![t("a")]), Some(&Value::Null)));
        assert!(!matches(
            &f(FilterOp::Eq, vec![t("1")]),
            Some(&Value::Integer(1))
        ));
    }
}
