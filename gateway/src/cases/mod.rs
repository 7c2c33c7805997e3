//! Cases across the four loops: the closed loop as one read–write API.
//!
//! - [`transitions`]: which moves exist (config/cases.toml); who may make
//!   them is the policy's (`write_case`).
//! - [`store`]: idempotency keys in the gateway's store, with versioned
//!   migrations.
//! - `crate::api::cases`: the routes (`POST /v1/cases`,
//!   `POST /v1/cases/{id}/transitions`, `GET /v1/cases/{id}`).
//!
//! A write goes: idempotency key claimed → the case read at its source →
//! policy → transition table → one command to the source's plugin (one
//! transaction there) → the case read back through the disclosure gate →
//! the result remembered under the key → audited by the guard before the
//! response leaves.

pub mod ids;
pub mod outbox;
pub mod read;
pub mod store;
pub mod transitions;

pub use store::{Begin, WriteStore};
pub use transitions::{Effect, Transitions};
