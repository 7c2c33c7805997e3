//! Ids and times the gateway gives new cases and steps.

/// Local time in Inner Mongolia, as the districts record it, to the
/// millisecond (steps of one case can come within a second).
pub fn local_now() -> String {
    let t = std::time::SystemTime::now() + std::time::Duration::from_secs(8 * 3600);
    let utc = crate::telemetry::rfc3339(t);
    format!("{}+08:00", utc.trim_end_matches('Z'))
}

/// A step's id: the case's, then a short unique suffix (district tables
/// keep ids in narrow columns).
pub fn new_step_id(case: &str) -> String {
    use rand::RngCore;
    // Microseconds (wrapping every ~12 days) order a case's steps taken
    // within one millisecond of each other.
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
        % (1 << 40);
    let mut tail = [0u8; 1];
    rand::rng().fill_bytes(&mut tail);
    format!("{case}.{micros:010x}{}", hex::encode(tail))
}

/// A new case's id: its district, then a digest of who opened it under
/// which idempotency key (the same request, retried, names the same case).
pub fn case_id(division: &str, principal: &str, idempotency_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    sha.update(principal.as_bytes());
    sha.update([0]);
    sha.update(idempotency_key.as_bytes());
    let district = &division[..division.len().min(6)];
    format!("{district}-G{}", &hex::encode(sha.finalize())[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_id_follows_from_its_caller_and_key_only() {
        let a = case_id("15010300100101", "grid-1", "k");
        assert_eq!(a, case_id("15010300100102", "grid-1", "k"));
        assert!(a.starts_with("150103-G") && a.len() == 32, "{a}");
        assert_ne!(a, case_id("15010300100101", "grid-2", "k"));
        assert_ne!(a, case_id("15010300100101", "grid-1", "k2"));
    }
}
