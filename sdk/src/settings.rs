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

/// Settings of a plugin that adapts an HTTP upstream.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// e.g. `http://127.0.0.1:8091`; must be in the source's `http.allow`.
    pub base_url: String,
    /// The name of the host credential for the upstream (the host signs or
    /// adds the token; the plugin never sees the secret).
    pub credential: String,
    /// How long a fetched scope is served from the host's cache.
    #[serde(default = "default_snapshot_ttl_ms")]
    pub snapshot_ttl_ms: u32,
}

fn default_snapshot_ttl_ms() -> u32 {
    60_000
}

impl UpstreamSettings {
    /// One request to `path_and_query` under the base URL, with the
    /// credential; transport failures mapped to source errors.
    pub fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<crate::http::Response, SourceError> {
        crate::http::send(&crate::http::Request {
            method: method.into(),
            url: format!("{}{path_and_query}", self.base_url.trim_end_matches('/')),
            headers,
            body,
            credential: Some(self.credential.clone()),
        })
        .map_err(|e| match e {
            crate::http::HttpError::Denied(m) => SourceError::Denied(m),
            crate::http::HttpError::Timeout(m) => SourceError::UpstreamTimeout(m),
            crate::http::HttpError::Unavailable(m) => SourceError::UpstreamUnavailable(m),
        })
    }
}
