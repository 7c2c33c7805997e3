//! Keyset cursors over the contract's fixed order (`division`, `id`).
//!
//! Offsets drift when rows are inserted between pages; a keyset position
//! does not, so walking all pages returns every row once.

use crate::SourceError;

/// The last row a page returned: the next page starts strictly after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub division: String,
    pub id: String,
}

impl Position {
    /// Encode as an opaque cursor string.
    pub fn encode(&self) -> String {
        serde_json::json!([self.division, self.id]).to_string()
    }

    /// Decode a cursor produced by [`Position::encode`].
    pub fn decode(cursor: &str) -> Result<Self, SourceError> {
        let parts: (String, String) = serde_json::from_str(cursor)
            .map_err(|_| SourceError::BadCursor("not a keyset cursor of this plugin".into()))?;
        Ok(Position {
            division: parts.0,
            id: parts.1,
        })
    }
}
