//! The policy applied to API requests: phase 1 shapes the query before the
//! sources run, phase 2 checks and masks what comes back. What was decided
//! goes into the request's audit facts.

use std::collections::BTreeMap;

use lianqiao_host::contract::{FilterOp, Value};
use lianqiao_policy::grant::Shown;
use lianqiao_policy::{FieldClass, ListGrant, Principal, StatsGrant, Visibility};
use serde_json::json;

use super::error::ApiError;
use crate::federation::stats::{StatsOutcome, StatsRequest};
use crate::federation::{FieldFilter, ListOutcome, ListRequest};
use crate::server::Gateway;

/// What the handler tells the audit record (a response extension).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub scope: String,
    pub sources: Vec<String>,
    pub rows: u64,
    pub fields: BTreeMap<String, Vec<String>>,
    pub masked: u64,
    pub withheld: Vec<String>,
    pub dropped: u64,
    pub decision: Option<&'static str>,
    pub policies: Vec<String>,
    /// A statistics response (counts only).
    pub statistics: bool,
}

fn not_clear(visibility: Visibility) -> Option<&'static str> {
    match visibility {
        Visibility::Clear => None,
        Visibility::Masked(_) => Some("masked"),
        Visibility::Withheld => Some("withheld"),
    }
}

/// Phase 1 for a list: narrow the scope, restrict record attributes,
/// refuse filters on fields the caller cannot see in clear, drop withheld
/// fields from the output.
pub fn authorize_list(
    gateway: &Gateway,
    principal: &Principal,
    request: &mut ListRequest,
    facts: &mut Facts,
) -> Result<ListGrant, ApiError> {
    let _span = tracing::info_span!(
        "policy",
        phase = 1,
        level = %principal.level,
        division = %principal.division,
        resource = request.entity.name,
    )
    .entered();
    let enforcer = &gateway.config.enforcer;
    let requested = request.scope.first().cloned().unwrap_or_default();
    let grant = enforcer
        .authorize_list(principal, request.entity.name, &requested)
        .map_err(|d| {
            facts.decision = Some("deny");
            facts.policies = d.policies.clone();
            ApiError::denied(d)
        })?;
    facts.policies = grant.policies.clone();
    facts.scope = grant.scope.clone();
    for f in &request.filters {
        if let Some(how) = not_clear(grant.visibility(f.field.name)) {
            facts.decision = Some("deny");
            return Err(ApiError::forbidden(
                format!(
                    "cannot filter on `{}`: your access shows it {how}; filter on fields you see in clear",
                    f.field.name
                ),
                grant
                    .rule(f.field.name)
                    .map(|r| r.policies.clone())
                    .unwrap_or_default(),
            ));
        }
    }
    request.scope = vec![grant.scope.clone()];
    if let Some((name, values)) = &grant.attribute
        && let Some(field) = request.entity.field(name)
    {
        request.filters.push(FieldFilter {
            field,
            op: FilterOp::OneOf,
            values: values.iter().map(|v| Value::Text(v.clone())).collect(),
        });
    }
    // Phase 2 needs the record attribute of every row.
    if let Some(attr) = enforcer.catalog.record_attribute(request.entity.name)
        && let Some(field) = request.entity.field(&attr.name)
        && !request.projection.contains(&field.name)
    {
        request.projection.push(field.name);
    }
    request.output.retain(|f| {
        let withheld = grant.visibility(f) == Visibility::Withheld;
        if withheld {
            facts.withheld.push((*f).to_string());
        }
        !withheld
    });
    for f in &request.output {
        let class = enforcer.catalog.class(request.entity.name, f);
        facts
            .fields
            .entry(class.as_str().to_string())
            .or_default()
            .push((*f).to_string());
    }
    Ok(grant)
}

/// Phase 2 for a list: drop rows the policy does not admit (a source that
/// ignored the scope), then mask or remove fields.
pub fn apply_list(
    gateway: &Gateway,
    principal: &Principal,
    grant: &ListGrant,
    outcome: &mut ListOutcome,
    facts: &mut Facts,
) {
    let _span = tracing::info_span!("policy", phase = 2, rows = outcome.rows.len()).entered();
    let enforcer = &gateway.config.enforcer;
    let attribute = enforcer
        .catalog
        .record_attribute(&grant.kind)
        .map(|a| a.name.clone());
    let before = outcome.rows.len();
    outcome.rows.retain(|row| {
        let value = attribute.as_ref().and_then(|a| {
            row.cells
                .iter()
                .find(|(n, _)| n == a)
                .and_then(|(_, v)| match v {
                    Value::Text(t) => Some(t.as_str()),
                    _ => None,
                })
        });
        enforcer.admits(principal, grant, &row.division, value)
    });
    facts.dropped = (before - outcome.rows.len()) as u64;
    if facts.dropped > 0 {
        tracing::warn!(
            dropped = facts.dropped,
            scope = grant.scope,
            "rows outside the policy's scope came back from a source and were dropped"
        );
    }
    let mut masked = 0u64;
    for row in &mut outcome.rows {
        row.cells
            .retain_mut(|(name, value)| match grant.visibility(name) {
                Visibility::Clear => true,
                Visibility::Withheld => false,
                visibility => match value {
                    Value::Null => true,
                    Value::Text(t) | Value::Date(t) | Value::Timestamp(t) => {
                        match visibility.show(t) {
                            Shown::Masked(m) => {
                                *value = Value::Text(m);
                                masked += 1;
                                true
                            }
                            Shown::Clear => true,
                            Shown::Withheld => false,
                        }
                    }
                    _ => false,
                },
            });
    }
    facts.masked = masked;
    facts.rows = outcome.rows.len() as u64;
    facts.sources = outcome.reports.iter().map(|r| r.name.clone()).collect();
    facts.decision = Some("allow");
}

/// The envelope's `policy` member for a list.
pub fn list_policy(gateway: &Gateway, grant: &ListGrant, output: &[&str]) -> serde_json::Value {
    let masked: Vec<&str> = output
        .iter()
        .copied()
        .filter(|f| matches!(grant.visibility(f), Visibility::Masked(_)))
        .collect();
    let withheld: Vec<&str> = grant
        .fields
        .iter()
        .filter(|r| r.visibility == Visibility::Withheld)
        .map(|r| r.field.as_str())
        .collect();
    json!({
        "scope": [grant.scope],
        "masked": masked,
        "withheld": withheld,
        "policies": grant.policies,
        "version": gateway.config.enforcer.engine.version(),
    })
}

/// Phase 1 for statistics.
pub fn authorize_stats(
    gateway: &Gateway,
    principal: &Principal,
    request: &mut StatsRequest,
    facts: &mut Facts,
) -> Result<StatsGrant, ApiError> {
    let enforcer = &gateway.config.enforcer;
    let requested = request.scope.first().cloned().unwrap_or_default();
    facts.statistics = true;
    let grant = enforcer
        .authorize_stats(
            principal,
            request.entity.name,
            &requested,
            request.by.map(|f| f.name),
        )
        .map_err(|d| {
            facts.decision = Some("deny");
            facts.policies = d.policies.clone();
            ApiError::denied(d)
        })?;
    facts.policies = grant.policies.clone();
    facts.scope = grant.scope.clone();
    // Counting by a personal value is reading it: only for who sees it clear.
    let personal: Vec<&str> = request
        .filters
        .iter()
        .map(|f| f.field.name)
        .filter(|f| {
            matches!(
                enforcer.catalog.class(request.entity.name, f),
                FieldClass::Personal | FieldClass::Sensitive
            )
        })
        .collect();
    if !personal.is_empty() {
        let clear = grant.records.as_ref().is_some_and(|g| {
            personal
                .iter()
                .all(|f| g.visibility(f) == Visibility::Clear)
        });
        if !clear {
            facts.decision = Some("deny");
            return Err(ApiError::forbidden(
                format!(
                    "cannot filter statistics on {}: you do not see {} in clear",
                    personal.join(", "),
                    if personal.len() == 1 { "it" } else { "them" }
                ),
                Vec::new(),
            ));
        }
    }
    request.scope = vec![grant.scope.clone()];
    Ok(grant)
}

/// Phase 2 for statistics: cells outside the scope go; small cells are
/// suppressed for statistics-only callers. Returns the suppressed count.
pub fn apply_stats(grant: &StatsGrant, outcome: &mut StatsOutcome, facts: &mut Facts) -> u64 {
    outcome.cells.retain(|c| {
        c.division
            .as_deref()
            .is_none_or(|d| d.starts_with(&grant.scope) || grant.scope.starts_with(d))
    });
    let mut suppressed = 0;
    if grant.statistics_only {
        for c in &mut outcome.cells {
            if c.count > 0 && (c.count as u64) < grant.suppress_below {
                c.suppressed = true;
                suppressed += 1;
            }
        }
    }
    facts.rows = 0;
    facts.sources = outcome.reports.iter().map(|r| r.name.clone()).collect();
    facts.decision = Some("allow");
    suppressed
}
