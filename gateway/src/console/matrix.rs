//! "Who sees what": for each level and resource, the policy's decision and
//! every field's visibility (clear, masked with its mask, withheld), with
//! the policies that decided each — asked of the enforcing engine itself
//! through `Enforcer::explain`, the same call `lianqiao policy explain`
//! and `/v1/_explain` make, so the console cannot disagree with them.

use lianqiao_policy::{Enforcer, Level, Principal};
use serde_json::{Value, json};

use crate::model::ENTITIES;

/// The default jurisdiction: a grid of Huimin (the demo's district), so
/// every level from the region down has a division on its path.
pub const DEFAULT_DIVISION: &str = "15010300100101";

/// Characters of a division code at each level (grids take the rest).
fn prefix(level: Level) -> usize {
    match level {
        Level::Region => 2,
        Level::City => 4,
        Level::District => 6,
        Level::Street => 9,
        Level::Community => 12,
        Level::Grid => usize::MAX,
    }
}

/// Staff of `level` with `roles` whose jurisdiction holds `division` (its
/// ancestor at that level), asking for `purpose`.
pub fn principal_at(level: Level, division: &str, purpose: &str, roles: &[String]) -> Principal {
    let code = &division[..division.len().min(prefix(level))];
    Principal::new(
        format!("console-{}", level.as_str()),
        level,
        code,
        roles.to_vec(),
        purpose,
    )
}

/// The matrix for `division`, `purpose` and staff holding `roles`: one row
/// per level, one cell per resource (the explain answer for listing it in
/// the level's own jurisdiction).
pub fn matrix(enforcer: &Enforcer, division: &str, purpose: &str, roles: &[String]) -> Value {
    let rows: Vec<Value> = Level::ALL
        .iter()
        .map(|level| {
            let principal = principal_at(*level, division, purpose, roles);
            let cells: Vec<Value> = ENTITIES
                .iter()
                .map(|entity| {
                    let explained =
                        enforcer.explain(&principal, "list", entity.name, &principal.division);
                    json!({
                        "resource": entity.name,
                        "decision": explained["decision"],
                        "scope": explained["scope"],
                        "only": explained["only"],
                        "fields": explained["fields"],
                        "policies": explained["policies"],
                        "reason": explained["reason"],
                    })
                })
                .collect();
            json!({
                "level": level.as_str(),
                "division": principal.division,
                "resources": cells,
            })
        })
        .collect();
    json!({
        "division": division,
        "purpose": purpose,
        "roles": roles,
        "policy_version": enforcer.engine.version(),
        "levels": rows,
    })
}
