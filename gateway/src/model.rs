//! The unified model: the resources the API serves, their fields, kinds and
//! sensitivity classes. Plugins map their sources onto these names; the API
//! validates queries against them.

use lianqiao_host::contract::ValueKind;

/// How sensitive a field is; the policy (later) masks or withholds by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldClass {
    /// Anyone with access to the record.
    Public,
    /// Government staff of the record's jurisdiction.
    Internal,
    /// Identifies a person: name, phone, address.
    Personal,
    /// ID number, ethnicity, party membership, health, whereabouts.
    Sensitive,
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: ValueKind,
    pub class: FieldClass,
    /// Allowed values of an enumerated text field.
    pub values: &'static [&'static str],
    pub doc: &'static str,
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

const fn field(name: &'static str, kind: ValueKind, class: FieldClass, doc: &'static str) -> Field {
    Field {
        name,
        kind,
        class,
        values: &[],
        doc,
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
        class: FieldClass::Public,
        values,
        doc,
    }
}

use FieldClass::{Internal, Public};
use ValueKind::{Integer, Text};

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

pub static DIVISIONS: Entity = Entity {
    name: "divisions",
    doc: "The administrative hierarchy: region → city → district → street → community → grid.",
    fields: &[
        field("id", Text, Public, "Stable id (the code)."),
        field(
            "code",
            Text,
            Public,
            "GB/T 2260 code, 9/12-digit statistical code, or local grid code.",
        ),
        field("name", Text, Public, "Name, e.g. 新华西路街道."),
        enumerated("level", LEVELS, "Level in the hierarchy."),
        enumerated("grid_tier", GRID_TIERS, "Tier of a grid (grids only)."),
        field("parent", Text, Public, "Code of the parent division."),
        field(
            "division",
            Text,
            Public,
            "The division the row belongs to (its own code).",
        ),
        field(
            "households",
            Integer,
            Internal,
            "Households living in the division.",
        ),
        field(
            "population",
            Integer,
            Internal,
            "Residents living in the division.",
        ),
    ],
};

pub static GRIDS: Entity = Entity {
    name: "grids",
    doc: "Grids in detail: tier, households, head and party branch.",
    fields: &[
        field("id", Text, Public, "Stable id (the grid code)."),
        field(
            "code",
            Text,
            Public,
            "Local grid code; starts with its community's code.",
        ),
        field("name", Text, Public, "Name of the grid."),
        enumerated(
            "tier",
            GRID_TIERS,
            "big (by households), medium (a compound), small (a building), micro (a unit).",
        ),
        field(
            "parent",
            Text,
            Public,
            "The community or the grid of the tier above.",
        ),
        field("community", Text, Public, "Code of the community."),
        field("division", Text, Public, "The grid's own code."),
        field("households", Integer, Internal, "Households in the grid."),
        field("head", Text, Internal, "Worker id of the grid head."),
        field(
            "party_branch",
            Text,
            Public,
            "Party organization id of the grid party branch.",
        ),
    ],
};

/// Every resource the API serves.
pub static ENTITIES: &[&Entity] = &[&DIVISIONS, &GRIDS];

pub fn entity(name: &str) -> Option<&'static Entity> {
    ENTITIES.iter().copied().find(|e| e.name == name)
}
