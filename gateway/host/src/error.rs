//! What can go wrong with a plugin, as the gateway needs to tell callers.

use crate::contract::{CommandError, SourceError};

/// A plugin call failed. Each variant has a stable machine code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// The plugin reported an error of its own (upstream down, bad config …).
    #[error("{}", source_error_message(.0))]
    Source(SourceError),
    /// A command (contract 0.2) failed with the plugin's own error.
    #[error("{}", command_error_message(.0))]
    Command(CommandError),
    /// The plugin trapped (a panic, an unreachable, a host-function bug).
    #[error("the plugin trapped: {0}")]
    Trap(String),
    /// The plugin ran past its CPU deadline and was interrupted.
    #[error("the plugin ran past its deadline of {deadline_ms} ms")]
    Deadline { deadline_ms: u64 },
    /// The plugin tried to grow its memory past the source's cap.
    #[error("the plugin exceeded its memory cap of {cap_mib} MiB")]
    MemoryLimit { cap_mib: u64 },
    /// The source's share of instances stayed busy for the call's
    /// deadline: back-pressure from the gateway's own load, which says
    /// nothing about the source's health (it never feeds the breaker or a
    /// health check).
    #[error("all plugin instances are busy: {0}")]
    Busy(String),
    /// The plugin answered something the contract does not allow.
    #[error("the plugin broke the contract: {0}")]
    Contract(Violation),
    /// The gateway's circuit breaker for this source is open: not called.
    #[error("not called: the source failed repeatedly; next try in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u64 },
}

impl PluginError {
    /// True when the failure says something about the source's health (and
    /// counts towards opening its circuit); a query the source cannot
    /// answer does not.
    pub fn counts_against_source(&self) -> bool {
        !matches!(
            self,
            PluginError::Source(SourceError::Unsupported(_) | SourceError::BadCursor(_))
                | PluginError::Command(
                    CommandError::Unsupported(_)
                        | CommandError::Conflict(_)
                        | CommandError::NotFound(_)
                        | CommandError::Rejected(_)
                )
                | PluginError::CircuitOpen { .. }
                | PluginError::Busy(_)
        )
    }

    /// True when the failure is about time, so the gateway answers 504.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            PluginError::Deadline { .. }
                | PluginError::Source(SourceError::UpstreamTimeout(_))
                | PluginError::Command(CommandError::UpstreamTimeout(_))
        )
    }
}

/// How a plugin's answer broke the contract. Each names the field and the
/// kind of problem, never a value from the answer: the row that broke it
/// may be the very record the caller may not see (for district members the
/// row id is the ID number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{rows} rows for a limit of {limit}")]
    TooManyRows { rows: usize, limit: u32 },
    #[error("a row of {cells} cells under {columns} columns")]
    RowWidth { cells: usize, columns: usize },
    #[error("the page has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("`{field}` must be {expected}")]
    WrongKind {
        field: &'static str,
        expected: &'static str,
    },
    #[error("a row is outside the query's scope (its `division`)")]
    RowOutsideScope,
    #[error("rows are not in (division, id) order")]
    OutOfOrder,
    #[error("a count is outside the query's scope (its `division`)")]
    CountOutsideScope,
    #[error("a negative count")]
    NegativeCount,
    #[error("a malformed row buffer: {0}")]
    RowBuffer(String),
    #[error("a change page of {found} rows and deletions for a limit of {limit}")]
    TooManyChanges { found: usize, limit: u32 },
    #[error("a deletion is outside the query's scope (its `division`)")]
    TombstoneOutsideScope,
    #[error("more than {limit} rows to count in the gateway; give the plugin aggregate support")]
    TooManyRowsToCount { limit: usize },
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

fn command_error_message(e: &CommandError) -> String {
    match e {
        CommandError::Unsupported(m) => format!("unsupported by the source: {m}"),
        CommandError::Conflict(m) => format!("the record changed at the source: {m}"),
        CommandError::NotFound(m) => format!("no such record at the source: {m}"),
        CommandError::Rejected(m) => format!("the source refused the command: {m}"),
        CommandError::BadConfig(m) => format!("the source's settings are invalid: {m}"),
        CommandError::UpstreamUnavailable(m) => format!("upstream unavailable: {m}"),
        CommandError::UpstreamTimeout(m) => format!("upstream timed out: {m}"),
        CommandError::UpstreamError(m) => format!("upstream error: {m}"),
        CommandError::Denied(m) => format!("denied by the host: {m}"),
        CommandError::Internal(m) => format!("plugin bug: {m}"),
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
    #[error(
        "{path} does not fit the host (lianqiao:source@0.1.0, 0.2.0, 0.3.0 or 0.4.0): {reason}"
    )]
    Link { path: String, reason: String },
    #[error("describe() failed: {0}")]
    Describe(PluginError),
    #[error("the manifest is invalid: {0}")]
    Manifest(String),
}
