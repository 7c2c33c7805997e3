//! Masks for personal data, as `config/fields.toml` names them.

use serde::{Deserialize, Serialize};

/// How a field is shown to a caller who may see it only masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mask {
    /// `张*`, `欧阳**`: the surname's first character stays.
    Name,
    /// `138****1234`: the carrier prefix and the last four digits stay.
    Phone,
    /// `150103********123X`: the issuing district and the last four stay.
    IdNumber,
    /// `内蒙古呼和浩****`: the first six characters stay.
    Address,
    /// `1985-**-**`: the year stays.
    Date,
    /// No masked form: masked means withheld.
    Withhold,
}

impl Mask {
    pub fn parse(text: &str) -> Option<Mask> {
        Some(match text {
            "name" => Mask::Name,
            "phone" => Mask::Phone,
            "id-number" => Mask::IdNumber,
            "address" => Mask::Address,
            "date" => Mask::Date,
            "withhold" => Mask::Withhold,
            _ => return None,
        })
    }

    /// The name `fields.toml` gives it (what [`Mask::parse`] reads).
    pub fn as_str(self) -> &'static str {
        match self {
            Mask::Name => "name",
            Mask::Phone => "phone",
            Mask::IdNumber => "id-number",
            Mask::Address => "address",
            Mask::Date => "date",
            Mask::Withhold => "withhold",
        }
    }

    pub const NAMES: &'static str = "name, phone, id-number, address, date, withhold";

    /// The masked form of `value`, or `None` when it must be withheld.
    /// Every form hides at least one character and never the whole value's
    /// length in a way that keeps it readable.
    pub fn apply(self, value: &str) -> Option<String> {
        let chars: Vec<char> = value.chars().collect();
        let n = chars.len();
        let keep = |head: usize, tail: usize| -> String {
            if n <= head + tail {
                return "*".repeat(n.max(1));
            }
            let mut out: String = chars[..head].iter().collect();
            out.push_str(&"*".repeat(n - head - tail));
            out.extend(&chars[n - tail..]);
            out
        };
        match self {
            Mask::Name => Some(if n <= 1 { "*".to_string() } else { keep(1, 0) }),
            Mask::Phone => Some(keep(3, 4)),
            Mask::IdNumber => Some(keep(6, 4)),
            Mask::Address => Some(keep(6.min(n.saturating_sub(1)), 0)),
            Mask::Date => Some(match value.get(..4) {
                Some(year) if n >= 8 && value.is_char_boundary(4) => format!("{year}-**-**"),
                _ => "*".repeat(n.max(1)),
            }),
            Mask::Withhold => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_serialised_form() {
        for mask in [
            Mask::Name,
            Mask::Phone,
            Mask::IdNumber,
            Mask::Address,
            Mask::Date,
            Mask::Withhold,
        ] {
            assert_eq!(Mask::parse(mask.as_str()), Some(mask));
            assert_eq!(serde_json::to_value(mask).ok(), Some(mask.as_str().into()));
        }
    }

    #[test]
    fn the_conventional_forms() {
        assert_eq!(Mask::Name.apply("张伟").as_deref(), Some("张*"));
        assert_eq!(Mask::Name.apply("欧阳娜娜").as_deref(), Some("欧***"));
        assert_eq!(
            Mask::Phone.apply("13812341234").as_deref(),
            Some("138****1234")
        );
        assert_eq!(
            Mask::IdNumber.apply("15010319850312123X").as_deref(),
            Some("150103********123X")
        );
        assert_eq!(
            Mask::Date.apply("1985-03-12").as_deref(),
            Some("1985-**-**")
        );
        assert_eq!(
            Mask::Address
                .apply("呼和浩特市回民区新华西路8号")
                .as_deref(),
            Some("呼和浩特市回********")
        );
        assert_eq!(Mask::Withhold.apply("汉族"), None);
    }

    #[test]
    fn short_values_are_hidden_whole() {
        assert_eq!(Mask::Phone.apply("110").as_deref(), Some("***"));
        assert_eq!(Mask::IdNumber.apply("").as_deref(), Some("*"));
        assert_eq!(Mask::Name.apply("张").as_deref(), Some("*"));
        assert_eq!(Mask::Date.apply("85").as_deref(), Some("**"));
    }
}
