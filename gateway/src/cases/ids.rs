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

/// A new id, unique without coordination: time, then randomness.
pub fn new_id(prefix: &str) -> String {
    use rand::RngCore;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut tail = [0u8; 4];
    rand::rng().fill_bytes(&mut tail);
    format!("{prefix}{nanos:x}{}", hex::encode(tail))
}
