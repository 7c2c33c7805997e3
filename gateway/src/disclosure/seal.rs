//! Sealed cursors: a page cursor leaves the gateway encrypted and
//! authenticated (ChaCha20-Poly1305), bound to the caller it was issued to.
//!
//! Plain signing would keep a cursor unforgeable but readable: its
//! positions are the plugins' keyset values — division codes and row ids,
//! and for some sources a row id is a person's ID number. Sealed, a client
//! learns nothing from it, cannot alter it, cannot hand it to another
//! principal (the principal is the associated data) and cannot replay it
//! against another query (the query's fingerprint is inside).
//!
//! Each cursor gets a key of its own, derived with HKDF-SHA256 from the
//! gateway's key and 16 random bytes carried in the token, so the AEAD's
//! nonce can be fixed without ever repeating a (key, nonce) pair.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};

use crate::federation::cursor::CursorState;

/// Bytes of random salt per cursor.
const SALT_LEN: usize = 16;
/// HKDF's `info`: the purpose and version of the derived key.
const INFO: &[u8] = b"lianqiao cursor v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    #[error("the cursor is malformed; pass `next_cursor` from the previous page unchanged")]
    Malformed,
    #[error(
        "the cursor does not open: it was altered, issued to another caller, or issued by another gateway; start again without it"
    )]
    Forged,
    #[error("the cursor belongs to a different query; repeat the original filters with it")]
    OtherQuery,
}

impl From<CursorError> for crate::error::ApiError {
    fn from(e: CursorError) -> Self {
        crate::error::ApiError::new(crate::error::ErrorCode::BadCursor, e.to_string())
    }
}

/// Seals and opens cursors with the gateway's key.
#[derive(Clone)]
pub struct CursorSeal {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSeal(..)")
    }
}

impl CursorSeal {
    pub fn new(key: &[u8]) -> Self {
        CursorSeal { key: key.to_vec() }
    }

    fn cipher(&self, salt: &[u8]) -> Option<LessSafeKey> {
        let prk = Salt::new(HKDF_SHA256, salt).extract(&self.key);
        let okm = prk.expand(&[INFO], &CHACHA20_POLY1305).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// The token for `state`, for the caller `binding` alone.
    pub fn seal(&self, state: &CursorState, binding: &str) -> String {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let mut sealed = serde_json::to_vec(state).unwrap_or_default();
        let ok = self.cipher(&salt).is_some_and(|key| {
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(binding.as_bytes()),
                &mut sealed,
            )
            .is_ok()
        });
        if !ok {
            // Cannot happen with a 32-byte derived key; a token that does
            // not open is the safe failure.
            return String::new();
        }
        let mut token = salt.to_vec();
        token.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The state of `token`, if this gateway sealed it for `binding` and
    /// for the query with `fingerprint`.
    pub fn open(
        &self,
        token: &str,
        binding: &str,
        fingerprint: &str,
    ) -> Result<CursorState, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CursorError::Malformed)?;
        if bytes.len() < SALT_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(CursorError::Malformed);
        }
        let (salt, sealed) = bytes.split_at(SALT_LEN);
        let key = self.cipher(salt).ok_or(CursorError::Forged)?;
        let mut in_out = sealed.to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(binding.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| CursorError::Forged)?;
        let state: CursorState =
            serde_json::from_slice(plain).map_err(|_| CursorError::Malformed)?;
        if state.fingerprint != fingerprint {
            return Err(CursorError::OtherQuery);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::cursor::SourcePosition;
    use std::collections::BTreeMap;

    fn state() -> CursorState {
        let mut positions = BTreeMap::new();
        positions.insert(
            "huimin".to_string(),
            SourcePosition {
                cursor: Some("[\"150103001\",\"15010319850312123X\"]".into()),
                skip: 3,
            },
        );
        CursorState {
            fingerprint: "abc".into(),
            positions,
            started: Some(("150103".into(), "huimin".into())),
        }
    }

    #[test]
    fn round_trip_for_its_caller_only() {
        let seal = CursorSeal::new(b"k");
        let token = seal.seal(&state(), "alice");
        assert_eq!(seal.open(&token, "alice", "abc").unwrap(), state());
        assert_eq!(seal.open(&token, "bob", "abc"), Err(CursorError::Forged));
        assert_eq!(
            seal.open(&token, "alice", "xyz"),
            Err(CursorError::OtherQuery)
        );
        assert_eq!(
            CursorSeal::new(b"other").open(&token, "alice", "abc"),
            Err(CursorError::Forged)
        );
        assert_ne!(
            token,
            seal.seal(&state(), "alice"),
            "a fresh salt each time"
        );
    }

    #[test]
    fn a_cursor_does_not_show_its_positions() {
        let token = CursorSeal::new(b"k").seal(&state(), "alice");
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("150103") && !text.contains("huimin"),
            "{text}"
        );
    }

    #[test]
    fn tampering_is_detected() {
        let seal = CursorSeal::new(b"k");
        let token = seal.seal(&state(), "alice");
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        let altered = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(
            seal.open(&altered, "alice", "abc"),
            Err(CursorError::Forged)
        );
        assert_eq!(
            seal.open("garbage!", "alice", "abc"),
            Err(CursorError::Malformed)
        );
        assert_eq!(
            seal.open("abcd", "alice", "abc"),
            Err(CursorError::Malformed)
        );
    }
}
