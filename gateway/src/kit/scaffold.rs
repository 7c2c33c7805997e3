//! `lianqiao source new --sql <url>`: read a district database's catalog
//! and propose a `district-sql` source file, one mapping per unified
//! resource a table looks like, with every gap marked `GAP` so that
//! `lianqiao source check` refuses the file until a person has filled it.
//!
//! The guess is deliberately simple and said so in the file: a table is
//! chosen by its name (`grid`, `wg`, `area`, …) and by how many of its
//! columns carry a model field's name or a common synonym (pinyin initials
//! included: `sfzh`, `lxdh`, `hu_shu`); enumerated fields get a value map
//! proposed from the column's distinct values; text fields over numeric
//! columns are cast so they sort as the gateway merges.

use std::fmt::Write as _;

use lianqiao_host::capability::sql::SqlPool;
use lianqiao_host::contract::{Dialect, ValueKind};
use lianqiao_policy::division::{self, CONVENTION};

use super::introspect::{self, Column, Table};
use crate::model::{self, Entity, Field, kind_name};

/// What `source new` was asked for.
pub struct Request<'a> {
    /// The source's name (`name = …`).
    pub name: &'a str,
    /// The database URL as it goes into `[sql] url`.
    pub url: &'a str,
    /// The unified code(s) the district covers, when given.
    pub coverage: Option<&'a str>,
    /// `[plugin] path`, relative to where the file will live.
    pub plugin_path: &'a str,
}

/// Names a table's name may carry, per resource (split on `_`).
fn table_hints(entity: &str) -> &'static [&'static str] {
    match entity {
        "divisions" => &["division", "divisions", "area", "region", "xzqh", "quhua"],
        "grids" => &["grid", "grids", "wg", "wangge"],
        "members" => &["member", "members", "dy", "dangyuan"],
        "workers" => &["worker", "workers", "head", "heads", "staff", "wgy", "wgz"],
        "party-orgs" => &["org", "orgs", "dzz", "dzb", "branch"],
        "service-centers" => &["center", "centre", "fwzx", "service"],
        "cases" => &["case", "cases", "event", "events", "sj", "incident"],
        _ => &[],
    }
}

/// Column names (besides the field's own) that stand for a field.
fn synonyms(entity: &str, field: &str) -> &'static [&'static str] {
    match (entity, field) {
        ("divisions" | "grids", "id" | "code" | "division") => &[
            "code",
            "grid_code",
            "area_code",
            "division_code",
            "wg_code",
            "wgbm",
            "dm",
        ],
        (_, "division") => &[
            "division_code",
            "grid_code",
            "area_code",
            "community_code",
            "wg_code",
            "wgbm",
            "grid",
        ],
        (_, "id") => &["code", "uuid", "pk", "bh"],
        (_, "name") => &["mc", "xm", "title", "full_name"],
        (_, "parent") => &["parent_code", "parent_id", "pid", "up_code", "sjdm"],
        (_, "level") => &["area_level", "jb", "cj"],
        (_, "grid_tier" | "tier") => &["grid_tier", "grid_level", "grid_type", "wgjb"],
        (_, "households") => &["hu_shu", "hushu", "hs", "household_count"],
        (_, "population") => &["ren_kou", "renkou", "rk"],
        (_, "community") => &["community_code", "sq_code", "sq_dm", "sqdm", "shequ"],
        (_, "head") => &["head_id", "head_worker_id", "wgz_id", "leader_id"],
        (_, "party_branch") => &["party_branch_id", "dzb_code", "dzb_id", "branch_code"],
        (_, "gender") => &["sex", "xb", "xingbie"],
        (_, "phone") => &["mobile", "tel", "telephone", "lxdh", "sjhm"],
        (_, "id_number") => &["id_card", "idcard", "id_no", "sfzh", "sfz"],
        (_, "birth_date") => &["birthday", "csrq", "dob"],
        (_, "address") => &["addr", "dz", "zz", "home_address"],
        (_, "grid") => &["grid_code", "wg_code", "wgbm"],
        (_, "building") => &["building_code", "ld", "louhao"],
        (_, "unit") => &["unit_code", "dy_code", "danyuan"],
        (_, "household_role") => &["household_type", "hu_type"],
        (_, "ethnicity") => &["nation", "mz", "minzu"],
        (_, "education") => &["xl", "xueli"],
        (_, "joined_on") => &["join_date", "rdrq", "rdsj"],
        (_, "founded_on") => &["founded", "clrq", "found_date"],
        (_, "since") => &["start_date", "rzrq"],
        (_, "role") => &["post", "position", "zw"],
        (_, "is_party_member") => &["party_member", "sfdy"],
        (_, "opened_at") => &["created_at", "report_time", "sbsj"],
        (_, "updated_at") => &["modified_at", "update_time", "gxsj"],
        (_, "due_at") => &["deadline", "due_time", "jzsj"],
        (_, "state") => &["status", "zt"],
        _ => &[],
    }
}

/// The column that best stands for `field` in `table`, if any.
fn column_for<'t>(entity: &str, field: &str, table: &'t Table) -> Option<&'t Column> {
    table
        .column(field)
        .filter(|_| !(field == "id" && matches!(entity, "divisions" | "grids")))
        .or_else(|| synonyms(entity, field).iter().find_map(|s| table.column(s)))
        .or_else(|| table.column(&format!("{field}_code")))
        .or_else(|| {
            // `area_name`, `grid_name`: one name column, not `parent_name`.
            (field == "name")
                .then(|| {
                    table
                        .columns
                        .iter()
                        .find(|c| c.name.ends_with("_name") && !c.name.starts_with("parent"))
                })
                .flatten()
        })
        .or_else(|| (field == "id").then(|| table.column("id")).flatten())
}

/// How well `table` looks like `entity`: 3 for a name hint, 1 per field.
fn score(entity: &Entity, table: &Table) -> usize {
    let lower = table.name.to_lowercase();
    let hinted = lower
        .split(['_', '.'])
        .any(|part| table_hints(entity.name).contains(&part));
    let fields = entity
        .fields
        .iter()
        .filter(|f| !f.derived && f.name != "id")
        .filter(|f| column_for(entity.name, f.name, table).is_some())
        .count();
    if hinted || fields >= 3 {
        usize::from(hinted) * 3 + fields
    } else {
        0
    }
}

/// Known spellings of enumerated values in district databases.
fn guess_value(field: &Field, raw: &str) -> Option<&'static str> {
    let table: &[(&str, &str)] = &[
        ("男", "male"),
        ("女", "female"),
        ("m", "male"),
        ("f", "female"),
        ("区", "district"),
        ("街道", "street"),
        ("镇", "street"),
        ("社区", "community"),
        ("村", "community"),
        ("网格", "grid"),
        ("大", "big"),
        ("中", "medium"),
        ("小", "small"),
        ("微", "micro"),
        ("汉族", "han"),
        ("蒙古族", "mongol"),
        ("中心户", "central"),
        ("堡垒户", "bastion"),
        ("先锋户", "vanguard"),
    ];
    let lower = raw.trim().to_lowercase();
    let guess = table.iter().find(|(k, _)| *k == lower).map(|(_, v)| *v)?;
    field.values.iter().copied().find(|v| *v == guess)
}

/// TOML basic-string quoting.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One resource's proposed mapping.
struct Mapping<'t> {
    entity: &'static Entity,
    table: &'t Table,
    columns: Vec<(&'static Field, Option<&'t Column>)>,
}

/// Picks a table for each resource (a table serves at most one), best
/// score first.
fn choose(tables: &[Table]) -> Vec<Mapping<'_>> {
    let mut candidates: Vec<(usize, &'static Entity, &Table)> = model::ENTITIES
        .iter()
        .flat_map(|e| tables.iter().map(move |t| (score(e, t), *e, t)))
        .filter(|(s, _, _)| *s > 0)
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.name.cmp(&b.2.name)));
    let mut chosen: Vec<Mapping> = Vec::new();
    for (_, entity, table) in candidates {
        if chosen
            .iter()
            .any(|m| m.entity.name == entity.name || m.table.name == table.name)
        {
            continue;
        }
        let columns = entity
            .fields
            .iter()
            .filter(|f| !f.derived)
            .map(|f| (f, column_for(entity.name, f.name, table)))
            .collect();
        chosen.push(Mapping {
            entity,
            table,
            columns,
        });
    }
    chosen.sort_by_key(|m| {
        model::ENTITIES
            .iter()
            .position(|e| e.name == m.entity.name)
            .unwrap_or(usize::MAX)
    });
    chosen
}

fn cast_to_text(dialect: Dialect, expr: &str) -> String {
    match dialect {
        Dialect::Mysql => format!("CAST({expr} AS CHAR)"),
        _ => format!("CAST({expr} AS TEXT)"),
    }
}

/// Proposes a source file for the database behind `pool`.
pub async fn propose(pool: &SqlPool, request: &Request<'_>) -> Result<String, String> {
    let dialect = pool.dialect();
    let tables = introspect::tables(pool).await?;
    if tables.is_empty() {
        return Err(format!(
            "{}: no tables found (is it the district's database, and may this user read its catalog?)",
            request.url
        ));
    }
    let mappings = choose(&tables);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Proposed by `lianqiao source new` from {} tables of the database.\n\
         # Every `GAP` needs a person: fill it or delete the line, then run\n\
         # `lianqiao source check <this file>` until it passes (docs/integrators.md).\n\
         # The table for each resource was guessed by its name and columns: check it.",
        tables.len()
    );
    let _ = writeln!(out, "name = {}", toml_str(request.name));
    let _ = writeln!(
        out,
        "description = {}",
        toml_str(&format!("{} district database", request.name))
    );
    let coverage = match request.coverage {
        Some(code) => code.to_string(),
        None => guess_coverage(pool, &mappings).await.unwrap_or_default(),
    };
    if coverage.is_empty() {
        let _ = writeln!(
            out,
            "# GAP: the unified code of the district this database covers ({CONVENTION})"
        );
        let _ = writeln!(out, "coverage = [\"GAP\"]");
    } else {
        let _ = writeln!(out, "coverage = [{}]", toml_str(&coverage));
    }
    let _ = writeln!(
        out,
        "\n[plugin]\npath = {}\n\n[limits]\nmemory_mib = 32\ndeadline_ms = 2000\n\n[sql]\nurl = {}",
        toml_str(request.plugin_path),
        toml_str(request.url)
    );
    for mapping in &mappings {
        write_mapping(&mut out, pool, dialect, mapping).await?;
    }
    if let Some(cases) = mappings.iter().find(|m| m.entity.name == "cases") {
        write_commands(&mut out, cases);
    }
    let missing: Vec<&str> = model::ENTITIES
        .iter()
        .filter(|e| !mappings.iter().any(|m| m.entity.name == e.name))
        .map(|e| e.name)
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "\n# No table looked like: {}. Add [plugin.settings.entities.<name>] by hand\n\
             # if this database holds them (docs/model.md lists every field).",
            missing.join(", ")
        );
    }
    Ok(out)
}

/// A commented skeleton of case writes over the table the cases came
/// from (contract 0.2, docs/cases.md): the integrator uncomments it and
/// grants the writes knowingly; nothing is written until they do.
fn write_commands(out: &mut String, mapping: &Mapping<'_>) {
    let column = |field: &str| {
        mapping
            .columns
            .iter()
            .find(|(f, _)| f.name == field)
            .and_then(|(_, c)| c.map(|c| c.name.clone()))
    };
    // A column not found is written `GAP`, as in the mappings above.
    let column = |field: &str| column(field).unwrap_or_else(|| "GAP".into());
    let fields = [
        "id",
        "title",
        "category",
        "loop",
        "state",
        "division",
        "opened_at",
    ];
    let found: Vec<(&str, String)> = fields.iter().map(|f| (*f, column(f))).collect();
    let (id, state, case_loop) = (column("id"), column("state"), column("loop"));
    let names: Vec<&str> = found.iter().map(|(_, c)| c.as_str()).collect();
    let params: Vec<String> = found
        .iter()
        .map(|(f, _)| format!("\"{}\"", if *f == "opened_at" { "at" } else { f }))
        .collect();
    let table = &mapping.table.name;
    let _ = writeln!(
        out,
        "\n# Case writes (contract 0.2, docs/cases.md), off until you uncomment them:\n\
         # the gateway then opens and moves cases in `{table}` through these\n\
         # declared statements only. A move names the state and loop it starts\n\
         # from, so a case moved meanwhile is refused (expect_rows = 1). Add your\n\
         # step table's INSERT to both commands if the district keeps a history.\n\
         # [sql.write.statements]\n\
         # insert_case = \"INSERT INTO {table} ({}) VALUES ({})\"\n\
         # move_case = \"UPDATE {table} SET {state} = ?, {case_loop} = ? WHERE {id} = ? AND {state} = ? AND {case_loop} = ?\"\n\
         #\n\
         # [plugin.settings.commands.create-case]\n\
         # run = [{{ statement = \"insert_case\", params = [{}], expect_rows = 1 }}]\n\
         #\n\
         # [plugin.settings.commands.transition-case]\n\
         # run = [{{ statement = \"move_case\", params = [\"state\", \"loop\", \"id\", \"from_state\", \"from_loop\"], expect_rows = 1 }}]",
        names.join(", "),
        vec!["?"; names.len()].join(", "),
        params.join(", ")
    );
}

/// The shortest unified code among the divisions table's codes: the
/// district itself when the database lists it.
async fn guess_coverage(pool: &SqlPool, mappings: &[Mapping<'_>]) -> Option<String> {
    let mapping = mappings.iter().find(|m| m.entity.name == "divisions")?;
    let column = mapping
        .columns
        .iter()
        .find(|(f, _)| f.name == "division")
        .and_then(|(_, c)| *c)?;
    let values = introspect::distinct_values(pool, &mapping.table.name, &column.name, 2000)
        .await
        .ok()?;
    values
        .into_iter()
        .filter(|v| division::level_of(v).is_some())
        .min_by_key(|v| (v.len(), v.clone()))
}

async fn write_mapping(
    out: &mut String,
    pool: &SqlPool,
    dialect: Dialect,
    mapping: &Mapping<'_>,
) -> Result<(), String> {
    let entity = mapping.entity;
    let table = mapping.table;
    let matched: Vec<&str> = mapping
        .columns
        .iter()
        .filter(|(_, c)| c.is_some())
        .map(|(f, _)| f.name)
        .collect();
    let _ = writeln!(
        out,
        "\n# {}: from table `{}` ({} of {} fields found: {}).",
        entity.name,
        table.name,
        matched.len(),
        mapping.columns.len(),
        matched.join(", ")
    );
    let mut selects = Vec::new();
    let mut kinds = Vec::new();
    let mut notes = Vec::new();
    let mut maps = Vec::new();
    for (field, column) in &mapping.columns {
        let Some(column) = column else {
            if matches!(field.name, "id" | "division") {
                notes.push(format!(
                    "# GAP: `{}` is required: the column holding {} ({})",
                    field.name,
                    if field.name == "id" {
                        "a stable, unique id"
                    } else {
                        "the unified division code"
                    },
                    field.doc
                ));
                selects.push(format!("NULL AS {} /* GAP */", field.name));
                kinds.push(format!("{} = \"{}\"", field.name, kind_name(field.kind)));
            }
            continue;
        };
        let qualified = format!("t.{}", introspect::quote(dialect, &column.name));
        let expr = if field.kind == ValueKind::Text && column.is_numeric() {
            // Text ids and codes sort bytewise in the merge; a number column
            // would sort numerically in the database.
            cast_to_text(dialect, &qualified)
        } else {
            qualified
        };
        selects.push(format!("{expr} AS {}", field.name));
        kinds.push(format!("{} = \"{}\"", field.name, kind_name(field.kind)));
        if matches!(field.name, "division" | "parent" | "community" | "grid") {
            let values = introspect::distinct_values(pool, &table.name, &column.name, 50).await?;
            if let Some(local) = values.iter().find(|v| division::level_of(v).is_none()) {
                notes.push(format!(
                    "# GAP: `{}` ({}) holds local codes such as {}, not unified ones ({CONVENTION}):\n\
                     # declare [plugin.settings.local_codes] and list it in `local_code_fields` (docs/district-sql.md).",
                    field.name,
                    column.name,
                    toml_str(local)
                ));
            }
        }
        if !field.values.is_empty() {
            let values = introspect::distinct_values(pool, &table.name, &column.name, 50).await?;
            let outside: Vec<&String> = values
                .iter()
                .filter(|v| !field.values.contains(&v.as_str()))
                .collect();
            if !outside.is_empty() {
                let pairs: Vec<String> = outside
                    .iter()
                    .map(|v| {
                        format!(
                            "{} = {}",
                            toml_str(v),
                            toml_str(guess_value(field, v).unwrap_or("GAP"))
                        )
                    })
                    .collect();
                notes.push(format!(
                    "# `{}` must be one of: {} (GAP marks a value to map).",
                    field.name,
                    field.values.join(", ")
                ));
                maps.push(format!("map.{} = {{ {} }}", field.name, pairs.join(", ")));
            }
        }
    }
    for note in &notes {
        let _ = writeln!(out, "{note}");
    }
    let _ = writeln!(
        out,
        "[plugin.settings.entities.{}]\nsql = \"\"\"\nSELECT {}\nFROM {} t\n\"\"\"\nfields = {{ {} }}",
        toml_key(entity.name),
        selects.join(",\n       "),
        introspect::quote(dialect, &table.name),
        kinds.join(", ")
    );
    for map in maps {
        let _ = writeln!(out, "{map}");
    }
    Ok(())
}

/// A TOML key: bare when it can be, quoted otherwise (`party-orgs` is bare).
fn toml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_string()
    } else {
        toml_str(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, columns: &[&str]) -> Table {
        Table {
            name: name.into(),
            columns: columns
                .iter()
                .map(|c| Column {
                    name: (*c).into(),
                    db_type: "text".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_cases_table_gets_a_commented_skeleton_of_its_writes() {
        let tables = [table(
            "events",
            &[
                "id",
                "title",
                "category",
                "loop",
                "state",
                "division",
                "opened_at",
            ],
        )];
        let mappings = choose(&tables);
        let cases = mappings
            .iter()
            .find(|m| m.entity.name == "cases")
            .expect("a cases mapping");
        let mut out = String::new();
        write_commands(&mut out, cases);
        assert!(
            out.lines().all(|l| l.is_empty() || l.starts_with('#')),
            "{out}"
        );
        assert!(
            out.contains("INSERT INTO events (id, title, category, loop, state, division, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
            "{out}"
        );
        assert!(
            out.contains(
                "UPDATE events SET state = ?, loop = ? WHERE id = ? AND state = ? AND loop = ?"
            ),
            "{out}"
        );
    }

    #[test]
    fn tables_are_chosen_by_name_and_columns() {
        let tables = vec![
            table("wg_info", &["wgbm", "wg_name", "hu_shu", "wgjb"]),
            table(
                "t_area",
                &["area_code", "area_name", "area_level", "parent_code"],
            ),
            table("audit_log", &["at", "who"]),
        ];
        let chosen = choose(&tables);
        let by: Vec<(&str, &str)> = chosen
            .iter()
            .map(|m| (m.entity.name, m.table.name.as_str()))
            .collect();
        assert_eq!(by, vec![("divisions", "t_area"), ("grids", "wg_info")]);
        let grids = &chosen[1];
        let col = |f: &str| {
            grids
                .columns
                .iter()
                .find(|(field, _)| field.name == f)
                .and_then(|(_, c)| c.map(|c| c.name.as_str()))
        };
        assert_eq!(col("id"), Some("wgbm"));
        assert_eq!(col("division"), Some("wgbm"));
        assert_eq!(col("name"), Some("wg_name"));
        assert_eq!(col("households"), Some("hu_shu"));
        assert_eq!(col("tier"), Some("wgjb"));
        assert_eq!(col("head"), None);
    }

    #[test]
    fn known_spellings_map_only_onto_allowed_values() {
        let tier = model::GRIDS.field("tier").expect("tier");
        assert_eq!(guess_value(tier, "微"), Some("micro"));
        assert_eq!(guess_value(tier, "男"), None);
        assert_eq!(guess_value(tier, "巨"), None);
    }
}
