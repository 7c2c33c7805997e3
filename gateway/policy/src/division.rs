//! Division codes and the hierarchy they encode.
//!
//! Codes nest: 2-digit region, 4-digit city, 6-digit district (GB/T 2260),
//! 9-digit street and 12-digit community (the statistical codes), then two
//! digits per grid tier. "Inside division X" is "code starts with X", and a
//! code's ancestors are its prefixes at those lengths. The registry adds
//! what codes cannot say: names, and which divisions exist.

use crate::principal::Level;

/// The convention, for messages that refuse a code.
pub const CONVENTION: &str = "digits only: 2 for a region, 4 a city, 6 a district, 9 a street, 12 a community, then two per grid tier, each code starting with its parent's; 150000 and 150100 stand for 15 and 1501";

/// Lengths of the codes above the grid tiers.
const LENGTHS: [usize; 5] = [2, 4, 6, 9, 12];

/// The level a code's length says it is at, if it is a division code.
pub fn level_of(code: &str) -> Option<Level> {
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match code.len() {
        2 => Some(Level::Region),
        4 => Some(Level::City),
        6 => Some(Level::District),
        9 => Some(Level::Street),
        12 => Some(Level::Community),
        n if n > 12 && n % 2 == 0 && n <= 32 => Some(Level::Grid),
        _ => None,
    }
}

/// The prefix form of a code, the one scope, push-down and the plugin
/// contract use: the six-digit national (GB/T 2260) forms of a region
/// (`150000`) and of a city (`150100`) are aliases of `15` and `1501`;
/// every other code is already in prefix form. (A district's national
/// code never ends in `00`: that suffix names the city itself.)
pub fn canonical(code: &str) -> &str {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        if code.ends_with("0000") {
            return &code[..2];
        }
        if code.ends_with("00") {
            return &code[..4];
        }
    }
    code
}

/// The six-digit national form of a region, city or district code
/// (`15` → `150000`, `1501` → `150100`, `150103` → `150103`); none below.
pub fn national(code: &str) -> Option<String> {
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match code.len() {
        2 => Some(format!("{code}0000")),
        4 => Some(format!("{code}00")),
        6 => Some(code.to_string()),
        _ => None,
    }
}

/// Whether `code` is `ancestor` or inside it.
pub fn is_within(code: &str, ancestor: &str) -> bool {
    code.starts_with(ancestor)
}

/// The ancestors of `code`, outermost first (not `code` itself).
pub fn ancestors(code: &str) -> Vec<&str> {
    let mut out: Vec<&str> = LENGTHS
        .iter()
        .copied()
        .chain((14..=32).step_by(2))
        .take_while(|&n| n < code.len())
        .filter_map(|n| code.get(..n))
        .collect();
    out.dedup();
    out
}

/// The part of `requested` a principal of `jurisdiction` may see: the
/// narrower of the two when one holds the other, nothing when they are
/// disjoint.
pub fn narrow<'a>(requested: &'a str, jurisdiction: &'a str) -> Option<&'a str> {
    if is_within(requested, jurisdiction) {
        Some(requested)
    } else if is_within(jurisdiction, requested) {
        Some(jurisdiction)
    } else {
        None
    }
}

/// Names of the divisions that exist, from the division registry (the
/// city platform's and the districts'), refreshed by the gateway. Sorted
/// by code, so the divisions under one are a range; shared, so a copy
/// (a reload's carry-over, a snapshot) costs nothing at a million codes.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    names: std::sync::Arc<std::collections::BTreeMap<String, String>>,
    /// When it was fetched, and whether every source answered.
    fetched: Option<(std::time::SystemTime, bool)>,
}

impl Registry {
    pub fn from_names(names: impl IntoIterator<Item = (String, String)>) -> Registry {
        Registry {
            names: std::sync::Arc::new(names.into_iter().collect()),
            fetched: None,
        }
    }

    /// The same registry, stamped with when it was fetched.
    pub fn fetched_at(mut self, at: std::time::SystemTime, complete: bool) -> Registry {
        self.fetched = Some((at, complete));
        self
    }

    /// When it was fetched, and whether completely (`None`: never).
    pub fn fetched(&self) -> Option<(std::time::SystemTime, bool)> {
        self.fetched
    }

    pub fn name(&self, code: &str) -> Option<&str> {
        self.names.get(code).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The codes of length `len` inside `ancestor`, sorted: a range of the
    /// registry, not a scan of it.
    pub fn within(&self, ancestor: &str, len: usize) -> Vec<String> {
        self.names
            .range::<str, _>((
                std::ops::Bound::Included(ancestor),
                std::ops::Bound::Unbounded,
            ))
            .map(|(code, _)| code)
            .take_while(|code| code.starts_with(ancestor))
            .filter(|code| code.len() == len)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_forms_are_aliases_of_the_prefix_forms() {
        assert_eq!(canonical("150000"), "15");
        assert_eq!(canonical("150100"), "1501");
        assert_eq!(canonical("150103"), "150103");
        assert_eq!(canonical("1501"), "1501");
        assert_eq!(canonical("150103001"), "150103001");
        assert_eq!(canonical("15010A"), "15010A");
        for code in ["15", "1501", "150103"] {
            let n = national(code).expect("a national form");
            assert_eq!(n.len(), 6);
            assert_eq!(canonical(&n), code);
        }
        assert_eq!(national("150103001"), None);
    }

    #[test]
    fn levels_from_code_lengths() {
        assert_eq!(level_of("15"), Some(Level::Region));
        assert_eq!(level_of("1501"), Some(Level::City));
        assert_eq!(level_of("150103"), Some(Level::District));
        assert_eq!(level_of("150103001"), Some(Level::Street));
        assert_eq!(level_of("150103001001"), Some(Level::Community));
        assert_eq!(level_of("15010300100101"), Some(Level::Grid));
        assert_eq!(level_of("1501030"), None);
        assert_eq!(level_of("15'--"), None);
    }

    #[test]
    fn ancestors_are_the_prefixes_at_level_lengths() {
        assert_eq!(
            ancestors("1501030010010102"),
            vec![
                "15",
                "1501",
                "150103",
                "150103001",
                "150103001001",
                "15010300100101"
            ]
        );
        assert_eq!(ancestors("15"), Vec::<&str>::new());
    }

    #[test]
    fn narrowing_takes_the_inner_division_or_nothing() {
        assert_eq!(narrow("150103", "150103001"), Some("150103001"));
        assert_eq!(narrow("150103001", "150103"), Some("150103001"));
        assert_eq!(narrow("150105", "150103"), None);
    }
}
