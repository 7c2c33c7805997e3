//! A plugin that misbehaves on purpose, for the gateway's fault tests:
//! `mode = "trap"` panics (a trap), `"spin"` never returns, `"hog"`
//! allocates until the host's memory cap stops it, `"ok"` returns one row,
//! `"slow"` returns it after `delay_ms`, `"escape"` tries to reach what a
//! plugin must not (files, environment, sockets, capabilities not granted),
//! `"tattle"` fails with an error quoting a person's data (as an upstream
//! or database error may), `"wrongkind"` returns an ID number where the
//! contract wants text of another kind (a number).
//! For the conformance kit (`lianqiao plugin test`): `"table"` serves 20
//! grids under 150103 by the contract (scope, order, cursor, a declared
//! `name` filter); `"loopcursor"` is the same with a cursor that starts
//! over; `"ignorefilter"` declares the `name` filter and ignores it.
//! `"badbuffer"` returns a row buffer that breaks the layout (contract
//! 0.4); `"carry"` tries to carry what one call saw into the next (it
//! keeps every scope it was asked for in a global and answers with them
//! as the row's name), for the isolation tests of warm instances.
//! The table modes also list the grids' changes, with one deletion.
//! `describe` always succeeds so the source loads.

use std::sync::Mutex;

use lianqiao_sdk::{
    AggregateCell, ChangeFeed, ChangePage, ChangesQuery, Command, CommandError, CommandResult,
    CountQuery, Description, EntitySpec, FieldSpec, FilterOp, FilterSupport, Guest, Manifest, Page,
    Query, RowBuffer, SDK_VERSION, SourceError, Tombstone, Value, ValueKind, ValuePage, settings,
};

/// What `"carry"` saw in earlier calls of this instance.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
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
    fn describe() -> Result<Description, SourceError> {
        let text = |name: &str| FieldSpec {
            name: name.into(),
            kind: ValueKind::Text,
        };
        // The table modes declare that they filter on `name`, and list
        // their changes.
        let table =
            matches!(settings::load::<Settings>(), Ok(s) if TABLE_MODES.contains(&s.mode.as_str()));
        let filters = match table {
            true => vec![FilterSupport {
                field: "name".into(),
                ops: vec![FilterOp::Eq],
            }],
            false => vec![],
        };
        let manifest = Manifest {
            name: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: SDK_VERSION.into(),
            entities: vec![EntitySpec {
                name: "grids".into(),
                fields: vec![text("id"), text("division"), text("code"), text("name")],
                filters,
                aggregates: false,
            }],
        };
        Ok(Description {
            manifest,
            change_feeds: match table {
                true => vec![ChangeFeed {
                    entity: "grids".into(),
                    tombstones: true,
                }],
                false => vec![],
            },
        })
    }

    fn changes(query: ChangesQuery) -> Result<ChangePage, SourceError> {
        // The 20 grids changed one after another, then one was deleted:
        // the watermark counts changes seen (`n:K`).
        let seen = match query.since.as_deref() {
            None | Some("") => 0,
            Some(w) => w
                .strip_prefix("n:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| SourceError::BadCursor("not a watermark of this plugin".into()))?,
        };
        let all = table(
            &Query {
                entity: query.entity.clone(),
                scope: query.scope.clone(),
                filters: vec![],
                projection: query.projection.clone(),
                limit: 100,
                cursor: None,
            },
            "table",
        )?;
        let deleted = Tombstone {
            id: "150103004099".into(),
            division: "150103004".into(),
        };
        let deleted_in_scope = query
            .scope
            .iter()
            .any(|s| deleted.division.starts_with(s.as_str()));
        let total = all.rows.len() + usize::from(deleted_in_scope);
        let take = (query.limit as usize).min(total.saturating_sub(seen));
        let rows: Vec<_> = all.rows.iter().skip(seen).take(take).cloned().collect();
        let tombstones = match deleted_in_scope && seen + take == total && take > rows.len() {
            true => vec![deleted],
            false => vec![],
        };
        Ok(ChangePage {
            rows: lianqiao_sdk::row_buffer(all.columns, &rows)?,
            deleted: tombstones,
            watermark: format!("n:{}", seen + take),
            more: seen + take < total,
        })
    }

    fn command(_: Command, _: String) -> Result<CommandResult, CommandError> {
        Err(CommandError::Unsupported(
            "misbehave takes no commands".into(),
        ))
    }

    fn aggregate(_: CountQuery) -> Result<Vec<AggregateCell>, SourceError> {
        Err(SourceError::Unsupported("misbehave counts nothing".into()))
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        let settings: Settings = settings::load()?;
        match settings.mode.as_str() {
            "badbuffer" => {
                // Two rows announced, one cell written, then a tag the
                // layout does not define.
                let page = one_row(&query).into_buffer()?;
                let mut cells = page.rows.cells;
                cells.truncate(cells.len().min(5));
                cells.push(0x7f);
                Ok(Page {
                    rows: RowBuffer {
                        columns: page.rows.columns,
                        rows: 2,
                        cells,
                    },
                    next_cursor: None,
                })
            }
            "carry" => {
                let mut seen = SEEN
                    .lock()
                    .map_err(|_| SourceError::Internal("poisoned".into()))?;
                let earlier = seen.join(",");
                seen.push(query.scope.join("+"));
                let mut page = one_row(&query);
                if let Some(i) = page.columns.iter().position(|c| c == "name") {
                    page.rows[0][i] = Value::Text(format!("seen before: [{earlier}]"));
                }
                page.into_buffer()
            }
            other => answer(&query, other, &settings),
        }
    }
}

/// The answer of every other mode, as values.
fn answer(query: &Query, mode: &str, settings: &Settings) -> Result<Page, SourceError> {
    let query = query.clone();
    let page: Result<ValuePage, SourceError> = match mode {
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
        "escape" => {
            // Everything a plugin must not be able to do; the report
            // comes back as the row's name for the sandbox tests.
            let mut report = Vec::new();
            report.push(format!("fs:{}", std::fs::read("/etc/passwd").is_ok()));
            report.push(format!("dir:{}", std::fs::read_dir("/").is_ok()));
            report.push(format!("env:{}", std::env::vars().count()));
            report.push(format!("args:{}", std::env::args().count()));
            // Clocks: frozen at the epoch, so no timing or time-based logic.
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let t0 = std::time::Instant::now();
            let mut spin = 0u64;
            for i in 0..100_000u64 {
                spin = spin.wrapping_add(i);
            }
            std::hint::black_box(spin);
            report.push(format!("clock:{wall}:{}", t0.elapsed().as_nanos()));
            report.push(format!(
                "tcp:{}",
                std::net::TcpStream::connect("127.0.0.1:5432").is_ok()
            ));
            report.push(match lianqiao_sdk::sql::query("SELECT 1", &[]) {
                Ok(_) => "sql:allowed".into(),
                Err(e) => format!("sql:{e:?}"),
            });
            let request = lianqiao_sdk::http::Request {
                method: "GET".into(),
                url: "http://127.0.0.1:8091/api/v1/dy/list".into(),
                headers: vec![],
                body: None,
                credential: Some("party-link".into()),
            };
            report.push(match lianqiao_sdk::http::send(&request) {
                Ok(_) => "http:allowed".into(),
                Err(e) => format!("http:{e:?}"),
            });
            let mut page = one_row(&query);
            if let Some(i) = page.columns.iter().position(|c| c == "name") {
                page.rows[0][i] = Value::Text(report.join(" | "));
            }
            Ok(page)
        }
        "slow" => {
            // Stands in for a slow upstream (benchmarks of fan-out).
            std::thread::sleep(std::time::Duration::from_millis(settings.delay_ms));
            Ok(one_row(&query))
        }
        "tattle" => Err(SourceError::UpstreamError(
            "居民张三丰 身份证 15010319850312123X 电话 13812345678 校验失败".into(),
        )),
        "wrongkind" => {
            let mut page = one_row(&query);
            if let Some(i) = page.columns.iter().position(|c| c == "id") {
                page.rows[0][i] = Value::Integer(150103198503121234);
            }
            Ok(page)
        }
        "flood" => {
            // More rows than asked for.
            let mut page = one_row(&query);
            let row = page.rows[0].clone();
            page.rows = vec![row; query.limit as usize + 5];
            Ok(page)
        }
        "leak" => {
            // A row from outside the scope the gateway asked for.
            let mut page = one_row(&query);
            for (i, column) in page.columns.iter().enumerate() {
                if column == "division" || column == "id" {
                    page.rows[0][i] = Value::Text("150105999".into());
                }
            }
            Ok(page)
        }
        mode if TABLE_MODES.contains(&mode) => table(&query, mode),
        _ => Ok(one_row(&query)),
    };
    page?.into_buffer()
}

const TABLE_MODES: &[&str] = &["table", "loopcursor", "ignorefilter"];

/// 20 grids under 150103, served by the contract except where `mode`
/// breaks it on purpose.
fn table(query: &Query, mode: &str) -> Result<ValuePage, SourceError> {
    if query.entity != "grids" {
        return Err(SourceError::Unsupported(format!(
            "entity `{}`",
            query.entity
        )));
    }
    let start = match (&query.cursor, mode) {
        (None, _) | (Some(_), "loopcursor") => 0,
        (Some(c), _) => c
            .strip_prefix("at:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| SourceError::BadCursor("not a cursor of this plugin".into()))?,
    };
    let rows: Vec<(String, String)> = (1..=20)
        .map(|i| {
            let code = format!("150103{:03}{:03}", (i - 1) / 5 + 1, i);
            let name = if i % 2 == 0 { "甲" } else { "乙" };
            (code, name.to_string())
        })
        .filter(|(code, _)| query.scope.iter().any(|s| code.starts_with(s.as_str())))
        .filter(|(_, name)| {
            mode == "ignorefilter"
                || query.filters.iter().all(|f| {
                    f.field != "name" || f.values.first() == Some(&Value::Text(name.clone()))
                })
        })
        .collect();
    let page: Vec<&(String, String)> = rows.iter().skip(start).take(query.limit as usize).collect();
    let next = start + page.len();
    Ok(ValuePage {
        columns: query.projection.clone(),
        rows: page
            .iter()
            .map(|(code, name)| {
                query
                    .projection
                    .iter()
                    .map(|f| match f.as_str() {
                        "name" => Value::Text(name.clone()),
                        _ => Value::Text(code.clone()),
                    })
                    .collect()
            })
            .collect(),
        next_cursor: (next < rows.len()).then(|| format!("at:{next}")),
    })
}

/// One row inside the query's scope, with the projected fields.
fn one_row(query: &Query) -> ValuePage {
    let code = query.scope.first().cloned().unwrap_or_default();
    let row = query
        .projection
        .iter()
        .map(|f| match f.as_str() {
            "name" => Value::Text("测试网格".into()),
            _ => Value::Text(code.clone()),
        })
        .collect();
    ValuePage {
        columns: query.projection.clone(),
        rows: vec![row],
        next_cursor: None,
    }
}

lianqiao_sdk::export_source!(Misbehave);
