//! A plugin that misbehaves on purpose, for the gateway's fault tests:
//! `mode = "trap"` panics (a trap), `"spin"` never returns, `"hog"`
//! allocates until the host's memory cap stops it, `"ok"` returns one row,
//! `"slow"` returns it after `delay_ms`.
//! `describe` always succeeds so the source loads.

use lianqiao_sdk::{
    AggregateCell, AggregateQuery, EntitySpec, FieldSpec, Guest, Manifest, Page, Query,
    SDK_VERSION, SourceError, Value, ValueKind, settings,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: String,
    /// For `slow`: how long each query takes, ms.
    #[serde(default)]
    delay_ms: u64,
}

struct Misbehave;

impl Guest for Misbehave {
    fn describe() -> Result<Manifest, SourceError> {
        let text = |name: &str| FieldSpec {
            name: name.into(),
            kind: ValueKind::Text,
        };
        Ok(Manifest {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: SDK_VERSION.into(),
            entities: vec![EntitySpec {
                name: "grids".into(),
                fields: vec![text("id"), text("division"), text("code"), text("name")],
                filters: vec![],
                aggregates: false,
            }],
        })
    }

    fn aggregate(_: AggregateQuery) -> Result<Vec<AggregateCell>, SourceError> {
        Err(SourceError::Unsupported("misbehave counts nothing".into()))
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        let settings: Settings = settings::load()?;
        match settings.mode.as_str() {
            "trap" => panic!("misbehave: trapping on purpose"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "slow" => {
                // Stands in for a slow upstream (benchmarks of fan-out).
                std::thread::sleep(std::time::Duration::from_millis(settings.delay_ms));
                Ok(one_row(&query))
            }
            _ => Ok(one_row(&query)),
        }
    }
}

/// One row inside the query's scope, with the projected fields.
fn one_row(query: &Query) -> Page {
    let code = query.scope.first().cloned().unwrap_or_default();
    let row = query
        .projection
        .iter()
        .map(|f| match f.as_str() {
            "name" => Value::Text("测试网格".into()),
            _ => Value::Text(code.clone()),
        })
        .collect();
    Page {
        columns: query.projection.clone(),
        rows: vec![row],
        next_cursor: None,
    }
}

lianqiao_sdk::export_source!(Misbehave);
