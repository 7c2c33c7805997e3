//! Guest-side SDK for Lianqiao source plugins.
//!
//! A source plugin adapts one upstream system to the unified model. With
//! this crate a plugin is mostly mapping code:
//!
//! ```ignore
//! use lianqiao_sdk::{Guest, Manifest, Page, Query, SourceError};
//! struct MySource;
//! impl Guest for MySource {
//!     fn describe() -> Result<Manifest, SourceError> { /* … */ }
//!     fn query(q: Query) -> Result<Page, SourceError> { /* … */ }
//! }
//! lianqiao_sdk::export_source!(MySource);
//! ```
//!
//! The contract itself is `wit/source.wit` (package `lianqiao:source@0.1.0`);
//! `SPEC.md` beside this file says what a plugin MUST and SHOULD do.

pub mod keyset;
pub mod settings;
pub mod sql_page;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "source",
        pub_export_macro: true,
        export_macro_name: "export_source",
        default_bindings_module: "lianqiao_sdk::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::Guest;
pub use bindings::export_source;
pub use bindings::lianqiao::source::types::{
    EntitySpec, FieldSpec, Filter, FilterOp, FilterSupport, Manifest, Page, Query, Row,
    SourceError, Value, ValueKind,
};
pub use bindings::lianqiao::source::{config, http, log, sql};

/// The contract version this SDK implements; put it in `Manifest::sdk_version`.
pub const SDK_VERSION: &str = "0.1.0";

impl Value {
    /// The text of a text-like value (text, date, timestamp).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) => Some(s),
            _ => None,
        }
    }
}

/// Every filter operator, for plugins that push down anything.
pub const ALL_FILTER_OPS: [FilterOp; 5] = [
    FilterOp::Eq,
    FilterOp::Gte,
    FilterOp::Lte,
    FilterOp::OneOf,
    FilterOp::Prefix,
];

/// Log through the host, tagged with this source's name.
pub fn log_info(message: &str) {
    log::log(log::Level::Info, message);
}
