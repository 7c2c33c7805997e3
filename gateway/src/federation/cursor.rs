//! Page positions: every source's place in a federated listing.
//!
//! A position is the source's own cursor at the start of the page it was
//! last read from, plus how many of that page's rows were consumed. That
//! works for any source (keyset or page-numbered) and never skips a row.
//! The state leaves the gateway only sealed by the disclosure gate
//! (`disclosure::seal`): encrypted, bound to its query and its caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where one source stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The source's cursor for the page to read next.
    #[serde(rename = "c", skip_serializing_if = "Option::is_none", default)]
    pub cursor: Option<String>,
    /// Rows of that page already returned.
    #[serde(rename = "k", skip_serializing_if = "is_zero", default)]
    pub skip: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The state behind a cursor: only the sources that stand mid-way.
///
/// Sources are started in the order of their floor (the smallest division
/// they can hold for the query) and name, so the cursor names the last one
/// started; a source up to it that is missing from `positions` is done,
/// one after it not started yet. However many sources a region query
/// spans, the cursor holds the one or two it is in the middle of (a
/// cursor from before `started` existed reads as "every source started").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// The query it continues (`ListRequest::fingerprint`).
    #[serde(rename = "q")]
    pub fingerprint: String,
    #[serde(rename = "s")]
    pub positions: BTreeMap<String, SourcePosition>,
    /// (floor, name) of the last source started.
    #[serde(rename = "t", skip_serializing_if = "Option::is_none", default)]
    pub started: Option<(String, String)>,
}

/// Short hex digest, for fingerprints.
pub fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}
