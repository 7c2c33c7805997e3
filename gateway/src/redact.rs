//! What a failure may say in the operator's log. Part of the disclosure
//! gate's work, kept below everything so the federation's and the health
//! checks' logs use it too; what callers are told is
//! `crate::error::public_message`.
//!
//! A caller learns which source failed and the kind of failure, in the
//! gateway's own words ([`public`]); never the plugin's text, which may
//! quote a cell of a record the caller may not see (a database's cast
//! error on a phone number, a contract error naming a row id that is an
//! ID number). The operator's log gets the full text after [`mask_text`]:
//! digit runs and Chinese names are masked the way the policy masks them.

use lianqiao_host::PluginError;

/// The whole failure for the operator's log, masked and bounded.
pub fn operator(e: &PluginError) -> String {
    mask_text(&e.to_string())
}

/// Longest free text kept in a log line.
const MAX_CHARS: usize = 300;

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' | '\u{f900}'..='\u{faff}')
}

/// Mask what may identify a person in free text: every run of 6 or more
/// digits (ID numbers, phones, with an ID number's final `X`) keeps its
/// first three characters, and every run of Chinese characters keeps its
/// first (`张*`, as the name mask does: a name cannot be told from other
/// words, so all are masked). Bounded to a few hundred characters.
pub fn mask_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().take(MAX_CHARS).collect();
    let mut out = String::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || matches!(chars[j], 'X' | 'x')) {
                j += 1;
            }
            let digits = chars[i..j].iter().filter(|c| c.is_ascii_digit()).count();
            if digits >= 6 {
                out.extend(&chars[i..i + 3]);
                out.extend(std::iter::repeat_n('*', j - i - 3));
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else if is_cjk(c) {
            out.push(c);
            i += 1;
            while i < chars.len() && is_cjk(chars[i]) {
                out.push('*');
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_id_numbers_phones_and_names() {
        let masked = mask_text(
            "CAST failed on '15010319850312123X' for 张三丰 (13812345678), row 42 of 2026",
        );
        assert!(!masked.contains("15010319850312123X"), "{masked}");
        assert!(masked.contains("150***************"), "{masked}");
        assert!(!masked.contains("13812345678") && masked.contains("138********"));
        assert!(
            masked.contains("张**") && !masked.contains("三丰"),
            "{masked}"
        );
        assert!(
            masked.contains("row 42 of 2026"),
            "short numbers stay: {masked}"
        );
        assert!(mask_text(&"9".repeat(1000)).chars().count() <= MAX_CHARS + 1);
    }
}
