//! `log`: plugin messages into the gateway's log, tagged with the source.

use crate::bindings::v1::lianqiao::source::log::{Host, Level};
use crate::state::HostState;

/// Longer messages are cut: a plugin must not flood the gateway's log.
const MAX_MESSAGE: usize = 4096;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let source = self.grants.source.as_str();
        match level {
            Level::Debug => tracing::debug!(source, plugin_log = message),
            Level::Info => tracing::info!(source, plugin_log = message),
            Level::Warn => tracing::warn!(source, plugin_log = message),
            Level::Error => tracing::error!(source, plugin_log = message),
        }
        Ok(())
    }
}
