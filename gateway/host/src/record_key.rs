//! Record keys (contract 0.3): what a count's digest is made of.
//!
//! A record's key is the first four bytes of the MD5 digest of its `id`,
//! read big-endian. MD5 here is a checksum every SQL engine the districts
//! run already has (`md5()` in PostgreSQL and MariaDB; the host registers
//! `lq_record_key` on its SQLite connections), so a source can sum its
//! records' keys in the same `GROUP BY` that counts them. Nothing rests on
//! the keys being secret: the gateway draws a count's noise from the digest
//! with a key of its own that no plugin or database sees.

use md5::{Digest, Md5};

/// The key of the record with this `id`.
pub fn record_key(id: &str) -> u32 {
    key_of(id.as_bytes())
}

/// The same, over the raw UTF-8 bytes (SQLite hands text over as bytes).
pub(crate) fn key_of(bytes: &[u8]) -> u32 {
    let digest = Md5::digest(bytes);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_md5_prefix_every_sql_engine_computes() {
        // md5('15010300100101') = 1f517722…; PostgreSQL
        // ('x' || lpad(substr(md5(id), 1, 8), 16, '0'))::bit(64)::bigint and
        // MariaDB CAST(CONV(SUBSTRING(MD5(id), 1, 8), 16, 10) AS UNSIGNED)
        // both give 525432610 (checked by tests/e2e `differencing.rs` against
        // the real engines).
        assert_eq!(record_key("15010300100101"), 0x1f51_7722);
        assert_eq!(record_key("15010300100101"), 525_432_610);
        assert_ne!(record_key("a"), record_key("b"));
    }
}
