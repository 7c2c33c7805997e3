//! A plugin as integrators built them for contract 0.3
//! (`lianqiao:source@0.3.0`: rows as a `value` per cell, counts with
//! record digests), without the SDK: twelve party members in one community
//! under 159911. The gateway must keep loading it after 0.4 (tests/e2e
//! `plugin_faults.rs`).

// The generated bindings pass records field by field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../sdk/wit",
    world: "lianqiao:source/source@0.3.0",
    generate_all,
    additional_derives: [PartialEq],
});

// The world's `use`s bring manifest, query, page, source-error, the
// aggregate records and the command types in; the rest come from `types`.
use lianqiao::source0_1_0::types::{EntitySpec, FieldSpec, Value, ValueKind};

/// (id, gender, ethnicity): eight men and four women, 汉族 and 蒙古族.
const MEMBERS: &[(&str, &str, &str)] = &[
    ("159911-m01", "male", "汉族"),
    ("159911-m02", "male", "汉族"),
    ("159911-m03", "female", "汉族"),
    ("159911-m04", "male", "蒙古族"),
    ("159911-m05", "male", "汉族"),
    ("159911-m06", "female", "汉族"),
    ("159911-m07", "male", "汉族"),
    ("159911-m08", "male", "蒙古族"),
    ("159911-m09", "female", "汉族"),
    ("159911-m10", "male", "汉族"),
    ("159911-m11", "female", "蒙古族"),
    ("159911-m12", "male", "汉族"),
];
const COMMUNITY: &str = "159911001001";

struct Legacy;

/// A record's key as contract 0.3 defines it: the first four bytes of the
/// MD5 of its id, big-endian.
fn record_key(id: &str) -> u64 {
    use md5::{Digest, Md5};
    let d = Md5::digest(id.as_bytes());
    u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
}

fn field(members: &(&str, &str, &str), name: &str) -> Value {
    match name {
        "id" => Value::Text(members.0.into()),
        "division" => Value::Text(COMMUNITY.into()),
        "gender" => Value::Text(members.1.into()),
        "ethnicity" => Value::Text(members.2.into()),
        _ => Value::Null,
    }
}

impl Guest for Legacy {
    fn describe() -> Result<Manifest, SourceError> {
        Ok(Manifest {
            name: "legacy-v3".into(),
            version: "0.3.0".into(),
            sdk_version: "0.3.0".into(),
            entities: vec![EntitySpec {
                name: "members".into(),
                fields: ["id", "division", "gender", "ethnicity"]
                    .map(|f| FieldSpec {
                        name: f.into(),
                        kind: ValueKind::Text,
                    })
                    .to_vec(),
                filters: vec![],
                aggregates: true,
            }],
        })
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        if query.entity != "members" {
            return Err(SourceError::Unsupported(format!(
                "entity `{}`",
                query.entity
            )));
        }
        if query.cursor.is_some() {
            return Err(SourceError::BadCursor("this plugin pages once".into()));
        }
        let inside = query
            .scope
            .iter()
            .any(|s| COMMUNITY.starts_with(s.as_str()));
        let rows = MEMBERS
            .iter()
            .filter(|_| inside)
            .take(query.limit as usize)
            .map(|m| query.projection.iter().map(|f| field(m, f)).collect())
            .collect();
        Ok(Page {
            columns: query.projection.clone(),
            rows,
            next_cursor: None,
        })
    }

    /// Counts as 0.3 has them: each cell with its records' digest.
    fn aggregate(asked: CountQuery) -> Result<Vec<AggregateCell>, SourceError> {
        let query = asked.query;
        if !query
            .scope
            .iter()
            .any(|s| COMMUNITY.starts_with(s.as_str()))
        {
            return Ok(vec![]);
        }
        let mut cells: Vec<AggregateCell> = Vec::new();
        for m in MEMBERS {
            let division = query
                .division_prefix
                .map(|n| COMMUNITY.chars().take(n as usize).collect());
            let key = query.by.as_deref().map(|b| field(m, b));
            let digest = if asked.digests { record_key(m.0) } else { 0 };
            match cells
                .iter_mut()
                .find(|c| c.division == division && c.key == key)
            {
                Some(c) => {
                    c.count += 1;
                    c.digest = c.digest.wrapping_add(digest);
                }
                None => cells.push(AggregateCell {
                    division,
                    key,
                    count: 1,
                    digest,
                }),
            }
        }
        Ok(cells)
    }

    fn command(_: Command, _: String) -> Result<CommandResult, CommandError> {
        Err(CommandError::Unsupported(
            "this 0.3 test plugin takes no writes".into(),
        ))
    }
}

export!(Legacy);
