//! What one source did for one request: reported to the caller (`sources[]`
//! of every answer), counted in metrics, kept in the audit facts.

use std::time::Duration;

use lianqiao_host::PluginError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    Ok,
    Error,
    Timeout,
    /// Not called: its rows for this query were all returned on earlier pages.
    Skipped,
    /// Not called: its circuit breaker is open after repeated failures.
    CircuitOpen,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Ok => "ok",
            SourceStatus::Error => "error",
            SourceStatus::Timeout => "timeout",
            SourceStatus::Skipped => "skipped",
            SourceStatus::CircuitOpen => "circuit_open",
        }
    }

    /// The status a failed call reports.
    pub fn of(error: &PluginError) -> SourceStatus {
        match error {
            PluginError::CircuitOpen { .. } => SourceStatus::CircuitOpen,
            e if e.is_timeout() => SourceStatus::Timeout,
            _ => SourceStatus::Error,
        }
    }

    /// True when the source's rows are missing from the answer.
    pub fn failed(self) -> bool {
        matches!(
            self,
            SourceStatus::Error | SourceStatus::Timeout | SourceStatus::CircuitOpen
        )
    }
}

/// What one source did for one request.
#[derive(Debug, Clone)]
pub struct SourceReport {
    pub name: String,
    pub status: SourceStatus,
    pub latency: Duration,
    pub rows: usize,
    pub error: Option<PluginError>,
}
