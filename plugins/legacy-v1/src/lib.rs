//! A plugin as integrators built them for contract 0.1
//! (`lianqiao:source@0.1.0`: `describe`, `query`, `aggregate`; no
//! `command`), without the SDK: two fixed grids under 159906. The gateway
//! must keep loading it and serving its reads (tests/e2e `plugin_faults.rs`).

// The generated bindings pass records field by field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../sdk/wit/deps/source-0.1.0",
    world: "lianqiao:source/source@0.1.0",
});

// The world's `use` brings manifest, query, page, source-error and the
// aggregate records in; the rest come from its types interface.
use lianqiao::source::types::{EntitySpec, FieldSpec, Value, ValueKind};

const GRIDS: &[(&str, &str)] = &[("15990600100101", "一网格"), ("15990600100102", "二网格")];

struct Legacy;

impl Guest for Legacy {
    fn describe() -> Result<Manifest, SourceError> {
        Ok(Manifest {
            name: "legacy-v1".into(),
            version: "0.1.0".into(),
            sdk_version: "0.1.0".into(),
            entities: vec![EntitySpec {
                name: "grids".into(),
                fields: ["id", "division", "name"]
                    .map(|f| FieldSpec {
                        name: f.into(),
                        kind: ValueKind::Text,
                    })
                    .to_vec(),
                filters: vec![],
                aggregates: false,
            }],
        })
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        if query.entity != "grids" {
            return Err(SourceError::Unsupported(format!(
                "entity `{}`",
                query.entity
            )));
        }
        if query.cursor.is_some() {
            return Err(SourceError::BadCursor("this plugin pages once".into()));
        }
        let rows = GRIDS
            .iter()
            .filter(|(code, _)| query.scope.iter().any(|s| code.starts_with(s.as_str())))
            .take(query.limit as usize)
            .map(|(code, name)| {
                query
                    .projection
                    .iter()
                    .map(|f| match f.as_str() {
                        "id" | "division" => Value::Text((*code).into()),
                        "name" => Value::Text((*name).into()),
                        _ => Value::Null,
                    })
                    .collect()
            })
            .collect();
        Ok(Page {
            columns: query.projection.clone(),
            rows,
            next_cursor: None,
        })
    }

    fn aggregate(_: AggregateQuery) -> Result<Vec<AggregateCell>, SourceError> {
        Err(SourceError::Unsupported(
            "counts are paged by the gateway".into(),
        ))
    }
}

export!(Legacy);
