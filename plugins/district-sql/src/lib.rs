//! `district-sql`: serves a district database through the host's `sql`
//! capability.
//!
//! Districts keep their data in schemas of their own. Instead of code per
//! district, each source's `[plugin.settings]` gives, per unified entity, a
//! base `SELECT` that renames the district's columns to the unified field
//! names, the fields' kinds, and optional value maps (e.g. gender `1` →
//! `male`). This plugin adds scope, filters, keyset paging and typing.

mod mapping;
mod writes;

use std::collections::BTreeMap;

use lianqiao_sdk::sql_page::{aggregate_statement, is_identifier, page_statement};
use lianqiao_sdk::{
    ALL_FILTER_OPS, AggregateCell, Command, CommandError, CommandResult, CountQuery, EntitySpec,
    FieldSpec, Filter, FilterSupport, Guest, Manifest, Page, Query, SDK_VERSION, SourceError,
    Value, keyset::Position, settings, sql,
};
use serde::Deserialize;

use mapping::{Kind, convert_cell};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Unified entity name → how this district's database serves it.
    entities: BTreeMap<String, EntitySettings>,
    /// Where this district's own codes meet the unified ones.
    #[serde(default)]
    local_codes: Option<LocalCodes>,
    /// Command name (`create-case`, `transition-case`) → the declared
    /// statements it runs, in one transaction.
    #[serde(default)]
    commands: BTreeMap<String, writes::CommandSettings>,
}

/// A district that numbers its divisions its own way keeps a table pairing
/// each local code with the unified one. Fields listed in an entity's
/// `local_code_fields` are looked up there *inside the statement*, so scope,
/// filters and keyset order apply to unified codes, and the local code can
/// still be served as a field of its own (`code`). The scope then filters
/// on the joined column, which no index of the entity's table serves: fine
/// for a district's thousands of rows, slow for millions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalCodes {
    /// The table (or view) pairing the codes.
    table: String,
    /// Its column holding the local code.
    local: String,
    /// Its column holding the unified code.
    unified: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitySettings {
    /// A `SELECT` yielding one column per unified field, named as the field.
    /// `id` and `division` are required and must be text.
    sql: String,
    /// Unified field name → kind.
    fields: BTreeMap<String, Kind>,
    /// Field → (database value → unified value). Mapped fields are filtered
    /// by the gateway, not pushed down, since the database holds the codes.
    #[serde(default)]
    map: BTreeMap<String, BTreeMap<String, String>>,
    /// Fields whose values are local codes, to translate through
    /// `local_codes` (e.g. `["division", "parent"]`).
    #[serde(default)]
    local_code_fields: Vec<String>,
}

/// A table or column name of the district's schema: letters, digits and
/// `_`, not starting with a digit (spliced into SQL, so nothing else).
fn is_sql_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// The entity's statement with its local-code fields replaced by the
/// unified codes they pair with (one `LEFT JOIN` per field: a local code
/// without a pair becomes NULL, so its row is in no scope and is not
/// served; docs/integrators.md says to keep the table complete).
fn translate_local_codes(
    name: &str,
    entity: &EntitySettings,
    codes: &LocalCodes,
) -> Result<String, SourceError> {
    let mut select = Vec::with_capacity(entity.fields.len());
    let mut joins = String::new();
    for field in entity.fields.keys() {
        match entity.local_code_fields.iter().position(|f| f == field) {
            Some(i) => {
                select.push(format!("lc{i}.{} AS {field}", codes.unified));
                joins.push_str(&format!(
                    " LEFT JOIN {table} lc{i} ON lc{i}.{local} = b.{field}",
                    table = codes.table,
                    local = codes.local
                ));
            }
            None => select.push(format!("b.{field} AS {field}")),
        }
    }
    if let Some(bad) = entity
        .local_code_fields
        .iter()
        .find(|f| entity.fields.get(*f) != Some(&Kind::Text))
    {
        return Err(SourceError::BadConfig(format!(
            "entities.{name}.local_code_fields: `{bad}` must be one of the entity's text fields"
        )));
    }
    Ok(format!(
        "SELECT {} FROM ({}) b{joins}",
        select.join(", "),
        entity.sql
    ))
}

impl Settings {
    fn load() -> Result<Self, SourceError> {
        let mut settings: Settings = settings::load()?;
        if let Some(codes) = &settings.local_codes
            && let Some(bad) = [&codes.table, &codes.local, &codes.unified]
                .into_iter()
                .find(|n| !is_sql_name(n))
        {
            return Err(SourceError::BadConfig(format!(
                "local_codes: `{bad}` is not a table or column name (letters, digits, _)"
            )));
        }
        for (name, entity) in &mut settings.entities {
            if entity.local_code_fields.is_empty() {
                continue;
            }
            let Some(codes) = &settings.local_codes else {
                return Err(SourceError::BadConfig(format!(
                    "entities.{name}.local_code_fields needs [plugin.settings.local_codes] (the table pairing local and unified codes)"
                )));
            };
            entity.sql = translate_local_codes(name, entity, codes)?;
        }
        for (name, command) in &settings.commands {
            command.check(name, &settings.entities)?;
        }
        for (name, entity) in &settings.entities {
            for required in ["id", "division"] {
                if entity.fields.get(required) != Some(&Kind::Text) {
                    return Err(SourceError::BadConfig(format!(
                        "entities.{name}.fields: `{required}` must be declared as \"text\""
                    )));
                }
            }
            if let Some(bad) = entity.fields.keys().find(|f| !is_identifier(f)) {
                return Err(SourceError::BadConfig(format!(
                    "entities.{name}.fields: `{bad}` is not a field name (lowercase, digits, _)"
                )));
            }
            if let Some(bad) = entity
                .map
                .keys()
                .find(|f| matches!(f.as_str(), "id" | "division"))
            {
                return Err(SourceError::BadConfig(format!(
                    "entities.{name}.map: `{bad}` cannot be value-mapped (scope and paging run on it in the database); map codes with local_codes"
                )));
            }
            if let Some(bad) = entity.map.keys().find(|f| !entity.fields.contains_key(*f)) {
                return Err(SourceError::BadConfig(format!(
                    "entities.{name}.map: `{bad}` is not one of the entity's fields"
                )));
            }
        }
        Ok(settings)
    }
}

impl Settings {
    fn entity(&self, name: &str) -> Result<&EntitySettings, SourceError> {
        self.entities
            .get(name)
            .ok_or_else(|| SourceError::Unsupported(format!("entity `{name}` is not served")))
    }
}

impl EntitySettings {
    /// The filters, checked to be ones this entity declared it pushes down
    /// (known fields that are not value-mapped).
    fn pushable<'a>(&self, filters: &'a [Filter]) -> Result<Vec<&'a Filter>, SourceError> {
        if let Some(f) = filters
            .iter()
            .find(|f| !self.fields.contains_key(&f.field) || self.map.contains_key(&f.field))
        {
            return Err(SourceError::Unsupported(format!(
                "a filter on `{}`",
                f.field
            )));
        }
        Ok(filters.iter().collect())
    }
}

struct DistrictSql;

impl Guest for DistrictSql {
    fn describe() -> Result<Manifest, SourceError> {
        let settings = Settings::load()?;
        let entities = settings
            .entities
            .iter()
            .map(|(name, entity)| EntitySpec {
                name: name.clone(),
                fields: entity
                    .fields
                    .iter()
                    .map(|(field, kind)| FieldSpec {
                        name: field.clone(),
                        kind: kind.value_kind(),
                    })
                    .collect(),
                filters: entity
                    .fields
                    .keys()
                    .filter(|f| !entity.map.contains_key(*f))
                    .map(|f| FilterSupport {
                        field: f.clone(),
                        ops: ALL_FILTER_OPS.to_vec(),
                    })
                    .collect(),
                aggregates: true,
            })
            .collect();
        Ok(Manifest {
            name: "district-sql".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: SDK_VERSION.into(),
            entities,
        })
    }

    fn command(command: Command, _idempotency_key: String) -> Result<CommandResult, CommandError> {
        let settings = Settings::load().map_err(writes::command_error)?;
        writes::apply(&settings.commands, &settings.entities, command)
    }

    fn aggregate(asked: CountQuery) -> Result<Vec<AggregateCell>, SourceError> {
        let (query, digests) = (asked.query, asked.digests);
        let settings = Settings::load()?;
        let entity = settings.entity(&query.entity)?;
        let pushed = entity.pushable(&query.filters)?;
        if let Some(by) = &query.by
            && !entity.fields.contains_key(by)
        {
            return Err(SourceError::Unsupported(format!("grouping by `{by}`")));
        }
        let statement = aggregate_statement(
            sql::database_dialect(),
            &entity.sql,
            &query,
            &pushed,
            digests,
        )?;
        let result = sql::query(&statement.sql, &statement.params).map_err(mapping::sql_error)?;
        let column = |name: &str| result.columns.iter().position(|c| c == name);
        let (g, k, n, d) = (column("g"), column("k"), column("n"), column("d"));
        let by_map = query.by.as_ref().and_then(|b| entity.map.get(b));
        let mut cells = Vec::with_capacity(result.rows.len());
        for row in result.rows {
            let count = match n.and_then(|i| row.get(i)) {
                Some(Value::Integer(c)) => *c,
                other => {
                    return Err(SourceError::UpstreamError(format!(
                        "COUNT(*) returned {other:?}"
                    )));
                }
            };
            let division = g
                .and_then(|i| row.get(i))
                .and_then(|v| v.as_text().map(str::to_owned));
            let key = match (k.and_then(|i| row.get(i)), &query.by) {
                (Some(v), Some(by)) => Some(mapping::convert_cell(
                    by,
                    v.clone(),
                    entity
                        .fields
                        .get(by)
                        .copied()
                        .unwrap_or(mapping::Kind::Text),
                    by_map,
                )?),
                _ => None,
            };
            // The sum of the cell's record keys; NULL only for an empty
            // cell (one group, no rows).
            let digest = match d.and_then(|i| row.get(i)) {
                Some(Value::Integer(d)) => *d as u64,
                _ if !digests => 0,
                Some(Value::Null) | None if count == 0 => 0,
                other => {
                    return Err(SourceError::UpstreamError(format!(
                        "the record digest came back as {other:?}"
                    )));
                }
            };
            cells.push(AggregateCell {
                division,
                key,
                count,
                digest,
            });
        }
        Ok(cells)
    }

    fn query(query: Query) -> Result<Page, SourceError> {
        let settings = Settings::load()?;
        let entity = settings.entity(&query.entity)?;
        if let Some(f) = query
            .projection
            .iter()
            .find(|f| !entity.fields.contains_key(*f))
        {
            return Err(SourceError::Unsupported(format!(
                "field `{f}` of `{}`",
                query.entity
            )));
        }
        let pushed: Vec<&Filter> = query.filters.iter().collect();
        if let Some(f) = pushed
            .iter()
            .find(|f| !entity.fields.contains_key(&f.field) || entity.map.contains_key(&f.field))
        {
            return Err(SourceError::Unsupported(format!(
                "a filter on `{}`",
                f.field
            )));
        }

        let statement = page_statement(sql::database_dialect(), &entity.sql, &query, &pushed)?;
        let result = sql::query(&statement.sql, &statement.params).map_err(mapping::sql_error)?;

        let kinds = result
            .columns
            .iter()
            .map(|c| {
                entity.fields.get(c).copied().ok_or_else(|| {
                    SourceError::UpstreamError(format!(
                        "the database returned an unknown column `{c}`"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let maps: Vec<Option<&BTreeMap<String, String>>> =
            result.columns.iter().map(|c| entity.map.get(c)).collect();

        let limit = query.limit as usize;
        let more = result.rows.len() > limit;
        let mut rows = Vec::with_capacity(result.rows.len().min(limit));
        for raw in result.rows.into_iter().take(limit) {
            let row = raw
                .into_iter()
                .enumerate()
                .map(|(i, cell)| convert_cell(&result.columns[i], cell, kinds[i], maps[i]))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(row);
        }

        let next_cursor = if more {
            let last = rows
                .last()
                .ok_or_else(|| SourceError::Internal("empty page".into()))?;
            Some(position_of(&result.columns, last)?.encode())
        } else {
            None
        };
        Ok(Page {
            columns: result.columns,
            rows,
            next_cursor,
        })
    }
}

fn position_of(columns: &[String], row: &[lianqiao_sdk::Value]) -> Result<Position, SourceError> {
    let text = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| row[i].as_text())
            .map(str::to_owned)
            .ok_or_else(|| SourceError::UpstreamError(format!("row without a text `{name}`")))
    };
    Ok(Position {
        division: text("division")?,
        id: text("id")?,
    })
}

lianqiao_sdk::export_source!(DistrictSql);

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(local_code_fields: &[&str]) -> EntitySettings {
        EntitySettings {
            sql: "SELECT g.no AS id, g.no AS code, g.no AS division, g.up AS parent FROM g".into(),
            fields: [
                ("id", Kind::Text),
                ("code", Kind::Text),
                ("division", Kind::Text),
                ("parent", Kind::Text),
            ]
            .into_iter()
            .map(|(f, k)| (f.to_string(), k))
            .collect(),
            map: BTreeMap::new(),
            local_code_fields: local_code_fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn local_code_fields_are_looked_up_inside_the_statement() {
        let codes = LocalCodes {
            table: "code_map".into(),
            local: "local_code".into(),
            unified: "gb_code".into(),
        };
        let sql = translate_local_codes("grids", &entity(&["division", "parent"]), &codes)
            .expect("translated");
        assert_eq!(
            sql,
            "SELECT b.code AS code, lc0.gb_code AS division, b.id AS id, lc1.gb_code AS parent \
             FROM (SELECT g.no AS id, g.no AS code, g.no AS division, g.up AS parent FROM g) b \
             LEFT JOIN code_map lc0 ON lc0.local_code = b.division \
             LEFT JOIN code_map lc1 ON lc1.local_code = b.parent"
        );
        let refused = translate_local_codes("grids", &entity(&["households"]), &codes);
        assert!(
            matches!(&refused, Err(SourceError::BadConfig(m)) if m.contains("`households` must be one of the entity's text fields")),
            "{refused:?}"
        );
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(is_sql_name("T_Area_Code"));
        assert!(!is_sql_name("code_map; DROP TABLE x"));
        assert!(!is_sql_name("1map"));
    }
}
