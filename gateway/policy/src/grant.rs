//! Enforcement in two phases.
//!
//! Phase 1, before anything runs: may this principal run this query at all;
//! which division subtree (the scope, pushed down to every source as the
//! query's division) and, for cases, which loops (pushed down as a filter);
//! and how each field is shown. Phase 2, after the merge: every row is
//! checked again against the policy for its own division (defence in depth:
//! a source that ignores the scope leaks nothing), and fields are masked or
//! withheld as phase 1 decided. Both phases ask the cached engine, so the
//! per-row cost is a lookup.

use std::sync::Arc;

use serde::Serialize;

use crate::division;
use crate::engine::{Action, Decision, PolicyEngine, Question};
use crate::fields::{FieldCatalog, FieldClass};
use crate::mask::Mask;
use crate::principal::Principal;

/// How one field is shown to one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "as", content = "mask")]
pub enum Visibility {
    Clear,
    Masked(Mask),
    Withheld,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Clear => "clear",
            Visibility::Masked(_) => "masked",
            Visibility::Withheld => "withheld",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldRule {
    pub field: String,
    pub class: FieldClass,
    #[serde(flatten)]
    pub visibility: Visibility,
    /// The policies that decided it (permits for what is shown, forbids
    /// for what a forbid withheld).
    pub policies: Vec<String>,
}

/// Phase 1's answer for a list.
#[derive(Debug, Clone, Serialize)]
pub struct ListGrant {
    pub kind: String,
    /// The division subtree the principal may see of what it asked for.
    pub scope: String,
    /// For resources with a record attribute (cases' `loop`): the values
    /// the principal may see, when not all of them.
    pub attribute: Option<(String, Vec<String>)>,
    pub fields: Vec<FieldRule>,
    /// The permits that allowed the list.
    pub policies: Vec<String>,
}

impl ListGrant {
    /// How `field` is shown; a field the catalog does not know is withheld.
    pub fn visibility(&self, field: &str) -> Visibility {
        self.fields
            .iter()
            .find(|f| f.field == field)
            .map_or(Visibility::Withheld, |f| f.visibility)
    }

    pub fn rule(&self, field: &str) -> Option<&FieldRule> {
        self.fields.iter().find(|f| f.field == field)
    }
}

/// The policy's `group` decision for one groupable field.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRule {
    pub field: String,
    pub class: FieldClass,
    pub allowed: bool,
    /// The permits that allowed it, or the forbids that denied it.
    pub policies: Vec<String>,
}

/// Phase 1's answer for statistics.
#[derive(Debug, Clone, Serialize)]
pub struct StatsGrant {
    pub kind: String,
    pub scope: String,
    /// The principal may list none of these records, only count them:
    /// every count it gets is protected.
    pub statistics_only: bool,
    /// The `group` decision for every groupable field of the resource.
    pub groups: Vec<GroupRule>,
    /// The permits that allowed counting at all.
    pub policies: Vec<String>,
    /// What the principal may see of the records themselves, when it may
    /// list some of them.
    #[serde(skip)]
    pub records: Option<ListGrant>,
}

impl StatsGrant {
    /// The `group` decision on `field`; `None` for a field that is not
    /// groupable at all.
    pub fn group_rule(&self, field: &str) -> Option<&GroupRule> {
        self.groups.iter().find(|g| g.field == field)
    }

    /// May statistics be grouped by, or filtered on, `field`?
    pub fn may_group(&self, field: &str) -> bool {
        self.group_rule(field).is_some_and(|g| g.allowed)
    }

    /// Does the principal see `field` in clear in the records it may list?
    pub fn sees_clear(&self, field: &str) -> bool {
        self.records
            .as_ref()
            .is_some_and(|g| g.visibility(field) == Visibility::Clear)
    }

    /// May a count constrained by `fields` (grouping and filters) be
    /// exact? Only when it tells the principal nothing its lists would not:
    /// it may list the records, sees every constraining field in clear, and
    /// — where the policy shows only some values of a record attribute
    /// (the city sees only city-loop cases) — the query keeps to those
    /// values (`attribute_filter`: the values the query restricts the
    /// attribute to, if it does).
    pub fn exact_for(&self, fields: &[&str], attribute_filter: Option<&[String]>) -> bool {
        let Some(records) = &self.records else {
            return false;
        };
        if !fields.iter().all(|f| self.sees_clear(f)) {
            return false;
        }
        match (&records.attribute, attribute_filter) {
            (None, _) => true,
            (Some((_, allowed)), Some(asked)) => {
                !asked.is_empty() && asked.iter().all(|v| allowed.contains(v))
            }
            (Some(_), None) => false,
        }
    }
}

/// Why a query may not run.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    pub message: String,
    /// The forbids that denied it; empty when nothing permits it.
    pub policies: Vec<String>,
    /// The machine-readable why: `outside_jurisdiction`,
    /// `no_policy_permits` or `forbidden_by_policy`.
    pub reason: &'static str,
}

/// The shown form of a text value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    Clear,
    Masked(String),
    Withheld,
}

impl Visibility {
    /// Apply to one text value.
    pub fn show(self, value: &str) -> Shown {
        match self {
            Visibility::Clear => Shown::Clear,
            Visibility::Withheld => Shown::Withheld,
            Visibility::Masked(mask) => match mask.apply(value) {
                Some(masked) => Shown::Masked(masked),
                None => Shown::Withheld,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Enforcer {
    pub engine: Arc<PolicyEngine>,
    pub catalog: Arc<FieldCatalog>,
}

impl Enforcer {
    fn question<'a>(
        p: &'a Principal,
        action: Action,
        kind: &'a str,
        division: &'a str,
    ) -> Question<'a> {
        Question {
            principal: p,
            action,
            kind,
            division,
            record_loop: None,
            field: None,
            to: None,
        }
    }

    /// May `p` move a case of `case_loop` in `division` to the state `to`
    /// (`discovered`: create it)? The permits that allowed it, or why not.
    pub fn authorize_write(
        &self,
        p: &Principal,
        division: &str,
        case_loop: &str,
        to: &str,
    ) -> Result<Vec<String>, Denied> {
        let d = self.engine.decide(&Question {
            record_loop: Some(case_loop),
            to: Some(to),
            ..Self::question(p, Action::WriteCase, "cases", division)
        });
        if d.allowed {
            return Ok(d.policies);
        }
        let mut denied = Self::denial(p, Action::WriteCase, "cases", division, &d);
        denied.message = if d.policies.is_empty() {
            format!(
                "no policy permits a {} principal ({}) to move a {case_loop}-loop case in {division} to `{to}`",
                p.level, p.division
            )
        } else {
            format!(
                "moving a {case_loop}-loop case in {division} to `{to}` is forbidden by policy {}",
                d.policies
                    .iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(denied)
    }

    fn scope<'a>(p: &'a Principal, kind: &str, requested: &'a str) -> Result<&'a str, Denied> {
        division::narrow(requested, &p.division).ok_or_else(|| Denied {
            message: format!(
                "division {requested} is outside your jurisdiction ({} {}); ask for {kind} in {} or inside it",
                p.level, p.division, p.division
            ),
            policies: Vec::new(),
            reason: "outside_jurisdiction",
        })
    }

    fn denial(p: &Principal, action: Action, kind: &str, scope: &str, d: &Decision) -> Denied {
        let message = if d.policies.is_empty() {
            format!(
                "no policy permits a {} principal ({}) to {} {kind} in {scope} for the purpose `{}`",
                p.level,
                p.division,
                action.as_str(),
                p.purpose
            )
        } else {
            format!(
                "`{}` of {kind} in {scope} is forbidden by policy {}",
                action.as_str(),
                d.policies
                    .iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Denied {
            message,
            policies: d.policies.clone(),
            reason: if d.policies.is_empty() {
                "no_policy_permits"
            } else {
                "forbidden_by_policy"
            },
        }
    }

    /// Phase 1 for a list of `kind` in the subtree `requested`.
    pub fn authorize_list(
        &self,
        p: &Principal,
        kind: &str,
        requested: &str,
    ) -> Result<ListGrant, Denied> {
        let scope = Self::scope(p, kind, requested)?;
        let (policies, attribute) = match self.catalog.record_attribute(kind) {
            Some(attr) => {
                let mut allowed = Vec::new();
                let mut policies = Vec::new();
                let mut last = None;
                for value in &attr.attribute_values {
                    let d = self.engine.decide(&Question {
                        record_loop: Some(value),
                        ..Self::question(p, Action::List, kind, scope)
                    });
                    if d.allowed {
                        allowed.push(value.clone());
                        policies.extend(d.policies.iter().cloned());
                    }
                    last = Some(d);
                }
                if allowed.is_empty() {
                    let d = last.unwrap_or(Decision {
                        allowed: false,
                        policies: Vec::new(),
                        errors: Vec::new(),
                    });
                    return Err(Self::denial(p, Action::List, kind, scope, &d));
                }
                policies.sort();
                policies.dedup();
                let attribute = (allowed.len() < attr.attribute_values.len())
                    .then(|| (attr.name.clone(), allowed));
                (policies, attribute)
            }
            None => {
                let d = self
                    .engine
                    .decide(&Self::question(p, Action::List, kind, scope));
                if !d.allowed {
                    return Err(Self::denial(p, Action::List, kind, scope, &d));
                }
                (d.policies, None)
            }
        };
        let fields = self
            .catalog
            .fields(kind)
            .iter()
            .map(|f| {
                let ask = |action| {
                    self.engine.decide(&Question {
                        field: Some((f.name.as_str(), f.class)),
                        ..Self::question(p, action, kind, scope)
                    })
                };
                let (clear, masked) = match f.class {
                    FieldClass::Public => (None, None),
                    FieldClass::Internal => (Some(Action::ReadInternal), None),
                    FieldClass::Personal => {
                        (Some(Action::ReadPersonal), Some(Action::ReadPersonalMasked))
                    }
                    FieldClass::Sensitive => (
                        Some(Action::ReadSensitive),
                        Some(Action::ReadSensitiveMasked),
                    ),
                };
                let (visibility, policies) = match clear {
                    None => (Visibility::Clear, Vec::new()),
                    Some(action) => {
                        let d = ask(action);
                        if d.allowed {
                            (Visibility::Clear, d.policies)
                        } else if let Some(masked_action) = masked {
                            let m = ask(masked_action);
                            if m.allowed && f.mask != Mask::Withhold {
                                (Visibility::Masked(f.mask), m.policies)
                            } else {
                                // What withheld it: a forbid, if one did.
                                let forbids = if m.allowed { d.policies } else { m.policies };
                                (Visibility::Withheld, forbids)
                            }
                        } else {
                            (Visibility::Withheld, d.policies)
                        }
                    }
                };
                FieldRule {
                    field: f.name.clone(),
                    class: f.class,
                    visibility,
                    policies,
                }
            })
            .collect();
        Ok(ListGrant {
            kind: kind.to_string(),
            scope: scope.to_string(),
            attribute,
            fields,
            policies,
        })
    }

    /// Phase 2: may this row, in `division` (with the record attribute
    /// `attribute`), leave the gateway under `grant`? Cached per division.
    pub fn admits(
        &self,
        p: &Principal,
        grant: &ListGrant,
        division: &str,
        attribute: Option<&str>,
    ) -> bool {
        if !division::is_within(division, &grant.scope) {
            return false;
        }
        if let Some((_, allowed)) = &grant.attribute {
            match attribute {
                Some(v) if allowed.iter().any(|a| a == v) => {}
                _ => return false,
            }
        }
        let has_attribute = self.catalog.record_attribute(&grant.kind).is_some();
        self.engine.allows(&Question {
            record_loop: if has_attribute {
                Some(attribute.unwrap_or(""))
            } else {
                None
            },
            ..Self::question(p, Action::List, &grant.kind, division)
        })
    }

    /// Phase 1 for statistics over `kind` in `requested`: may the
    /// principal count these records at all, may it list them (exact
    /// counts are possible), and the `group` decision for every groupable
    /// field. Which grouping and filters a query may use is checked against
    /// this grant by the disclosure gate.
    pub fn authorize_stats(
        &self,
        p: &Principal,
        kind: &str,
        requested: &str,
    ) -> Result<StatsGrant, Denied> {
        let scope = Self::scope(p, kind, requested)?;
        let d = self
            .engine
            .decide(&Self::question(p, Action::Aggregate, kind, scope));
        if !d.allowed {
            return Err(Self::denial(p, Action::Aggregate, kind, scope, &d));
        }
        let groups = self
            .catalog
            .fields(kind)
            .iter()
            .filter(|f| f.groupable)
            .map(|f| {
                let g = self.engine.decide(&Question {
                    field: Some((f.name.as_str(), f.class)),
                    ..Self::question(p, Action::Group, kind, scope)
                });
                GroupRule {
                    field: f.name.clone(),
                    class: f.class,
                    allowed: g.allowed,
                    policies: g.policies,
                }
            })
            .collect();
        let records = self.authorize_list(p, kind, scope).ok();
        Ok(StatsGrant {
            kind: kind.to_string(),
            scope: scope.to_string(),
            statistics_only: records.is_none(),
            records,
            groups,
            policies: d.policies,
        })
    }
}

impl Enforcer {
    /// What the policy decides for `principal` asking to `action` (`list`
    /// or `aggregate`) `kind` in `division`, and which policies decided it:
    /// the operator's view (CLI `lianqiao policy explain`, API
    /// `GET /v1/_explain`).
    pub fn explain(
        &self,
        principal: &Principal,
        action: &str,
        kind: &str,
        division: &str,
    ) -> serde_json::Value {
        let describe = |ids: &[String]| -> Vec<serde_json::Value> {
            ids.iter()
                .map(|id| match self.engine.policy(id) {
                    Some(info) => serde_json::json!(info),
                    None => serde_json::json!({ "id": id }),
                })
                .collect()
        };
        let mut out = serde_json::json!({
            "principal": principal,
            "action": action,
            "resource": kind,
            "division": division,
            "policy_version": self.engine.version(),
        });
        match action {
            "aggregate" => match self.authorize_stats(principal, kind, division) {
                Ok(g) => {
                    out["decision"] = "allow".into();
                    out["scope"] = g.scope.clone().into();
                    out["statistics_only"] = g.statistics_only.into();
                    out["policies"] = describe(&g.policies).into();
                    out["groups"] = g
                        .groups
                        .iter()
                        .map(|r| {
                            serde_json::json!({
                                "field": r.field,
                                "class": r.class,
                                "group": if r.allowed { "allow" } else { "deny" },
                                "policies": describe(&r.policies),
                            })
                        })
                        .collect::<Vec<_>>()
                        .into();
                }
                Err(d) => {
                    out["decision"] = "deny".into();
                    out["reason"] = d.message.clone().into();
                    out["policies"] = describe(&d.policies).into();
                }
            },
            _ => match self.authorize_list(principal, kind, division) {
                Ok(g) => {
                    out["decision"] = "allow".into();
                    out["scope"] = g.scope.clone().into();
                    out["policies"] = describe(&g.policies).into();
                    if let Some((name, values)) = &g.attribute {
                        out["only"] = serde_json::json!({ name: values });
                    }
                    out["fields"] = g
                        .fields
                        .iter()
                        .map(|f| {
                            serde_json::json!({
                                "field": f.field,
                                "class": f.class,
                                "as": f.visibility.as_str(),
                                "mask": match f.visibility {
                                    Visibility::Masked(m) => serde_json::json!(m),
                                    _ => serde_json::Value::Null,
                                },
                                "policies": describe(&f.policies),
                            })
                        })
                        .collect::<Vec<_>>()
                        .into();
                }
                Err(d) => {
                    out["decision"] = "deny".into();
                    out["reason"] = d.message.clone().into();
                    out["policies"] = describe(&d.policies).into();
                }
            },
        }
        out
    }
}
