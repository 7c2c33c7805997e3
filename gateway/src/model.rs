//! The unified model: the resources the API serves, their fields, kinds and
//! sensitivity classes. Plugins map their sources onto these names; the API
//! validates queries against them.

use lianqiao_host::contract::ValueKind;

pub use lianqiao_policy::{FieldClass, FieldSpec, Mask};

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: ValueKind,
    /// Allowed values of an enumerated text field.
    pub values: &'static [&'static str],
    pub doc: &'static str,
    /// Written by the gateway from other fields, not read from sources:
    /// it can be projected but not filtered on.
    pub derived: bool,
}

#[derive(Debug)]
pub struct Entity {
    /// Resource name, as in `/v1/{name}` and in plugin manifests.
    pub name: &'static str,
    pub fields: &'static [Field],
    pub doc: &'static str,
}

impl Entity {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.name).collect()
    }
}

const fn field(name: &'static str, kind: ValueKind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        values: &[],
        doc,
        derived: false,
    }
}

const fn derived(name: &'static str, kind: ValueKind, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        values: &[],
        doc,
        derived: true,
    }
}

const fn enumerated(
    name: &'static str,
    values: &'static [&'static str],
    doc: &'static str,
) -> Field {
    Field {
        name,
        kind: ValueKind::Text,
        values,
        doc,
        derived: false,
    }
}

use ValueKind::{Boolean, Date, Integer, Text, Timestamp};

pub const LEVELS: &[&str] = &[
    "region",
    "city",
    "district",
    "street",
    "community",
    "grid",
    "building",
    "unit",
];
pub const GRID_TIERS: &[&str] = &["big", "medium", "small", "micro"];

/// The 56 ethnic groups, in the order of GB/T 3304 (codes 01–56).
pub const ETHNIC_GROUPS: &[&str] = &[
    "汉族",
    "蒙古族",
    "回族",
    "藏族",
    "维吾尔族",
    "苗族",
    "彝族",
    "壮族",
    "布依族",
    "朝鲜族",
    "满族",
    "侗族",
    "瑶族",
    "白族",
    "土家族",
    "哈尼族",
    "哈萨克族",
    "傣族",
    "黎族",
    "傈僳族",
    "佤族",
    "畲族",
    "高山族",
    "拉祜族",
    "水族",
    "东乡族",
    "纳西族",
    "景颇族",
    "柯尔克孜族",
    "土族",
    "达斡尔族",
    "仫佬族",
    "羌族",
    "布朗族",
    "撒拉族",
    "毛南族",
    "仡佬族",
    "锡伯族",
    "阿昌族",
    "普米族",
    "塔吉克族",
    "怒族",
    "乌孜别克族",
    "俄罗斯族",
    "鄂温克族",
    "德昂族",
    "保安族",
    "裕固族",
    "京族",
    "塔塔尔族",
    "独龙族",
    "鄂伦春族",
    "赫哲族",
    "门巴族",
    "珞巴族",
    "基诺族",
];

pub static DIVISIONS: Entity = Entity {
    name: "divisions",
    doc: "The administrative hierarchy: region → city → district → street → community → grid.",
    fields: &[
        field("id", Text, "Stable id (the code)."),
        field(
            "code",
            Text,
            "The division's code in prefix form (docs/api.md): 15, 1501, 150103, 9/12-digit statistical codes, local grid codes.",
        ),
        field("name", Text, "Name, e.g. 新华西路街道."),
        enumerated("level", LEVELS, "Level in the hierarchy."),
        enumerated("grid_tier", GRID_TIERS, "Tier of a grid (grids only)."),
        field("parent", Text, "Code of the parent division."),
        field(
            "division",
            Text,
            "The division the row belongs to (its own code).",
        ),
        derived(
            "national_code",
            Text,
            "The six-digit GB/T 2260 form of a region, city or district code (150100 for 1501); null below district level.",
        ),
        field("households", Integer, "Households living in the division."),
        field("population", Integer, "Residents living in the division."),
    ],
};

pub static GRIDS: Entity = Entity {
    name: "grids",
    doc: "Grids in detail: tier, households, head and party branch.",
    fields: &[
        field("id", Text, "Stable id (the grid code)."),
        field(
            "code",
            Text,
            "Local grid code; starts with its community's code.",
        ),
        field("name", Text, "Name of the grid."),
        enumerated(
            "tier",
            GRID_TIERS,
            "big (by households), medium (a compound), small (a building), micro (a unit).",
        ),
        field(
            "parent",
            Text,
            "The community or the grid of the tier above.",
        ),
        field("community", Text, "Code of the community."),
        field("division", Text, "The grid's own code."),
        field("households", Integer, "Households in the grid."),
        field("head", Text, "Worker id of the grid head."),
        field(
            "party_branch",
            Text,
            "Party organization id of the grid party branch.",
        ),
    ],
};

pub static PARTY_ORGS: Entity = Entity {
    name: "party-orgs",
    doc: "Party organizations: community committees, grid branches, building groups, functional and red-property branches.",
    fields: &[
        field("id", Text, "The party-link system's organization code."),
        field("name", Text, "Name, e.g. 兴康社区党委."),
        enumerated(
            "kind",
            &[
                "committee",
                "general_branch",
                "branch",
                "group",
                "functional",
                "red_property",
            ],
            "Kind of organization.",
        ),
        field("parent_org", Text, "The organization above."),
        field(
            "division",
            Text,
            "The division the organization belongs to.",
        ),
        field("member_count", Integer, "Members registered with it."),
        field("secretary_name", Text, "Name of its secretary."),
        field("founded_on", Date, "Date it was founded."),
    ],
};

pub static MEMBERS: Entity = Entity {
    name: "members",
    doc: "Party members (party-link system), with residence and roles from district databases.",
    fields: &[
        field("id", Text, "Stable member id (never the ID number)."),
        field("name", Text, "Name."),
        enumerated("gender", &["male", "female"], "Gender."),
        field("birth_date", Date, "Date of birth."),
        enumerated(
            "ethnicity",
            ETHNIC_GROUPS,
            "Ethnicity (民族), one of the 56 groups of GB/T 3304.",
        ),
        field("id_number", Text, "Resident ID number (18 characters)."),
        field("phone", Text, "Mobile phone."),
        field("org", Text, "Organization the member belongs to."),
        field("joined_on", Date, "Date the member joined the party."),
        enumerated(
            "status",
            &["regular", "in_service_registered", "retired"],
            "Membership status.",
        ),
        field("division", Text, "Division of the member's organization."),
        field("address", Text, "Home address."),
        field(
            "grid",
            Text,
            "The grid the member lives in (district database).",
        ),
        field("building", Text, "The building (district database)."),
        field("unit", Text, "The stair unit (district database)."),
        enumerated(
            "household_role",
            &["central", "bastion", "vanguard"],
            "\"Three households\" role (district database).",
        ),
    ],
};

pub static WORKERS: Entity = Entity {
    name: "workers",
    doc: "Grid staff and the \"four heads\": grid, compound, building and unit heads.",
    fields: &[
        field("id", Text, "Stable worker id."),
        field("name", Text, "Name."),
        enumerated("gender", &["male", "female"], "Gender."),
        field("phone", Text, "Mobile phone."),
        enumerated(
            "role",
            &[
                "grid_head",
                "compound_head",
                "building_head",
                "unit_head",
                "grid_worker",
                "assistant",
                "community_worker",
            ],
            "Post.",
        ),
        field("grid", Text, "The grid the post sits in."),
        field(
            "post_of",
            Text,
            "The grid, compound, building or unit the post is for.",
        ),
        field(
            "division",
            Text,
            "The division the row belongs to (the grid).",
        ),
        field(
            "is_party_member",
            Boolean,
            "Whether the worker is a party member.",
        ),
        field("since", Date, "In post since."),
    ],
};

pub static SERVICE_CENTERS: Entity = Entity {
    name: "service-centers",
    doc: "Party–masses service centres (1 + 8 + N: district, street, community, grid).",
    fields: &[
        field("id", Text, "The city platform's centre id."),
        field("name", Text, "Name."),
        enumerated(
            "level",
            &["district", "street", "community", "grid"],
            "Tier of the centre.",
        ),
        field("division", Text, "The division it serves."),
        field("address", Text, "Address."),
        field("area_m2", Integer, "Floor area, m²."),
        field("open_hours", Text, "Opening hours."),
    ],
};

pub static CASES: Entity = Entity {
    name: "cases",
    doc: "Problems handled through the 7-step closed loop; the city platform holds those that reached the city loop.",
    fields: &[
        field("id", Text, "Case id."),
        field("title", Text, "What the problem is."),
        field("category", Text, "Category."),
        enumerated("loop", CASE_LOOPS, "The loop that handles it."),
        enumerated("state", CASE_STATES, "Where it stands in the closed loop."),
        field("division", Text, "Where the problem is."),
        field("opened_at", Timestamp, "When it was reported."),
        field("updated_at", Timestamp, "Last change."),
        field("due_at", Timestamp, "When it must be closed."),
        field("reporter_name", Text, "Who reported it."),
        field("reporter_phone", Text, "The reporter's phone."),
        field(
            "departments",
            Text,
            "Departments that reported in (、-separated).",
        ),
        field("satisfaction", Integer, "Evaluation, 1–5."),
        field(
            "linked_case",
            Text,
            "The same problem's record on the other system: a whistled district case's city case, and back.",
        ),
    ],
};

/// The states of the closed loop, in model order.
pub const CASE_STATES: &[&str] = &[
    "discovered",
    "assessed",
    "whistled",
    "accepted",
    "reported_in",
    "feedback",
    "evaluated",
    "escalated",
    "closed",
];

/// The loops, lowest first.
pub const CASE_LOOPS: &[&str] = &["grid", "community", "street", "city"];

pub static CASE_STEPS: Entity = Entity {
    name: "case-steps",
    doc: "The history of cases: one row per step, as each system recorded it (the timeline of `GET /v1/cases/{id}`).",
    fields: &[
        field("id", Text, "Step id."),
        field("case_id", Text, "The case."),
        field("division", Text, "Where the case's problem is."),
        enumerated(
            "loop",
            CASE_LOOPS,
            "The loop handling the case after this step.",
        ),
        enumerated("state", CASE_STATES, "The state the step reached."),
        field("at", Timestamp, "When."),
        enumerated(
            "by_level",
            &["region", "city", "district", "street", "community", "grid"],
            "The level of whoever took the step.",
        ),
        field("note", Text, "What was done or why."),
    ],
};

/// Every resource the API serves.
pub static ENTITIES: &[&Entity] = &[
    &DIVISIONS,
    &GRIDS,
    &PARTY_ORGS,
    &MEMBERS,
    &WORKERS,
    &SERVICE_CENTERS,
    &CASES,
    &CASE_STEPS,
];

pub fn entity(name: &str) -> Option<&'static Entity> {
    ENTITIES.iter().copied().find(|e| e.name == name)
}

/// The class and mask of every field, from `config/fields.toml`.
pub type FieldClasses = lianqiao_policy::FieldCatalog;

/// Parse `fields.toml` (`field = "class"` or `field = { class, mask,
/// group }`); every model field must be classed, and nothing else may be;
/// only enumerated fields may be groupable. Problems come back as (key,
/// message) pairs.
pub fn parse_field_classes(text: &str) -> Result<FieldClasses, Vec<(String, String)>> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| vec![(String::new(), e.message().to_string())])?;
    let mut problems = Vec::new();
    let mut catalog = FieldClasses::default();
    let mut seen = std::collections::HashSet::new();
    for (entity_name, fields) in &table {
        let Some(entity) = entity(entity_name) else {
            problems.push((
                entity_name.clone(),
                "no such resource in the unified model".into(),
            ));
            continue;
        };
        let Some(fields) = fields.as_table() else {
            problems.push((
                entity_name.clone(),
                "must be a table of field = class".into(),
            ));
            continue;
        };
        for (name, spec) in fields {
            let key = format!("{entity_name}.{name}");
            let Some(field) = entity.field(name) else {
                problems.push((key, format!("`{entity_name}` has no such field")));
                continue;
            };
            let (class, mask, group) = match spec {
                toml::Value::String(class) => (Some(class.as_str()), None, None),
                toml::Value::Table(t) => {
                    if let Some(stray) = t
                        .keys()
                        .find(|k| !matches!(k.as_str(), "class" | "mask" | "group"))
                    {
                        problems.push((
                            format!("{key}.{stray}"),
                            "unknown key; a field takes `class`, `mask` and `group`".into(),
                        ));
                    }
                    (
                        t.get("class").and_then(toml::Value::as_str),
                        t.get("mask").map(toml::Value::as_str),
                        t.get("group"),
                    )
                }
                _ => (None, None, None),
            };
            let groupable = match group {
                None => false,
                Some(toml::Value::Boolean(g)) => *g,
                Some(_) => {
                    problems.push((format!("{key}.group"), "must be true or false".into()));
                    false
                }
            };
            if groupable && field.values.is_empty() {
                problems.push((
                    format!("{key}.group"),
                    format!(
                        "`{name}` cannot be grouped on: only fields with a closed set of values (categories such as gender or tier) can; grouping by identifiers, names, phones, dates or free text would publish them"
                    ),
                ));
            }
            let Some(class) = class.and_then(FieldClass::parse) else {
                problems.push((
                    key,
                    "must be one of public, internal, personal, sensitive".into(),
                ));
                continue;
            };
            let mask = match mask {
                None => Mask::Withhold,
                Some(m) => match m.and_then(Mask::parse) {
                    Some(m) => m,
                    None => {
                        problems.push((
                            format!("{key}.mask"),
                            format!("must be one of {}", Mask::NAMES),
                        ));
                        continue;
                    }
                },
            };
            seen.insert((entity_name.clone(), name.clone()));
            catalog.insert(
                entity.name,
                FieldSpec {
                    name: name.clone(),
                    class,
                    mask,
                    attribute_values: if lianqiao_policy::fields::RECORD_ATTRIBUTES
                        .contains(&field.name)
                    {
                        field.values.iter().map(|v| v.to_string()).collect()
                    } else {
                        Vec::new()
                    },
                    groupable,
                },
            );
        }
    }
    for entity in ENTITIES {
        for field in entity.fields {
            if !seen.contains(&(entity.name.to_string(), field.name.to_string())) {
                problems.push((
                    format!("{}.{}", entity.name, field.name),
                    "has no class; add one".into(),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(problems)
    }
}

/// A kind's name, as `fields` in a source file and docs/model.md write it.
pub fn kind_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Boolean => "boolean",
        ValueKind::Integer => "integer",
        ValueKind::Float => "float",
        ValueKind::Text => "text",
        ValueKind::Date => "date",
        ValueKind::Timestamp => "timestamp",
    }
}

/// The unified model as Markdown tables, one per resource (the generated
/// part of docs/model.md; a test keeps the two in step).
pub fn reference_markdown(classes: &FieldClasses) -> String {
    let mut out = String::new();
    for (i, entity) in ENTITIES.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "### `{}`\n\n{}\n\n| field | kind | class | masked as | statistics group by | values | meaning |\n|---|---|---|---|---|---|---|\n",
            entity.name, entity.doc
        ));
        for field in entity.fields {
            let mask = classes
                .shown_mask(entity.name, field.name)
                .map_or("—", Mask::as_str);
            out.push_str(&format!(
                "| `{}` | {}{} | {} | {} | {} | {} | {} |\n",
                field.name,
                kind_name(field.kind),
                if field.derived { " (derived)" } else { "" },
                classes.class(entity.name, field.name).as_str(),
                mask,
                if classes.groupable(entity.name, field.name) {
                    "yes"
                } else {
                    "—"
                },
                if field.values.is_empty() {
                    "—".to_string()
                } else {
                    field.values.join(", ")
                },
                field.doc.replace('|', "\\|"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_model_md_is_generated_from_the_model() {
        let classes = parse_field_classes(include_str!("../../config/fields.toml"))
            .unwrap_or_else(|p| panic!("fields.toml: {p:?}"));
        let generated = reference_markdown(&classes);
        let doc = include_str!("../../docs/model.md");
        assert!(
            doc.contains(&generated),
            "docs/model.md is out of date; its generated part must be:\n{generated}"
        );
    }

    #[test]
    fn the_shipped_fields_file_classes_every_field() {
        let text = include_str!("../../config/fields.toml");
        let classes = parse_field_classes(text).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(classes.class("members", "id_number"), FieldClass::Sensitive);
        assert_eq!(classes.class("members", "phone"), FieldClass::Personal);
        assert_eq!(classes.class("grids", "name"), FieldClass::Public);
        let phone = classes.field("members", "phone").unwrap();
        assert_eq!(phone.mask, Mask::Phone);
        let ethnicity = classes.field("members", "ethnicity").unwrap();
        assert_eq!(ethnicity.mask, Mask::Withhold, "no mask given: withheld");
        let lp = classes.field("cases", "loop").unwrap();
        assert_eq!(lp.attribute_values, ["grid", "community", "street", "city"]);
        assert!(classes.groupable("members", "gender"));
        assert!(classes.groupable("members", "ethnicity"));
        for never in ["id", "id_number", "name", "phone", "address", "birth_date"] {
            assert!(!classes.groupable("members", never), "{never}");
        }
        assert!(!classes.groupable("workers", "is_party_member"));
    }

    #[test]
    fn only_categories_can_be_grouped_on() {
        let text = include_str!("../../config/fields.toml").replace(
            "id_number = { class = \"sensitive\", mask = \"id-number\" }",
            "id_number = { class = \"sensitive\", mask = \"id-number\", group = true }",
        );
        let problems = parse_field_classes(&text).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(k, m)| k == "members.id_number.group" && m.contains("closed set")),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_masks_and_stray_keys_are_reported() {
        let mut text = include_str!("../../config/fields.toml").to_string();
        text = text.replace(
            "phone = { class = \"personal\", mask = \"phone\" }",
            "phone = { class = \"personal\", mask = \"stars\", colour = \"red\" }",
        );
        let problems = parse_field_classes(&text).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"members.phone.mask"), "{problems:?}");
        assert!(keys.contains(&"members.phone.colour"), "{problems:?}");
    }

    #[test]
    fn gaps_and_strays_are_reported() {
        let problems =
            parse_field_classes("[grids]\nname = \"public\"\ncolour = \"public\"\n[nothing]\n")
                .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"grids.colour"));
        assert!(keys.contains(&"nothing"));
        assert!(
            keys.contains(&"members.id_number"),
            "unclassed fields are named"
        );
    }
}
