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

/// Whether `ancestor` is `code` or one of `ancestors(code)`, without
/// building the chain (the policy's decision cache asks this per row).
pub fn is_self_or_ancestor(ancestor: &str, code: &str) -> bool {
    let n = ancestor.len();
    ancestor == code
        || (n < code.len()
            && code.starts_with(ancestor)
            && (LENGTHS.contains(&n) || ((14..=32).contains(&n) && n.is_multiple_of(2))))
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
/// city platforms' and the districts'), refreshed by the gateway.
///
/// A region's registry holds a few hundred thousand to a million codes, so
/// it is kept compact: every code and name in one text buffer and a sorted
/// index of 12-byte entries into it (about 70 bytes a division instead of
/// the ~600 a map of two `String`s costs once allocator overhead is
/// counted), two allocations to build and to free. Sorted by code, so the
/// divisions under one are a range; shared, so a copy (a reload's
/// carry-over, a snapshot) costs nothing.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    names: std::sync::Arc<Compact>,
    /// When it was fetched, and whether every source answered.
    fetched: Option<(std::time::SystemTime, bool)>,
}

#[derive(Debug, Default)]
struct Compact {
    text: String,
    /// Sorted by code; one per code.
    entries: Vec<Entry>,
}

/// A code and its name, as places in `Compact::text`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    code: u32,
    name: u32,
    code_len: u16,
    name_len: u16,
}

impl Compact {
    fn code(&self, e: &Entry) -> &str {
        self.text
            .get(e.code as usize..e.code as usize + e.code_len as usize)
            .unwrap_or("")
    }

    fn name(&self, e: &Entry) -> &str {
        self.text
            .get(e.name as usize..e.name as usize + e.name_len as usize)
            .unwrap_or("")
    }

    /// The first entry whose code is not below `code`.
    fn lower_bound(&self, code: &str) -> usize {
        self.entries.partition_point(|e| self.code(e) < code)
    }
}

/// Builds a [`Registry`] one (code, name) at a time, without a `String`
/// per value.
#[derive(Debug, Default)]
pub struct RegistryBuilder {
    names: Compact,
}

impl RegistryBuilder {
    /// Add a division; of two entries for one code the first is kept. A
    /// code or name past 64 KiB, or a registry past 4 GiB of text, is
    /// left out (no real one comes near).
    pub fn push(&mut self, code: &str, name: &str) {
        let at = self.names.text.len();
        let (Ok(code_len), Ok(name_len), Ok(code_at), Ok(name_at)) = (
            u16::try_from(code.len()),
            u16::try_from(name.len()),
            u32::try_from(at),
            u32::try_from(at + code.len()),
        ) else {
            return;
        };
        self.names.text.push_str(code);
        self.names.text.push_str(name);
        self.names.entries.push(Entry {
            code: code_at,
            name: name_at,
            code_len,
            name_len,
        });
    }

    pub fn build(mut self) -> Registry {
        let names = &mut self.names;
        let text = std::mem::take(&mut names.text);
        let view = Compact {
            text,
            entries: Vec::new(),
        };
        let mut entries = std::mem::take(&mut names.entries);
        // Stable: of equal codes the first pushed stays first, and is kept.
        entries.sort_by(|a, b| view.code(a).cmp(view.code(b)));
        entries.dedup_by(|later, first| view.code(later) == view.code(first));
        entries.shrink_to_fit();
        let mut text = view.text;
        text.shrink_to_fit();
        Registry {
            names: std::sync::Arc::new(Compact { text, entries }),
            fetched: None,
        }
    }
}

impl Registry {
    pub fn from_names(names: impl IntoIterator<Item = (String, String)>) -> Registry {
        let mut builder = RegistryBuilder::default();
        for (code, name) in names {
            builder.push(&code, &name);
        }
        builder.build()
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
        let n = &self.names;
        let i = n.lower_bound(code);
        n.entries
            .get(i)
            .filter(|e| n.code(e) == code)
            .map(|e| n.name(e))
    }

    pub fn len(&self) -> usize {
        self.names.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.entries.is_empty()
    }

    /// Bytes it holds (its text and index), for operators.
    pub fn bytes(&self) -> usize {
        self.names.text.capacity() + self.names.entries.capacity() * std::mem::size_of::<Entry>()
    }

    /// The codes of length `len` inside `ancestor`, sorted: a range of the
    /// registry, not a scan of it.
    pub fn within(&self, ancestor: &str, len: usize) -> Vec<String> {
        let n = &self.names;
        n.entries[n.lower_bound(ancestor)..]
            .iter()
            .map(|e| n.code(e))
            .take_while(|code| code.starts_with(ancestor))
            .filter(|code| code.len() == len)
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_or_ancestor_agrees_with_the_chain() {
        let codes = [
            "15",
            "1501",
            "150103",
            "150103001",
            "150103001001",
            "15010300100101",
            "1501030010010101",
            "150103001001010101",
            "15010300100101010101",
            "1502",
            "150103002",
            "15010300100102",
        ];
        for code in codes {
            for other in codes {
                let chain = ancestors(code);
                assert_eq!(
                    is_self_or_ancestor(other, code),
                    other == code || chain.contains(&other),
                    "{other} of {code}"
                );
            }
            // A prefix that is no division's length is no ancestor.
            if code.len() > 3 {
                assert!(!is_self_or_ancestor(&code[..3], code));
            }
        }
    }

    #[test]
    fn the_registry_finds_names_and_ranges_and_keeps_the_first_of_two() {
        let r = Registry::from_names([
            ("150103001".to_string(), "新华西路街道".to_string()),
            ("150103".to_string(), "回民区".to_string()),
            ("150103001001".to_string(), "西落凤街社区".to_string()),
            ("150103".to_string(), "another name".to_string()),
            ("150104".to_string(), "玉泉区".to_string()),
            ("150103002".to_string(), "中山西路街道".to_string()),
        ]);
        assert_eq!(r.len(), 5);
        assert_eq!(r.name("150103"), Some("回民区"), "the first of two is kept");
        assert_eq!(r.name("150103001001"), Some("西落凤街社区"));
        assert_eq!(r.name("1501030"), None);
        assert_eq!(r.within("150103", 9), ["150103001", "150103002"]);
        assert_eq!(r.within("1501", 6), ["150103", "150104"]);
        assert!(r.within("1502", 6).is_empty());
        assert!(r.bytes() < 200);
    }

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
