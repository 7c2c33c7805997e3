//! Host capabilities granted to plugins, one module each. Every capability
//! checks the source's grant itself; a plugin asking for what its source
//! was not granted gets a `denied` error it can see.

pub mod cache;
mod config;
pub mod http;
mod log;
pub mod sql;
mod sql_rows;
pub mod sql_write;
pub mod sqlite_reads;

use crate::bindings::v1::lianqiao::source::types;
use crate::state::HostState;

// The `types`, `writes` and `counting` interfaces have no functions; their host traits are empty.
impl types::Host for HostState {}
impl crate::bindings::v2::lianqiao::source0_2_0::writes::Host for HostState {}
impl crate::bindings::v3::lianqiao::source0_3_0::counting::Host for HostState {}
