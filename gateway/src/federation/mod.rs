//! Federation: which sources answer a query, calling them in parallel, and
//! merging their pages into one stable, resumable order.

pub mod codes;
pub mod cursor;
pub mod enrich;
pub mod executor;
pub(crate) mod filter;
pub mod instant;
pub mod measures;
mod merge;
mod planner;
pub mod stats;

use lianqiao_host::contract::{FilterOp, Value};

pub use executor::{ListOutcome, SourceReport, SourceStatus, execute};
pub use merge::MergedRow;

use crate::model::{Entity, Field};

/// A validated list query over one entity.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub entity: &'static Entity,
    /// Division codes whose subtrees the answer is drawn from.
    pub scope: Vec<String>,
    pub filters: Vec<FieldFilter>,
    /// Fields asked of the sources (the output plus `division`).
    pub projection: Vec<&'static str>,
    /// Fields returned to the caller.
    pub output: Vec<&'static str>,
    pub limit: u32,
    /// Where each source stands, continuing an earlier page (opened from
    /// the caller's sealed cursor by the disclosure gate).
    pub cursor: Option<cursor::CursorState>,
    /// Fail the whole request when any source fails.
    pub strict: bool,
}

/// One filter on one field of the entity.
#[derive(Debug, Clone)]
pub struct FieldFilter {
    pub field: &'static Field,
    pub op: FilterOp,
    pub values: Vec<Value>,
}

impl ListRequest {
    /// What a cursor is bound to: the same entity, scope and filters. A
    /// cursor replayed against another query is refused, not misapplied.
    pub fn fingerprint(&self) -> String {
        let mut parts = vec![self.entity.name.to_string(), self.scope.join(",")];
        for f in &self.filters {
            parts.push(format!("{}:{:?}:{:?}", f.field.name, f.op, f.values));
        }
        cursor::digest(&parts.join("\n"))
    }
}
