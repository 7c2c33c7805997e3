//! What can go wrong with a plugin, as the gateway needs to tell callers.

use crate::contract::SourceError;

/// A plugin call failed. Each variant has a stable machine code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// The plugin reported an error of its own (upstream down, bad config …).
    #[error("{}", source_error_message(.0))]
    Source(SourceError),
    /// The plugin trapped (a panic, an unreachable, a host-function bug).
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// The plugin ran past its CPU deadline and was interrupted.
    #[error("the plugin ran past its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
    /// The plugin tried to grow its memory past the source's cap.
    #[error("the plugin exceeded its memory cap of {cap_mib} MiB")]
    MemoryLimit { cap_mib: u64 },
    /// Every instance slot is busy; try again later.
    #[error("all plugin instances are busy: {0}")]
    Busy(String),
    /// The plugin answered something the contract does not allow.
    #[error("the plugin broke the contract: {0}")]
    Contract(String),
    /// The gateway's circuit breaker for this source is open: not called.
    #[error("not called: the source failed repeatedly; next try in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u64 },
}

impl PluginError {
    /// The gateway's stable error code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::Source(e) => match e {
                SourceError::UpstreamTimeout(_) => "source_timeout",
                SourceError::UpstreamUnavailable(_) => "source_unavailable",
                _ => "source_error",
            },
            PluginError::Trap(_) => "plugin_trap",
            PluginError::Deadline { .. } => "source_timeout",
            PluginError::MemoryLimit { .. } => "plugin_limit",
            PluginError::Busy(_) => "source_unavailable",
            PluginError::Contract(_) => "source_error",
            PluginError::CircuitOpen { .. } => "circuit_open",
        }
    }

    /// True when the failure says something about the source's health (and
    /// counts towards opening its circuit); a query the source cannot
    /// answer does not.
    pub fn counts_against_source(&self) -> bool {
        !matches!(
            self,
            PluginError::Source(SourceError::Unsupported(_) | SourceError::BadCursor(_))
                | PluginError::CircuitOpen { .. }
        )
    }

    /// True when the failure is about time, so the gateway answers 504.
    pub fn is_timeout(&self) -> bool {
        self.code() == "source_timeout"
    }
}

fn source_error_message(e: &SourceError) -> String {
    match e {
        SourceError::Unsupported(m) => format!("unsupported by the source: {m}"),
        SourceError::BadCursor(m) => format!("bad cursor: {m}"),
        SourceError::BadConfig(m) => format!("the source's settings are invalid: {m}"),
        SourceError::UpstreamUnavailable(m) => format!("upstream unavailable: {m}"),
        SourceError::UpstreamTimeout(m) => format!("upstream timed out: {m}"),
        SourceError::UpstreamError(m) => format!("upstream error: {m}"),
        SourceError::Denied(m) => format!("denied by the host: {m}"),
        SourceError::Internal(m) => format!("plugin bug: {m}"),
    }
}

/// A plugin could not be loaded. Reported at start-up, `lianqiao check` and
/// reload, naming the source.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("plugin file {path} has sha256 {actual}, but the config pins {expected}")]
    Digest {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path} is not a valid component: {reason}")]
    Compile { path: String, reason: String },
    #[error("{path} does not fit the host (lianqiao:source@0.1.0): {reason}")]
    Link { path: String, reason: String },
    #[error("describe() failed: {0}")]
    Describe(PluginError),
    #[error("the manifest is invalid: {0}")]
    Manifest(String),
}
