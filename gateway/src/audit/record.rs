//! One audit record per request, and the hash that chains it to the last.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the gateway did for one request. Its JSON form is what the chain
/// hashes, so fields are only ever added at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UTC, RFC 3339 with milliseconds.
    pub at: String,
    /// Also in the response's `X-Request-Id`.
    pub request_id: String,
    /// `anonymous` when no credential was accepted.
    pub principal: String,
    pub level: String,
    pub division: String,
    pub purpose: String,
    /// `jwt:<issuer>` or `api-key`.
    pub via: String,
    pub method: String,
    pub route: String,
    /// The query string as asked (filters included).
    pub query: String,
    /// The scope the policy allowed, if it got that far.
    pub scope: String,
    pub sources: Vec<String>,
    pub rows: u64,
    /// Fields returned, by class.
    pub fields: BTreeMap<String, Vec<String>>,
    /// Cells masked in the response.
    pub masked: u64,
    /// Fields withheld from the response.
    pub withheld: Vec<String>,
    /// Rows a source returned outside the scope, dropped after the merge.
    pub dropped: u64,
    /// `allow`, `deny`, `unauthenticated` or `invalid`.
    pub decision: String,
    pub policies: Vec<String>,
    pub policy_version: String,
    pub status: u16,
    /// A case write: the case, its source, the move, the idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<crate::disclosure::WriteFacts>,
    /// The resource asked about (`members`, `cases`; a statistic's
    /// resource), for searching the trail by resource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
}

impl AuditRecord {
    /// Whether the response carried records (not just counts or an error).
    pub fn carries_records(&self) -> bool {
        self.rows > 0 || self.write.is_some()
    }
}

/// The hash of record `seq` of `chain`, given the previous record's hash.
pub fn chain_hash(chain: &str, seq: i64, prev_hash: &str, body: &str) -> String {
    let mut h = Sha256::new();
    for part in [chain, &seq.to_string(), prev_hash, body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The first record's `prev_hash`.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub use crate::telemetry::{now_rfc3339, rfc3339};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }

    #[test]
    fn the_hash_covers_every_part() {
        let h = chain_hash("main", 1, GENESIS, "{}");
        assert_ne!(h, chain_hash("main", 2, GENESIS, "{}"));
        assert_ne!(h, chain_hash("other", 1, GENESIS, "{}"));
        assert_ne!(h, chain_hash("main", 1, &h, "{}"));
        assert_ne!(h, chain_hash("main", 1, GENESIS, "{ }"));
    }
}
