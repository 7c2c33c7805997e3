//! Route a query to the sources that hold data for its scope and entity,
//! and split its filters into those each source pushes down and the rest.

use std::sync::Arc;

use lianqiao_host::contract::{Filter, FilterOp, ValueKind};

use super::{FieldFilter, ListRequest};
use crate::sources::{Source, SourceSet};

/// One source's part of a query.
#[derive(Debug, Clone)]
pub struct SourceCall {
    pub source: Arc<Source>,
    /// The query's scope narrowed to what the source covers.
    pub scope: Vec<String>,
    /// Filters the source applies itself.
    pub pushed: Vec<Filter>,
    /// Filters the gateway applies to the source's rows.
    pub residual: Vec<FieldFilter>,
    /// Requested fields the source serves.
    pub projection: Vec<String>,
}

/// `a` and `b` overlap when one's subtree contains the other.
pub(crate) fn narrowest(a: &str, b: &str) -> Option<String> {
    if a.starts_with(b) {
        Some(a.to_string())
    } else if b.starts_with(a) {
        Some(b.to_string())
    } else {
        None
    }
}

pub fn plan(sources: &SourceSet, request: &ListRequest) -> Vec<SourceCall> {
    let mut calls = Vec::new();
    for source in &sources.sources {
        // Enriching sources join onto others' rows; they list nothing alone.
        if source
            .config
            .enrich
            .iter()
            .any(|e| e == request.entity.name)
        {
            continue;
        }
        let Some(served) = source
            .plugin
            .manifest()
            .entities
            .iter()
            .find(|e| e.name == request.entity.name)
        else {
            continue;
        };
        let mut scope: Vec<String> = request
            .scope
            .iter()
            .flat_map(|s| {
                source
                    .config
                    .coverage
                    .iter()
                    .filter_map(|c| narrowest(s, c))
            })
            .collect();
        scope.sort();
        scope.dedup();
        // Drop codes already inside another code of the scope.
        let scope: Vec<String> = scope
            .iter()
            .filter(|s| !scope.iter().any(|o| o != *s && s.starts_with(o.as_str())))
            .cloned()
            .collect();
        if scope.is_empty() {
            continue;
        }
        let (mut pushed, mut residual) = (Vec::new(), Vec::new());
        for f in &request.filters {
            let supported = served
                .filters
                .iter()
                .any(|s| s.field == f.field.name && s.ops.contains(&f.op));
            // A source compares timestamps as its own text: it gets a
            // bound widened by a day (a superset whatever form it stores),
            // and the exact instant is compared here (federation/instant.rs).
            if f.field.kind == ValueKind::Timestamp && f.op != FilterOp::Prefix {
                if let Some(bound) = f.values.first().filter(|_| supported)
                    && let Some(widened) = super::instant::widened(f.op, bound)
                {
                    pushed.push(Filter {
                        field: f.field.name.to_string(),
                        op: f.op,
                        values: vec![widened],
                    });
                }
                residual.push(f.clone());
                continue;
            }
            if supported {
                pushed.push(Filter {
                    field: f.field.name.to_string(),
                    op: f.op,
                    values: f.values.clone(),
                });
            } else {
                residual.push(f.clone());
            }
        }
        // The requested fields, plus those the gateway filters on itself.
        let mut projection: Vec<String> = request
            .projection
            .iter()
            .map(|p| p.to_string())
            .chain(
                residual
                    .iter()
                    .map(|f: &FieldFilter| f.field.name.to_string()),
            )
            .filter(|p| served.fields.iter().any(|f| f.name == *p))
            .collect();
        projection.dedup();
        let mut seen = std::collections::HashSet::new();
        projection.retain(|p| seen.insert(p.clone()));
        calls.push(SourceCall {
            source: source.clone(),
            scope,
            pushed,
            residual,
            projection,
        });
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::narrowest;

    #[test]
    fn overlap_is_the_narrower_subtree() {
        assert_eq!(
            narrowest("150103001", "150103").as_deref(),
            Some("150103001")
        );
        assert_eq!(narrowest("1501", "150103").as_deref(), Some("150103"));
        assert_eq!(narrowest("150105", "150103"), None);
    }
}
