//! The gate for lists: phase 1 shapes the query before any source runs,
//! phase 2 checks and masks what came back and builds the body. What was
//! decided goes into the request's audit facts.

use lianqiao_host::contract::{FilterOp, Value};
use lianqiao_policy::grant::Shown;
use lianqiao_policy::{ListGrant, Principal, Visibility};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value as Json, json};

use super::{Context, Facts, Released, phase_one, refused};
use crate::error::{ApiError, source_reports};
use crate::federation::{FieldFilter, ListOutcome, ListRequest, MergedRow};

/// A list request's grant, held from phase 1 to the response.
pub struct ListGate<'g> {
    ctx: Context<'g>,
    principal: &'g Principal,
    grant: ListGrant,
}

fn not_clear(visibility: Visibility) -> Option<&'static str> {
    match visibility {
        Visibility::Clear => None,
        Visibility::Masked(_) => Some("masked"),
        Visibility::Withheld => Some("withheld"),
    }
}

impl<'g> ListGate<'g> {
    /// Phase 1: narrow the scope, restrict the record attribute, refuse
    /// filters on fields the caller cannot see in clear, drop withheld
    /// fields from the output, and open the caller's cursor (sealed for
    /// this caller and this query, or refused).
    pub fn authorize(
        ctx: Context<'g>,
        principal: &'g Principal,
        request: &mut ListRequest,
        cursor: Option<&str>,
        facts: &mut Facts,
    ) -> Result<Self, ApiError> {
        let _span = phase_one(principal, request.entity.name);
        let enforcer = ctx.enforcer;
        let requested = request.scope.first().cloned().unwrap_or_default();
        let grant = enforcer
            .authorize_list(principal, request.entity.name, &requested)
            .map_err(|d| refused(facts, d))?;
        facts.policies = grant.policies.clone();
        facts.scope = grant.scope.clone();
        for f in &request.filters {
            if let Some(how) = not_clear(grant.visibility(f.field.name)) {
                facts.decision = Some("deny");
                return Err(ApiError::forbidden(
                    "field_not_visible",
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
        // The cursor continues this caller's query, as now decided.
        if let Some(token) = cursor {
            let state = ctx
                .cursors
                .open(token, &principal.cache_key(), &request.fingerprint())
                .map_err(ApiError::from)?;
            request.cursor = Some(state);
        }
        Ok(ListGate {
            ctx,
            principal,
            grant,
        })
    }

    /// Phase 2: drop rows the policy does not admit (a source that ignored
    /// the scope), mask or remove fields, seal the cursor; the body.
    pub fn release(
        &self,
        outcome: ListOutcome,
        request: &ListRequest,
        facts: &mut Facts,
    ) -> Released {
        let (rows, next, partial, reports) = self.admit(outcome, facts);
        Released::of(&ListBody {
            rows: &rows,
            fields: &request.output,
            next,
            partial,
            sources: reports,
            policy: self.policy(&request.output),
        })
    }

    /// Phase 2 for one record (`/v1/divisions/{code}`): its body, or 404
    /// when no admitted row came back.
    pub fn release_one(
        &self,
        outcome: ListOutcome,
        request: &ListRequest,
        facts: &mut Facts,
        not_found: impl FnOnce() -> ApiError,
    ) -> Result<Released, ApiError> {
        let (rows, _, partial, reports) = self.admit(outcome, facts);
        let row = rows.first().ok_or_else(not_found)?;
        Ok(Released::of(&json!({
            "data": RowBody { row, fields: &request.output },
            "partial": partial,
            "sources": reports,
            "policy": self.policy(&request.output),
        })))
    }

    /// The admitted, masked rows; the sealed cursor; partial; the reports.
    fn admit(
        &self,
        mut outcome: ListOutcome,
        facts: &mut Facts,
    ) -> (Vec<MergedRow>, Option<String>, bool, Json) {
        let _span = tracing::info_span!("policy", phase = 2, rows = outcome.rows.len()).entered();
        let (ctx, principal, grant) = (self.ctx, self.principal, &self.grant);
        let enforcer = ctx.enforcer;
        let attribute = enforcer
            .catalog
            .record_attribute(&grant.kind)
            .map(|a| a.name.clone());
        let before = outcome.rows.len();
        // Rows come in division order: one decision per run of a division
        // (and record attribute), not one a row.
        let mut last: Option<(String, Option<String>, bool)> = None;
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
            if let Some((division, attr, verdict)) = &last
                && *division == row.division
                && attr.as_deref() == value
            {
                return *verdict;
            }
            let verdict = enforcer.admits(principal, grant, &row.division, value);
            last = Some((row.division.clone(), value.map(str::to_string), verdict));
            verdict
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
        let binding = principal.cache_key();
        let next = outcome
            .next
            .as_ref()
            .map(|state| ctx.cursors.seal(state, &binding));
        let partial = outcome.partial();
        let reports = source_reports(&outcome.reports);
        (outcome.rows, next, partial, reports)
    }

    /// The envelope's `policy` member.
    fn policy(&self, output: &[&str]) -> Json {
        let grant = &self.grant;
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
            "version": self.ctx.enforcer.engine.version(),
        })
    }
}

/// A contract value as a JSON value (statistics keys).
pub(super) fn value_json(value: &Value) -> Json {
    serde_json::to_value(CellValue(value)).unwrap_or(Json::Null)
}

/// A page's body, serialised straight from the admitted rows (no JSON
/// tree built first: a page is thousands of cells).
struct ListBody<'a> {
    rows: &'a [MergedRow],
    fields: &'a [&'a str],
    next: Option<String>,
    partial: bool,
    sources: Json,
    policy: Json,
}

impl Serialize for ListBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Rows<'a>(&'a [MergedRow], &'a [&'a str]);
        impl Serialize for Rows<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for row in self.0 {
                    seq.serialize_element(&RowBody {
                        row,
                        fields: self.1,
                    })?;
                }
                seq.end()
            }
        }
        struct Page<'a>(&'a Option<String>);
        impl Serialize for Page<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("next_cursor", self.0)?;
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("data", &Rows(self.rows, self.fields))?;
        map.serialize_entry("page", &Page(&self.next))?;
        map.serialize_entry("partial", &self.partial)?;
        map.serialize_entry("sources", &self.sources)?;
        map.serialize_entry("policy", &self.policy)?;
        map.end()
    }
}

/// A row as a JSON object with exactly `fields` (null where the source
/// has no such field) and the source it came from.
struct RowBody<'a> {
    row: &'a MergedRow,
    fields: &'a [&'a str],
}

impl Serialize for RowBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len() + 1))?;
        for field in self.fields {
            let value = self
                .row
                .cells
                .iter()
                .find(|(name, _)| name == field)
                .map(|(_, v)| CellValue(v));
            map.serialize_entry(field, &value)?;
        }
        map.serialize_entry("source", self.row.source.as_ref())?;
        map.end()
    }
}

/// A contract value as JSON. Non-finite floats become null (JSON has none).
struct CellValue<'a>(&'a Value);

impl Serialize for CellValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_none(),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_none(),
            Value::Text(t) | Value::Date(t) | Value::Timestamp(t) => s.serialize_str(t),
        }
    }
}
