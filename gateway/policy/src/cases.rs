//! Table-driven policy tests: `lianqiao policy test config/policy/tests/`.
//!
//! Each `*.toml` file holds `[[case]]`s: a principal, a request, and what
//! the policy must answer — allow or deny, the scope, the deciding
//! policies, how each named field is shown.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::grant::Enforcer;
use crate::principal::{Level, Principal};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasePrincipal {
    #[serde(default = "default_id")]
    id: String,
    level: String,
    division: String,
    #[serde(default)]
    roles: Vec<String>,
}

fn default_id() -> String {
    "policy-test".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: CasePrincipal,
    purpose: String,
    /// `list` or `aggregate`.
    action: String,
    resource: String,
    division: String,
    /// `allow` or `deny`.
    expect: String,
    scope: Option<String>,
    /// Policies that must be among the deciding ones.
    #[serde(default)]
    policies: Vec<String>,
    /// field → clear | masked | withheld
    #[serde(default)]
    fields: BTreeMap<String, String>,
    /// For resources with a record attribute: the values visible.
    visible_loops: Option<Vec<String>>,
    /// For `aggregate`: whether the principal may list none of the records
    /// (every count it gets is protected).
    statistics_only: Option<bool>,
    /// For `aggregate`: field → allow | deny, the `group` decision (may
    /// statistics be grouped by or filtered on the field).
    #[serde(default)]
    groups: BTreeMap<String, String>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub problems: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Run every `*.toml` in `dir` against `enforcer`.
pub fn run_dir(enforcer: &Enforcer, dir: &Path) -> Result<Vec<CaseResult>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no *.toml case files", dir.display()));
    }
    let mut results = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        results.extend(run(enforcer, &path.display().to_string(), &text)?);
    }
    Ok(results)
}

/// Run the cases of one file.
pub fn run(enforcer: &Enforcer, file: &str, text: &str) -> Result<Vec<CaseResult>, String> {
    let parsed: File = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    if parsed.cases.is_empty() {
        return Err(format!("{file}: no [[case]] entries"));
    }
    Ok(parsed
        .cases
        .into_iter()
        .map(|case| CaseResult {
            file: file.to_string(),
            name: case.name.clone(),
            problems: check(enforcer, &case),
        })
        .collect())
}

fn check(enforcer: &Enforcer, case: &Case) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(level) = Level::parse(&case.principal.level) else {
        return vec![format!(
            "principal.level `{}` is not one of {}",
            case.principal.level,
            Level::names()
        )];
    };
    let principal = Principal::new(
        case.principal.id.clone(),
        level,
        case.principal.division.clone(),
        case.principal.roles.iter().cloned(),
        case.purpose.clone(),
    );
    let want_allow = match case.expect.as_str() {
        "allow" => true,
        "deny" => false,
        other => return vec![format!("expect must be allow or deny, got `{other}`")],
    };
    let expect_policies = |got: &[String], problems: &mut Vec<String>| {
        for p in &case.policies {
            if !got.contains(p) {
                problems.push(format!("deciding policies {got:?} do not include `{p}`"));
            }
        }
    };
    match case.action.as_str() {
        "list" => match enforcer.authorize_list(&principal, &case.resource, &case.division) {
            Ok(grant) => {
                if !want_allow {
                    problems.push(format!("allowed (by {:?}), expected deny", grant.policies));
                }
                if let Some(scope) = &case.scope
                    && scope != &grant.scope
                {
                    problems.push(format!("scope {}, expected {scope}", grant.scope));
                }
                expect_policies(&grant.policies, &mut problems);
                for (field, want) in &case.fields {
                    match grant.rule(field) {
                        None => {
                            problems.push(format!("`{field}` is not a field of {}", case.resource))
                        }
                        Some(rule) if rule.visibility.as_str() != want => problems.push(format!(
                            "`{field}` is {}, expected {want} (policies {:?})",
                            rule.visibility.as_str(),
                            rule.policies
                        )),
                        Some(_) => {}
                    }
                }
                if let Some(want) = &case.visible_loops {
                    let got = grant.attribute.as_ref().map(|(_, v)| v.clone());
                    let all = enforcer
                        .catalog
                        .record_attribute(&case.resource)
                        .map(|a| a.attribute_values.clone());
                    let got = got.or(all).unwrap_or_default();
                    if &got != want {
                        problems.push(format!("visible loops {got:?}, expected {want:?}"));
                    }
                }
            }
            Err(denied) => {
                if want_allow {
                    problems.push(format!("denied ({}), expected allow", denied.message));
                }
                expect_policies(&denied.policies, &mut problems);
            }
        },
        "aggregate" => match enforcer.authorize_stats(&principal, &case.resource, &case.division) {
            Ok(grant) => {
                if !want_allow {
                    problems.push("allowed, expected deny".into());
                }
                if let Some(scope) = &case.scope
                    && scope != &grant.scope
                {
                    problems.push(format!("scope {}, expected {scope}", grant.scope));
                }
                if let Some(want) = case.statistics_only
                    && want != grant.statistics_only
                {
                    problems.push(format!(
                        "statistics_only {}, expected {want}",
                        grant.statistics_only
                    ));
                }
                for (field, want) in &case.groups {
                    match grant.group_rule(field) {
                        None => problems.push(format!(
                            "`{field}` is not a groupable field of {} (fields.toml: group = true)",
                            case.resource
                        )),
                        Some(rule) => {
                            let got = if rule.allowed { "allow" } else { "deny" };
                            if got != want {
                                problems.push(format!(
                                    "grouping by `{field}`: {got}, expected {want} (policies {:?})",
                                    rule.policies
                                ));
                            }
                        }
                    }
                }
                expect_policies(&grant.policies, &mut problems);
            }
            Err(denied) => {
                if want_allow {
                    problems.push(format!("denied ({}), expected allow", denied.message));
                }
                expect_policies(&denied.policies, &mut problems);
            }
        },
        other => problems.push(format!("action must be list or aggregate, got `{other}`")),
    }
    problems
}
