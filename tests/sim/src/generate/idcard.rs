//! Resident ID numbers (GB 11643-1999): 6-digit county code, birth date,
//! 3-digit sequence (odd for men, even for women), ISO 7064 MOD 11-2 check.

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// The check character of the first 17 digits.
pub fn check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    Some(CHECK[(sum % 11) as usize] as char)
}

/// A full 18-character ID number.
pub fn id_number(county: &str, birth_yyyymmdd: &str, sequence: u32, male: bool) -> String {
    // The sequence's last digit carries the sex.
    let seq = (sequence % 500) * 2 + u32::from(male);
    let first17 = format!("{county}{birth_yyyymmdd}{seq:03}");
    let check = check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// True when `id` is 18 characters with a correct check character.
pub fn is_valid(id: &str) -> bool {
    id.len() == 18 && check_char(&id[..17]).is_some_and(|c| id.ends_with(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_check_digits() {
        // The standard's own example.
        assert_eq!(check_char("11010519491231002"), Some('X'));
        assert!(is_valid("11010519491231002X"));
        assert!(!is_valid("110105194912310021"));
    }

    #[test]
    fn sex_is_in_the_sequence() {
        let man = id_number("150103", "19800101", 7, true);
        let woman = id_number("150103", "19800101", 7, false);
        assert!(is_valid(&man) && is_valid(&woman));
        assert_eq!((man.as_bytes()[16] - b'0') % 2, 1);
        assert_eq!((woman.as_bytes()[16] - b'0') % 2, 0);
        assert!(man.starts_with("15010319800101"));
    }
}
