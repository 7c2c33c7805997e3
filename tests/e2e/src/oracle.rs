//! DOMAIN.md's "who sees what", written independently of Cedar: the
//! oracle the policy property tests check the gateway against.

use lianqiao_policy::{FieldClass, Level};

/// What a level may see of a field, at most.
#[derive(Debug, PartialEq, PartialOrd, Clone, Copy)]
pub enum Allowed {
    Nothing,
    Masked,
    Clear,
}

/// A field of `class` for a principal of `level` declaring `purpose`:
/// grids know their people, communities their names, streets and districts
/// see personal data masked; sensitive data is masked at most, near the
/// people; a statistics purpose sees no person.
pub fn field_access(level: Level, purpose: &str, class: FieldClass, field: &str) -> Allowed {
    use Level::*;
    match class {
        FieldClass::Public | FieldClass::Internal => Allowed::Clear,
        _ if purpose == "statistics" => Allowed::Nothing,
        FieldClass::Sensitive => match level {
            Grid | Community => Allowed::Masked,
            _ => Allowed::Nothing,
        },
        FieldClass::Personal => match level {
            Grid => Allowed::Clear,
            Community if field.ends_with("name") => Allowed::Clear,
            Community | Street | District => Allowed::Masked,
            City | Region => Allowed::Nothing,
        },
    }
}

/// Whether a level may see records of `entity` (with `case_loop` for
/// cases) at all: the city and the region see statistics, and only the
/// cases that reached the city loop.
pub fn sees_rows(level: Level, entity: &str, case_loop: Option<&str>) -> bool {
    match (level, entity) {
        (_, "grids" | "party-orgs" | "divisions" | "service-centers") => true,
        (Level::City, "cases") => case_loop == Some("city"),
        (Level::City | Level::Region, _) => false,
        _ => true,
    }
}
