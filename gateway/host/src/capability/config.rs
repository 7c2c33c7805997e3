//! `config`: the source's non-secret `[plugin.settings]`, as JSON.

use crate::bindings::v1::lianqiao::source::config::Host;
use crate::state::HostState;

impl Host for HostState {
    fn settings(&mut self) -> wasmtime::Result<String> {
        Ok(self.grants.settings_json.clone())
    }
}
