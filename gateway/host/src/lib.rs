//! The Lianqiao plugin host.
//!
//! Loads source plugins (WebAssembly components targeting
//! `lianqiao:source@0.1.0` to `@0.4.0`) with wasmtime, and runs each call in a fresh,
//! limited instance: a memory cap, a CPU deadline (epoch interruption) and
//! only the host capabilities the source's config grants. A plugin that
//! traps, loops or runs out of memory fails that one call.
//!
//! The shape follows wasmtime's own embeddings: generated bindings in
//! `bindings.rs`, one module per capability under `capability/`, the policy
//! of each capability in plain code that is unit-tested without wasmtime.

#![deny(unsafe_code)]

mod artifact;
mod bindings;
pub mod capability;
mod clock;
mod engine;
mod error;
mod plugin;
pub mod priority;
mod record_key;
mod rows;
mod state;
pub mod trace;

pub use engine::{Allocator, EngineSettings, PluginEngine};
pub use error::{LoadError, PluginError, Violation};
pub use plugin::{PluginLimits, PluginStats, SourceGrants, SourcePlugin, SourceSpec};

/// The contract's types as the host sees them (generated from `sdk/wit`).
pub mod contract {
    pub use crate::bindings::v1::lianqiao::source::sql::{Dialect, SqlError};
    pub use crate::bindings::v1::lianqiao::source::types::{
        AggregateCell, AggregateQuery, EntitySpec, FieldSpec, Filter, FilterOp, FilterSupport,
        Manifest, Page, Query, SourceError, Value, ValueKind,
    };

    pub use crate::bindings::v2::lianqiao::source0_2_0::writes::{
        Command, CommandError, CommandResult, NewCase, Step, Transition,
    };
    pub use crate::bindings::v4::lianqiao::source0_4_0::reads::{
        ChangeFeed, ChangesQuery, Tombstone,
    };
    pub use crate::capability::sql_write::check_write_statement;
    pub use crate::record_key::record_key;

    /// One group of an aggregate, from a plugin of any contract version.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CountCell {
        pub division: Option<String>,
        pub key: Option<Value>,
        pub count: i64,
        /// The sum of the counted records' keys (contract 0.3); `None`
        /// from 0.1 and 0.2 plugins, whose counts do not say which records
        /// they are.
        pub digest: Option<u64>,
    }

    /// One step of an entity's changes (contract 0.4), its rows read out
    /// of the plugin's row buffer.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Changes {
        pub columns: Vec<String>,
        pub rows: Vec<Vec<Value>>,
        pub deleted: Vec<Tombstone>,
        /// Where the next call starts (opaque, the source's).
        pub watermark: String,
        /// More changes after `watermark` were already there.
        pub more: bool,
    }

    /// The newest contract version this host implements.
    pub const CONTRACT_VERSION: &str = "0.4.0";
    /// Every contract version whose plugins it loads (`major.minor`).
    pub const CONTRACT_VERSIONS: [&str; 4] = ["0.1", "0.2", "0.3", "0.4"];
}
