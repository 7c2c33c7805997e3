//! Who is asking: every request has exactly one principal.

use serde::{Deserialize, Serialize};

/// The six administrative levels of the governance hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Region,
    City,
    District,
    Street,
    Community,
    Grid,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Region,
        Level::City,
        Level::District,
        Level::Street,
        Level::Community,
        Level::Grid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Region => "region",
            Level::City => "city",
            Level::District => "district",
            Level::Street => "street",
            Level::Community => "community",
            Level::Grid => "grid",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == text)
    }

    /// The names, for messages: "region, city, …".
    pub fn names() -> String {
        Level::ALL.map(Level::as_str).join(", ")
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller with the purpose it declared for this request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Principal {
    pub id: String,
    pub level: Level,
    /// Code of the division the principal works for: its jurisdiction.
    pub division: String,
    /// Sorted, so equal principals make equal cache keys.
    pub roles: Vec<String>,
    pub purpose: String,
}

impl Principal {
    pub fn new(
        id: impl Into<String>,
        level: Level,
        division: impl Into<String>,
        roles: impl IntoIterator<Item = String>,
        purpose: impl Into<String>,
    ) -> Principal {
        let mut roles: Vec<String> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        Principal {
            id: id.into(),
            level,
            division: division.into(),
            roles,
            purpose: purpose.into(),
        }
    }

    /// Everything a decision can depend on, as one string: the decision
    /// cache key's principal part.
    pub fn cache_key(&self) -> String {
        let mut key = String::with_capacity(64);
        self.write_cache_key(&mut key);
        key
    }

    /// `cache_key` appended to `key` (no allocation of its own). Parts are
    /// separated by U+001F; identities carry no control characters.
    pub fn write_cache_key(&self, key: &mut String) {
        for part in [
            self.id.as_str(),
            self.level.as_str(),
            self.division.as_str(),
        ] {
            key.push_str(part);
            key.push('\u{1f}');
        }
        for (i, role) in self.roles.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(role);
        }
        key.push('\u{1f}');
        key.push_str(&self.purpose);
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}
