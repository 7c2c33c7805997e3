//! Field classes and masks: what `config/fields.toml` says about every
//! field of the unified model, in the shape the policy needs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mask::Mask;

/// How sensitive a field is; the policy shows, masks or withholds by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
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

impl FieldClass {
    pub const ALL: [FieldClass; 4] = [
        FieldClass::Public,
        FieldClass::Internal,
        FieldClass::Personal,
        FieldClass::Sensitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldClass::Public => "public",
            FieldClass::Internal => "internal",
            FieldClass::Personal => "personal",
            FieldClass::Sensitive => "sensitive",
        }
    }

    pub fn parse(text: &str) -> Option<FieldClass> {
        FieldClass::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// One field as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub class: FieldClass,
    /// The masked form, for callers the policy lets see it only masked.
    pub mask: Mask,
    /// For fields the policy may test on a record (`loop` of a case): every
    /// value the field can take. Empty for all other fields.
    pub attribute_values: Vec<String>,
    /// Statistics may count by this field (`fields.toml`: `group = true`):
    /// only low-cardinality categories with a closed set of values, never
    /// identifiers, names, phones, addresses, dates or free text. Whether a
    /// caller may is the policy's `group` decision.
    pub groupable: bool,
}

/// Every resource's fields.
#[derive(Debug, Clone, Default)]
pub struct FieldCatalog {
    entities: BTreeMap<String, Vec<FieldSpec>>,
}

/// Record fields a policy may test (`resource.loop`). The values of these
/// are enumerated, so a decision over them can be made for each value before
/// execution and pushed down as a filter.
pub const RECORD_ATTRIBUTES: &[&str] = &["loop"];

impl FieldCatalog {
    pub fn insert(&mut self, entity: &str, field: FieldSpec) {
        self.entities
            .entry(entity.to_string())
            .or_default()
            .push(field);
    }

    pub fn fields(&self, entity: &str) -> &[FieldSpec] {
        self.entities.get(entity).map_or(&[], Vec::as_slice)
    }

    pub fn field(&self, entity: &str, field: &str) -> Option<&FieldSpec> {
        self.fields(entity).iter().find(|f| f.name == field)
    }

    /// The class of `entity.field`; unknown fields count as sensitive, so a
    /// gap can only ever hide data, not leak it.
    pub fn class(&self, entity: &str, field: &str) -> FieldClass {
        self.field(entity, field)
            .map_or(FieldClass::Sensitive, |f| f.class)
    }

    /// The masked form `entity.field` is shown in to callers who may see
    /// it only masked; `None` when it has none (masked means withheld).
    pub fn shown_mask(&self, entity: &str, field: &str) -> Option<Mask> {
        self.field(entity, field)
            .map(|f| f.mask)
            .filter(|m| *m != Mask::Withhold)
    }

    pub fn entities(&self) -> impl Iterator<Item = &str> {
        self.entities.keys().map(String::as_str)
    }

    /// Whether statistics may count `entity` by `field` at all.
    pub fn groupable(&self, entity: &str, field: &str) -> bool {
        self.field(entity, field).is_some_and(|f| f.groupable)
    }

    /// The fields of `entity` statistics may count by.
    pub fn groupable_fields(&self, entity: &str) -> Vec<&str> {
        self.fields(entity)
            .iter()
            .filter(|f| f.groupable)
            .map(|f| f.name.as_str())
            .collect()
    }

    /// The record attribute of `entity` a policy may test, with its values.
    pub fn record_attribute(&self, entity: &str) -> Option<&FieldSpec> {
        self.fields(entity).iter().find(|f| {
            RECORD_ATTRIBUTES.contains(&f.name.as_str()) && !f.attribute_values.is_empty()
        })
    }
}
