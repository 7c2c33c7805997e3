//! The source's `[plugin.settings]`, handed over by the host as JSON.

use serde::de::DeserializeOwned;

use crate::{SourceError, config};

/// Parse this source's settings into the plugin's own typed struct.
/// Errors name the offending key, so the operator knows what to fix.
pub fn load<T: DeserializeOwned>() -> Result<T, SourceError> {
    let raw = config::settings();
    serde_json::from_str(&raw)
        .map_err(|e| SourceError::BadConfig(format!("[plugin.settings]: {e}")))
}
