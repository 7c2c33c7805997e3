//! Host capabilities granted to plugins, one module each. Every capability
//! checks the source's grant itself; a plugin asking for what its source
//! was not granted gets a `denied` error it can see.

pub mod cache;
mod config;
pub mod http;
mod log;
pub mod sql;

use crate::bindings::lianqiao::source::types;
use crate::state::HostState;

// The `types` interface has no functions; its host trait is empty.
impl types::Host for HostState {}
