//! Lianqiao's access policy, with no wasmtime and no network in sight:
//!
//! - [`authn`]: a credential (JWT or API key) becomes an [`Identity`];
//!   with the declared purpose it is a [`Principal`].
//! - [`engine`]: operator-written Cedar policies, validated against a
//!   schema, decide single questions ("may this principal list members in
//!   150103001?"), and cache the answers.
//! - [`grant`]: the two enforcement phases built on those decisions: before
//!   execution the scope and every field's visibility, after the merge the
//!   per-row check and the masking.
//! - [`cases`]: operators' table-driven policy tests.

pub mod authn;
pub mod cases;
pub mod division;
pub mod engine;
pub mod fields;
pub mod grant;
pub mod mask;
pub mod principal;

pub use authn::{AuthError, Authenticator, Identity};
pub use engine::{Action, Decision, PolicyEngine, PolicyProblem};
pub use fields::{FieldCatalog, FieldClass, FieldSpec};
pub use grant::{Denied, Enforcer, FieldRule, GroupRule, ListGrant, StatsGrant, Visibility};
pub use mask::Mask;
pub use principal::{Level, Principal};
