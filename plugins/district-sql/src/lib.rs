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

use lianqiao_sdk::sql_page::{
    aggregate_statement, changes_statement, is_identifier, keyset_page, page_statement,
};
use lianqiao_sdk::{
    ALL_FILTER_OPS, AggregateCell, ChangeFeed, ChangePage, ChangesQuery, Command, CommandError,
    CommandResult, CountQuery, Description, EntitySpec, FieldSpec, Filter, FilterSupport, Guest,
    Manifest, Page, Query, RowBuffer, SDK_VERSION, SourceError, Value, keyset::Position, rows,
    settings, sql, sql_rows,
};
use serde::Deserialize;

use mapping::{Kind, convert_cell};

/// The cell of a buffer row as the SDK's value (dates and timestamps in
/// their text forms), for the few rows a plugin rewrites.
fn cell_value(cell: rows::Cell<'_>) -> Value {
    match cell {
        rows::Cell::Null => Value::Null,
        rows::Cell::Boolean(b) => Value::Boolean(b),
        rows::Cell::Integer(i) => Value::Integer(i),
        rows::Cell::Float(f) => Value::Float(f),
        rows::Cell::Text(s) => Value::Text(s.to_owned()),
        rows::Cell::Date(d) => Value::Date(rows::format_date(d)),
        rows::Cell::Timestamp(t) => Value::Timestamp(rows::format_timestamp(t)),
    }
}

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
    /// The field holding when a row last changed (e.g. `updated_at`):
    /// with it, the entity lists its changes (contract 0.4's `changes`).
    /// Its stored text must sort in the order of time (one offset
    /// throughout). Deletions are not seen: rows that disappear do not
    /// say so (`tombstones: false`).
    #[serde(default)]
    changed_at: Option<String>,
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
            if let Some(at) = &entity.changed_at
                && !matches!(entity.fields.get(at), Some(Kind::Timestamp | Kind::Text))
            {
                return Err(SourceError::BadConfig(format!(
                    "entities.{name}.changed_at: `{at}` must be one of the entity's timestamp or text fields"
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
    fn describe() -> Result<Description, SourceError> {
        let settings = Settings::load()?;
        let change_feeds = settings
            .entities
            .iter()
            .filter(|(_, e)| e.changed_at.is_some())
            .map(|(name, _)| ChangeFeed {
                entity: name.clone(),
                tombstones: false,
            })
            .collect();
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
        Ok(Description {
            manifest: Manifest {
                name: "district-sql".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                sdk_version: SDK_VERSION.into(),
                entities,
            },
            change_feeds,
        })
    }

    fn changes(query: ChangesQuery) -> Result<ChangePage, SourceError> {
        let settings = Settings::load()?;
        let entity = settings.entity(&query.entity)?;
        let Some(changed_at) = &entity.changed_at else {
            return Err(SourceError::Unsupported(format!(
                "`{}` lists no changes (no `changed_at` in its settings)",
                query.entity
            )));
        };
        entity.check_projection(&query.entity, &query.projection)?;
        // The watermark is the last change time as stored and the id of
        // the last row at that time; empty: from the beginning.
        let after = match query.since.as_deref() {
            None | Some("") => None,
            Some(since) => Some(Position::decode(since)?),
        };
        let statement = changes_statement(
            sql::database_dialect(),
            &entity.sql,
            changed_at,
            &query,
            after.as_ref(),
        )?;
        let mut kinds = entity.kinds(&query.projection);
        kinds.push(None);
        let found = sql_rows::query(&statement.sql, &statement.params, &kinds)
            .map_err(mapping::sql_error)?;
        let limit = query.limit as usize;
        let id_at = query.projection.iter().position(|f| f == "id");
        let maps = entity.maps(&query.projection);
        let mut out = rows::Writer::with_capacity(found.cells.len());
        let mut last: Option<Position> = None;
        let mut reader = rows::Reader::new(&found.cells);
        let kept = (found.rows as usize).min(limit);
        for _ in 0..kept {
            let mut id = None;
            for (column, (field, map)) in query.projection.iter().zip(&maps).enumerate() {
                let cell = next_cell(&mut reader)?;
                if Some(column) == id_at {
                    id = text_of(cell);
                }
                write_mapped(&mut out, cell, field, entity, *map)?;
            }
            let time = match next_cell(&mut reader)? {
                rows::Cell::Text(t) => t.to_owned(),
                other => {
                    return Err(SourceError::UpstreamError(format!(
                        "`{changed_at}` came back as {other:?}, not text"
                    )));
                }
            };
            let id = id.ok_or_else(|| SourceError::UpstreamError("a row without an id".into()))?;
            last = Some(Position { division: time, id });
        }
        let watermark = match (last, query.since) {
            (Some(position), _) => position.encode(),
            (None, since) => since.unwrap_or_default(),
        };
        Ok(ChangePage {
            rows: RowBuffer {
                columns: query.projection,
                rows: kept as u32,
                cells: out.into_bytes(),
            },
            deleted: vec![],
            watermark,
            more: found.rows as usize > limit,
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
        entity.check_projection(&query.entity, &query.projection)?;
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
        // The host reads each column as its field's kind: the rows come
        // back as the page's buffer, and pass through untouched unless a
        // projected field is value-mapped.
        let kinds = entity.kinds(&query.projection);
        let mut found = sql_rows::query(&statement.sql, &statement.params, &kinds)
            .map_err(mapping::sql_error)?;
        found.columns = query.projection.clone();
        let maps = entity.maps(&query.projection);
        if maps.iter().any(Option::is_some) {
            let mut out = rows::Writer::with_capacity(found.cells.len());
            let mut reader = rows::Reader::new(&found.cells);
            for _ in 0..found.rows {
                for (column, map) in query.projection.iter().zip(&maps) {
                    let cell = next_cell(&mut reader)?;
                    write_mapped(&mut out, cell, column, entity, *map)?;
                }
            }
            found.cells = out.into_bytes();
        }
        keyset_page(found, query.limit)
    }
}

impl EntitySettings {
    /// Every projected field must be one of the entity's.
    fn check_projection(&self, entity: &str, projection: &[String]) -> Result<(), SourceError> {
        match projection.iter().find(|f| !self.fields.contains_key(*f)) {
            Some(f) => Err(SourceError::Unsupported(format!(
                "field `{f}` of `{entity}`"
            ))),
            None => Ok(()),
        }
    }

    /// The kind the host reads each projected column as: the field's,
    /// except that a value-mapped field is read as text and mapped here.
    fn kinds(&self, projection: &[String]) -> Vec<Option<lianqiao_sdk::ValueKind>> {
        projection
            .iter()
            .map(|f| match (self.map.contains_key(f), self.fields.get(f)) {
                (true, _) => Some(lianqiao_sdk::ValueKind::Text),
                (false, kind) => kind.map(|k| k.value_kind()),
            })
            .collect()
    }

    fn maps<'a>(&'a self, projection: &[String]) -> Vec<Option<&'a BTreeMap<String, String>>> {
        projection.iter().map(|f| self.map.get(f)).collect()
    }
}

fn next_cell<'a>(reader: &mut rows::Reader<'a>) -> Result<rows::Cell<'a>, SourceError> {
    match reader.next_cell() {
        Some(Ok(cell)) => Ok(cell),
        Some(Err(e)) => Err(SourceError::Internal(format!("the host's rows: {e}"))),
        None => Err(SourceError::Internal("the host's rows end early".into())),
    }
}

fn text_of(cell: rows::Cell<'_>) -> Option<String> {
    match cell {
        rows::Cell::Text(s) => Some(s.to_owned()),
        _ => None,
    }
}

/// Copy one cell, through the field's value map when it has one (a mapped
/// field was read as text; its mapped value takes the field's kind).
fn write_mapped(
    out: &mut rows::Writer,
    cell: rows::Cell<'_>,
    column: &str,
    entity: &EntitySettings,
    map: Option<&BTreeMap<String, String>>,
) -> Result<(), SourceError> {
    let Some(map) = map else {
        out.cell(cell);
        return Ok(());
    };
    let kind = entity.fields.get(column).copied().unwrap_or(Kind::Text);
    let value = convert_cell(column, cell_value(cell), kind, Some(map))?;
    let buffer = lianqiao_sdk::row_buffer(vec![column.to_string()], &[vec![value]])?;
    for cell in rows::Reader::new(&buffer.cells) {
        out.cell(cell.map_err(|e| SourceError::Internal(e.to_string()))?);
    }
    Ok(())
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
            changed_at: None,
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
