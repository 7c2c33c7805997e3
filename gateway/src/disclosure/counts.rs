//! The gate for statistics.
//!
//! Grouping is a decision of its own: a caller may count by a field when
//! `fields.toml` marks it groupable (a closed set of categories) and the
//! policy's `group` action permits it — whether or not the caller may see
//! that field, or any record, in a list. Filters follow the same rule, or
//! must be on fields the caller sees in clear.
//!
//! Counts are exact only when they tell the caller nothing its lists would
//! not: it may list the records, sees every grouping and filter field in
//! clear, and keeps to the record-attribute values it may see. Every other
//! count is protected (`protect`): small cells and zeros suppressed alike,
//! the rest perturbed consistently for the records they count (each cell's
//! record digest, which the sources compute: contract 0.3). Keys are
//! published only when they are values of the grouped field's closed set.
//!
//! The caller's budget is charged when the answer is known, for what it
//! learns: an answer it already has (the same cells over the same records)
//! is free, a new one costs a query (`budget`).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use lianqiao_host::contract::Value;
use lianqiao_policy::{Principal, StatsGrant};
use serde_json::{Value as Json, json};

use super::protect::Published;
use super::rows::value_json;
use super::{Context, Facts, Released, phase_one, refused};
use crate::error::{ApiError, ErrorCode, source_reports};
use crate::federation::FieldFilter;
use crate::federation::filter;
use crate::federation::stats::{StatsCell, StatsOutcome, StatsRequest};
use crate::model::Field;

/// A cell of a protected table: (division group, key text).
type CellKey = (Option<String>, Option<String>);

/// A cell of a protected table before it is published.
struct TableCell {
    key: Option<Value>,
    count: i64,
    /// The sum of its records' keys; unknown when a source did not say.
    digest: Option<u64>,
    /// Whether everyone knows the cell could exist.
    public: bool,
}

/// A statistics request's grant, held from phase 1 to the response.
pub struct StatsGate<'g> {
    ctx: Context<'g>,
    grant: StatsGrant,
    /// Whether this query's counts are exact (else protected).
    exact: bool,
    /// Whose budget the answer is charged to.
    principal: String,
}

/// The values of a field with a closed set that a filter on it admits.
fn admitted(f: &FieldFilter) -> BTreeSet<String> {
    f.field
        .values
        .iter()
        .filter(|v| filter::matches(f, Some(&Value::Text((**v).to_string()))))
        .map(|v| (*v).to_string())
        .collect()
}

/// Each closed-set field's values the query's filters keep (several
/// filters on one field intersect).
fn constraints(filters: &[FieldFilter]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut sets: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for f in filters {
        if f.field.values.is_empty() {
            continue;
        }
        let kept = admitted(f);
        sets.entry(f.field.name)
            .and_modify(|s| *s = s.intersection(&kept).cloned().collect())
            .or_insert(kept);
    }
    sets
}

impl<'g> StatsGate<'g> {
    /// Phase 1: may the caller count these records, group them by this
    /// field, filter them so; are the counts exact; has it budget left.
    pub fn authorize(
        ctx: Context<'g>,
        principal: &Principal,
        request: &mut StatsRequest,
        facts: &mut Facts,
    ) -> Result<Self, ApiError> {
        let _span = phase_one(principal, request.entity.name);
        facts.statistics = true;
        let enforcer = ctx.enforcer;
        let kind = request.entity.name;
        let requested = request.scope.first().cloned().unwrap_or_default();
        let grant = enforcer
            .authorize_stats(principal, kind, &requested)
            .map_err(|d| refused(facts, d))?;
        facts.policies = grant.policies.clone();
        facts.scope = grant.scope.clone();
        // For messages only.
        let allowed = || -> Vec<&str> {
            grant
                .groups
                .iter()
                .filter(|g| g.allowed)
                .map(|g| g.field.as_str())
                .collect()
        };
        if let Some(by) = request.by {
            if !enforcer.catalog.groupable(kind, by.name) {
                return Err(ApiError::invalid(format!(
                    "statistics cannot be grouped by `{}`: only categories can (fields.toml `group = true`); {kind} can be grouped by {}",
                    by.name,
                    list(&enforcer.catalog.groupable_fields(kind))
                )));
            }
            if !grant.may_group(by.name) {
                facts.decision = Some("deny");
                return Err(ApiError::forbidden(
                    "field_not_visible",
                    format!(
                        "your access does not let you count {kind} by `{}`; you may count them by {}",
                        by.name,
                        list(&allowed())
                    ),
                    grant
                        .group_rule(by.name)
                        .map(|r| r.policies.clone())
                        .unwrap_or_default(),
                ));
            }
        }
        for f in &request.filters {
            let name = f.field.name;
            if grant.sees_clear(name) || grant.may_group(name) {
                continue;
            }
            facts.decision = Some("deny");
            return Err(ApiError::forbidden(
                "field_not_visible",
                format!(
                    "cannot filter statistics on `{name}`: counts may be filtered on the division and on fields you may group by ({}){}",
                    list(&allowed()),
                    if grant.statistics_only {
                        ""
                    } else {
                        " or see in clear in your lists"
                    }
                ),
                grant
                    .group_rule(name)
                    .map(|r| r.policies.clone())
                    .unwrap_or_default(),
            ));
        }
        let mut constrained: Vec<&str> = request.filters.iter().map(|f| f.field.name).collect();
        constrained.extend(request.by.map(|b| b.name));
        // The record attribute's values the query keeps (the city's `loop=city`).
        let kept: Option<Vec<String>> = enforcer
            .catalog
            .record_attribute(kind)
            .and_then(|a| constraints(&request.filters).remove(a.name.as_str()))
            .map(|set| set.into_iter().collect());
        let exact = grant.exact_for(&constrained, kept.as_deref());
        // A spent budget refuses before any source is asked (repeats
        // included: answering them would tell a spent caller which of its
        // reformulations count the same records as an earlier answer).
        if let Err(wait) = ctx.budgets.available(&principal.id) {
            facts.decision = Some("deny");
            return Err(spent(ctx, wait));
        }
        // Protected noise is drawn from the records: every cell must say
        // which records it counts. The budget is charged at release, when
        // it is known whether the answer is new to this caller.
        request.records = !exact;
        request.scope = vec![grant.scope.clone()];
        Ok(StatsGate {
            ctx,
            grant,
            exact,
            principal: principal.id.clone(),
        })
    }

    /// Whether this query's counts are exact.
    pub fn exact(&self) -> bool {
        self.exact
    }

    /// Phase 2: cells outside the scope go; keys outside the grouped
    /// field's values go; counts are published exact or protected;
    /// divisions no source covers are marked; the caller's budget is
    /// charged for a new answer (429 when spent). The body.
    pub fn release(
        self,
        outcome: StatsOutcome,
        request: &StatsRequest,
        facts: &mut Facts,
    ) -> Result<Released, ApiError> {
        let (body, answer) = self.publish(outcome, request, facts);
        self.charge(answer, facts)?;
        Ok(Released::of(&body))
    }

    /// Charge the caller for an answer with this fingerprint (another
    /// request of the same caller may have spent the last query meanwhile).
    fn charge(&self, answer: u64, facts: &mut Facts) -> Result<(), ApiError> {
        match self.ctx.budgets.charge(&self.principal, answer) {
            Ok(_) => Ok(()),
            Err(wait) => {
                facts.decision = Some("deny");
                Err(spent(self.ctx, wait))
            }
        }
    }

    /// The body of phase 2 and the fingerprint of what it tells: each
    /// published cell's label, value and, for protected cells, the records
    /// behind it.
    fn publish(
        &self,
        outcome: StatsOutcome,
        request: &StatsRequest,
        facts: &mut Facts,
    ) -> (Json, u64) {
        let _span = tracing::info_span!("policy", phase = 2, cells = outcome.cells.len()).entered();
        let scope = self.grant.scope.clone();
        let ctx = self.ctx;
        let mut answer = std::hash::DefaultHasher::new();
        (request.entity.name, request.measure.map(|m| m.name())).hash(&mut answer);
        let mut unrecognised = 0i64;
        let mut cells: Vec<StatsCell> = Vec::with_capacity(outcome.cells.len());
        for c in outcome.cells {
            let inside = c
                .division
                .as_deref()
                .is_none_or(|d| d.starts_with(&scope) || scope.starts_with(d));
            if !inside {
                continue;
            }
            if let (Some(by), Some(key)) = (request.by, &c.key)
                && !is_value_of(by, key)
            {
                unrecognised += c.count;
                continue;
            }
            cells.push(c);
        }
        if unrecognised > 0 {
            tracing::warn!(
                resource = request.entity.name,
                by = request.by.map_or("", |b| b.name),
                records = unrecognised,
                "a source counted records under keys outside the field's values; they were left out"
            );
        }
        let groups = self.division_universe(request, &cells);
        let uncovered: BTreeSet<String> = groups
            .iter()
            .flatten()
            .filter(|d| !self.covered(request.entity.name, d))
            .cloned()
            .collect();
        let mut data = Vec::new();
        let mut suppressed = 0u64;
        if self.exact {
            for c in &cells {
                (&c.division, key_text(c.key.as_ref()), c.count).hash(&mut answer);
                data.push(cell_json(
                    c.division.as_deref(),
                    c.key.as_ref(),
                    Some(c.count),
                ));
            }
            // Every division asked for is listed: a covered one no source
            // counted anything in is an exact zero (the caller may list
            // the records, so an empty cell discloses nothing).
            if request.by.is_none() {
                for division in groups.iter().flatten() {
                    let counted = cells.iter().any(|c| c.division.as_ref() == Some(division));
                    if !counted && !uncovered.contains(division) {
                        data.push(cell_json(Some(division), None, Some(0)));
                    }
                }
                data.sort_by(|a, b| a["division"].as_str().cmp(&b["division"].as_str()));
            }
        } else {
            // True counts by (division, key); the universe's cells start at 0.
            let mut table: BTreeMap<CellKey, TableCell> = BTreeMap::new();
            let keys: Vec<Option<Value>> = match request.by {
                Some(by) => by
                    .values
                    .iter()
                    .map(|v| Some(Value::Text((*v).to_string())))
                    .collect(),
                None => vec![None],
            };
            for division in &groups {
                if division.as_ref().is_some_and(|d| uncovered.contains(d)) {
                    continue;
                }
                for key in &keys {
                    table.insert(
                        (division.clone(), key_text(key.as_ref())),
                        TableCell {
                            key: key.clone(),
                            count: 0,
                            digest: Some(0),
                            public: true,
                        },
                    );
                }
            }
            for c in &cells {
                let entry = table
                    .entry((c.division.clone(), key_text(c.key.as_ref())))
                    .or_insert(TableCell {
                        key: c.key.clone(),
                        count: 0,
                        digest: Some(0),
                        public: false,
                    });
                entry.count += c.count;
                entry.digest = entry.digest.zip(c.digest).map(|(a, b)| a.wrapping_add(b));
            }
            let protection = ctx.protection;
            let resource = request.entity.name;
            for ((division, key_label), cell) in &table {
                let published = match cell.digest {
                    Some(digest) => protection.publish_records(resource, cell.count, digest),
                    // A count that cannot say which records it counts
                    // cannot be perturbed consistently: it is not published.
                    None => {
                        tracing::warn!(
                            resource,
                            "a protected cell came without its record digest; it was suppressed"
                        );
                        Published::Suppressed
                    }
                };
                (
                    division,
                    key_label,
                    cell.digest,
                    published == Published::Suppressed,
                )
                    .hash(&mut answer);
                match published {
                    Published::Value(v) => {
                        data.push(cell_json(division.as_deref(), cell.key.as_ref(), Some(v)))
                    }
                    Published::Suppressed => {
                        suppressed += 1;
                        // Cells everyone knows could exist say so; others
                        // are left out, as an empty one would be.
                        if cell.public {
                            let mut out = cell_json(division.as_deref(), cell.key.as_ref(), None);
                            out["suppressed"] = json!(true);
                            data.push(out);
                        }
                    }
                }
            }
        }
        if let Some(by) = request.by {
            // Categories in the field's own order (汉族 first, as GB/T 3304).
            let rank = |c: &Json| {
                c["key"]
                    .as_str()
                    .and_then(|k| by.values.iter().position(|v| *v == k))
                    .unwrap_or(usize::MAX)
            };
            data.sort_by(|a, b| {
                let division = |c: &Json| c["division"].as_str().unwrap_or("").to_string();
                division(a).cmp(&division(b)).then(rank(a).cmp(&rank(b)))
            });
        }
        for d in &uncovered {
            d.hash(&mut answer);
            data.push(json!({ "division": d, "value": null, "not_covered": true }));
        }
        facts.rows = 0;
        facts.sources = outcome.reports.iter().map(|r| r.name.clone()).collect();
        facts.decision = Some("allow");
        let mut policy = json!({
            "scope": [scope],
            "statistics_only": self.grant.statistics_only,
            "counts": if self.exact { "exact" } else { "protected" },
            "suppressed": suppressed,
            "policies": self.grant.policies,
            "version": ctx.enforcer.engine.version(),
        });
        if !self.exact {
            let p = ctx.protection;
            policy["protection"] = json!({
                "method": "cell-key",
                "suppress_below": p.suppress_below,
                "max_noise": p.max_noise,
            });
        }
        let body = json!({
            "data": data,
            "partial": outcome.reports.iter().any(|r| r.error.is_some()),
            "sources": source_reports(&outcome.reports),
            "policy": policy,
        });
        (body, answer.finish())
    }

    /// Phase 2 of a measure (`metric=cases.<measure>`): the counts of the
    /// cases measured are released as any count; each published cell gets
    /// its `measure` only when at least `suppress_below` cases are behind
    /// it (whatever the caller's access), so no measure describes a case or
    /// two.
    pub fn release_measured(
        self,
        measured: crate::federation::measures::Measured,
        request: &StatsRequest,
        facts: &mut Facts,
    ) -> Result<Released, ApiError> {
        let floor = self.ctx.protection.suppress_below as i64;
        let counts: BTreeMap<CellKey, i64> = measured
            .counts
            .cells
            .iter()
            .map(|c| ((c.division.clone(), key_text(c.key.as_ref())), c.count))
            .collect();
        let values = measured.values;
        let (mut body, answer) = self.publish(measured.counts, request, facts);
        let mut answer = {
            let mut h = std::hash::DefaultHasher::new();
            answer.hash(&mut h);
            h
        };
        let mut withheld = 0u64;
        if let Some(cells) = body["data"].as_array_mut() {
            for cell in cells.iter_mut() {
                if cell["not_covered"] == json!(true) {
                    continue;
                }
                let key: CellKey = (
                    cell["division"].as_str().map(str::to_string),
                    cell["key"].as_str().map(str::to_string),
                );
                let n = counts.get(&key).copied().unwrap_or(0);
                let value = values.get(&key).copied().filter(|_| n >= floor.max(1));
                if value.is_none() {
                    withheld += 1;
                }
                // Two decimals: enough for hours and shares, no more.
                let shown = value.map(|v| (v * 100.0).round() / 100.0);
                shown.map(f64::to_bits).hash(&mut answer);
                cell["measure"] = shown.map_or(Json::Null, |v| json!(v));
            }
        }
        if let Some(m) = request.measure {
            body["policy"]["measure"] = json!({
                "name": m.name(),
                "means": m.doc(),
                "min_cases": floor,
                "withheld": withheld,
            });
        }
        self.charge(answer.finish(), facts)?;
        Ok(Released::of(&body))
    }

    /// The division groups whose existence tells nothing: with
    /// `group_by`, the registry's divisions of that level in the scope (or
    /// the scope's own ancestor at that level), plus any whose total count
    /// would be published anyway (at least `suppress_below`); without, the
    /// one group.
    fn division_universe(
        &self,
        request: &StatsRequest,
        cells: &[StatsCell],
    ) -> Vec<Option<String>> {
        let scope = &self.grant.scope;
        let n = match request.division_prefix {
            None => return vec![None],
            Some(n) if (n as usize) <= scope.len() => {
                return vec![Some(scope.chars().take(n as usize).collect())];
            }
            Some(n) => n as usize,
        };
        let mut groups: BTreeSet<String> = self
            .ctx
            .enforcer
            .engine
            .divisions_within(scope, n)
            .into_iter()
            .collect();
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for c in cells {
            if let Some(d) = c.division.as_deref() {
                *totals.entry(d).or_default() += c.count;
            }
        }
        let floor = self.ctx.protection.suppress_below as i64;
        groups.extend(
            totals
                .into_iter()
                .filter(|(_, total)| *total >= floor)
                .map(|(d, _)| d.to_string()),
        );
        groups.into_iter().map(Some).collect()
    }

    /// Whether some source listing `entity` covers (part of) `division`.
    fn covered(&self, entity: &str, division: &str) -> bool {
        self.ctx.sources.sources.iter().any(|s| {
            s.serves(entity)
                && !s.config.enrich.iter().any(|e| e == entity)
                && s.config
                    .coverage
                    .iter()
                    .any(|c| division.starts_with(c.as_str()) || c.starts_with(division))
        })
    }
}

/// 429: the caller's statistics budget is spent for now.
fn spent(ctx: Context<'_>, wait: std::time::Duration) -> ApiError {
    let s = ctx.statistics;
    ApiError::retry_after(
        ErrorCode::RateLimited,
        format!(
            "your statistics budget ({} new answers at once, {} an hour; an answer you already have costs nothing) is spent; retry in {} s",
            s.burst,
            s.queries_per_hour,
            wait.as_secs().max(1)
        ),
        wait.as_secs_f64().ceil() as u64,
    )
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "no field".into()
    } else {
        names.join(", ")
    }
}

/// Whether `key` may be published as a value of `field`.
fn is_value_of(field: &Field, key: &Value) -> bool {
    match key {
        Value::Null => true,
        Value::Text(t) => field.values.contains(&t.as_str()),
        _ => false,
    }
}

fn key_text(key: Option<&Value>) -> Option<String> {
    match key? {
        Value::Null => None,
        Value::Text(t) => Some(t.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn cell_json(division: Option<&str>, key: Option<&Value>, value: Option<i64>) -> Json {
    let mut cell = json!({ "value": value });
    if let Some(d) = division {
        cell["division"] = json!(d);
    }
    if let Some(k) = key {
        cell["key"] = value_json(k);
    }
    cell
}
