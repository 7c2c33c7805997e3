//! Page cursors: every source's position, signed so a client can neither
//! forge a position nor replay a cursor against another query.
//!
//! A position is the source's own cursor at the start of the page it was
//! last read from, plus how many of that page's rows were consumed. That
//! works for any source (keyset or page-numbered) and never skips a row.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC tag carried in a cursor.
const TAG_LEN: usize = 16;

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

/// The state behind a cursor. Sources missing from `positions` are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    #[serde(rename = "q")]
    pub fingerprint: String,
    #[serde(rename = "s")]
    pub positions: BTreeMap<String, SourcePosition>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("the cursor is malformed; pass `next_cursor` from the previous page unchanged")]
    Malformed,
    #[error("the cursor's signature does not match; it was altered or issued by another gateway")]
    Forged,
    #[error("the cursor belongs to a different query; repeat the original filters with it")]
    OtherQuery,
}

/// Signs and checks cursors with the gateway's key.
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorCodec(..)")
    }
}

/// Short hex digest, for fingerprints.
pub fn digest(text: &str) -> String {
    hex_prefix(&Sha256::digest(text.as_bytes()), 12)
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

impl CursorCodec {
    pub fn new(key: &[u8]) -> Self {
        CursorCodec { key: key.to_vec() }
    }

    fn tag(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return vec![0; TAG_LEN],
        };
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_LEN].to_vec()
    }

    pub fn encode(&self, state: &CursorState) -> String {
        let payload = serde_json::to_vec(state).unwrap_or_default();
        let tag = self.tag(&payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    pub fn decode(&self, token: &str, fingerprint: &str) -> Result<CursorState, CursorError> {
        let (payload, tag) = token.split_once('.').ok_or(CursorError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| CursorError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CursorError::Malformed)?;
        if tag.len() != TAG_LEN {
            return Err(CursorError::Forged);
        }
        let mut mac = HmacSha256::new_from_slice(&self.key).map_err(|_| CursorError::Forged)?;
        mac.update(&payload);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&tag)
            .map_err(|_| CursorError::Forged)?;
        let state: CursorState =
            serde_json::from_slice(&payload).map_err(|_| CursorError::Malformed)?;
        if state.fingerprint != fingerprint {
            return Err(CursorError::OtherQuery);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CursorState {
        let mut positions = BTreeMap::new();
        positions.insert(
            "huimin".to_string(),
            SourcePosition {
                cursor: Some("[\"150103001\",\"x\"]".into()),
                skip: 3,
            },
        );
        CursorState {
            fingerprint: "abc".into(),
            positions,
        }
    }

    #[test]
    fn round_trip() {
        let codec = CursorCodec::new(b"k");
        let token = codec.encode(&state());
        assert_eq!(codec.decode(&token, "abc").unwrap(), state());
    }

    #[test]
    fn tampering_is_detected() {
        let codec = CursorCodec::new(b"k");
        let token = codec.encode(&state());
        let (payload, tag) = token.split_once('.').unwrap();
        let mut forged_state = state();
        forged_state.positions.get_mut("huimin").unwrap().skip = 0;
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_state).unwrap())
        );
        assert_ne!(payload, forged.split_once('.').unwrap().0);
        assert_eq!(codec.decode(&forged, "abc"), Err(CursorError::Forged));
        assert_eq!(
            CursorCodec::new(b"other").decode(&token, "abc"),
            Err(CursorError::Forged)
        );
        assert_eq!(codec.decode("garbage", "abc"), Err(CursorError::Malformed));
        assert_eq!(codec.decode(&token, "xyz"), Err(CursorError::OtherQuery));
    }
}
