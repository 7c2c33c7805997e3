//! Case commands (contract 0.2) as the statements the source declares.
//!
//! The source's config declares its write statements under
//! `[sql.write.statements]` (the host's grant: the plugin can run nothing
//! else), and under `[plugin.settings.commands.<command>]` which of them a
//! command runs and which command values fill their `?`s. State and loop
//! values go through the inverse of the entity's value `map`, so a
//! district that writes `研判` or `20` gets `研判` or `20`.

use std::collections::BTreeMap;

use lianqiao_sdk::sql_write::{self, StatementCall, WriteError};
use lianqiao_sdk::{Command, CommandError, CommandResult, SourceError, Value};
use serde::Deserialize;

use crate::EntitySettings;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSettings {
    /// The entity whose value maps translate `state` and `loop`.
    #[serde(default = "cases")]
    entity: String,
    run: Vec<Call>,
}

fn cases() -> String {
    "cases".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    /// A statement declared in the source's `[sql.write.statements]`.
    statement: String,
    /// The command value for each `?`, in order.
    params: Vec<String>,
    /// Rows the statement must change, else the command is a conflict.
    #[serde(default)]
    expect_rows: Option<u64>,
}

/// The values each command offers to statements.
const CREATE_PARAMS: &[&str] = &[
    "id",
    "division",
    "title",
    "category",
    "loop",
    "state",
    "reporter_name",
    "reporter_phone",
    "due_at",
    "linked_case",
    "step_id",
    "step_state",
    "step_loop",
    "at",
    "by_level",
    "note",
];
const TRANSITION_PARAMS: &[&str] = &[
    "id",
    "division",
    "from_state",
    "from_loop",
    "state",
    "loop",
    "satisfaction",
    "linked_case",
    "step_id",
    "step_state",
    "step_loop",
    "at",
    "by_level",
    "note",
];

impl CommandSettings {
    pub fn check(
        &self,
        name: &str,
        entities: &BTreeMap<String, EntitySettings>,
    ) -> Result<(), SourceError> {
        let offered = match name {
            "create-case" => CREATE_PARAMS,
            "transition-case" => TRANSITION_PARAMS,
            other => {
                return Err(SourceError::BadConfig(format!(
                    "commands.{other}: no such command (create-case, transition-case)"
                )));
            }
        };
        if !entities.contains_key(&self.entity) {
            return Err(SourceError::BadConfig(format!(
                "commands.{name}.entity: `{}` is not one of the entities",
                self.entity
            )));
        }
        if self.run.is_empty() {
            return Err(SourceError::BadConfig(format!(
                "commands.{name}.run: name at least one statement"
            )));
        }
        for (i, call) in self.run.iter().enumerate() {
            if let Some(bad) = call.params.iter().find(|p| !offered.contains(&p.as_str())) {
                return Err(SourceError::BadConfig(format!(
                    "commands.{name}.run[{i}].params: `{bad}` is not a value of the command ({})",
                    offered.join(", ")
                )));
            }
        }
        Ok(())
    }
}

pub fn command_error(e: SourceError) -> CommandError {
    match e {
        SourceError::BadConfig(m) => CommandError::BadConfig(m),
        SourceError::Denied(m) => CommandError::Denied(m),
        SourceError::UpstreamUnavailable(m) => CommandError::UpstreamUnavailable(m),
        SourceError::UpstreamTimeout(m) => CommandError::UpstreamTimeout(m),
        SourceError::UpstreamError(m) => CommandError::UpstreamError(m),
        SourceError::Unsupported(m) => CommandError::Unsupported(m),
        SourceError::BadCursor(m) | SourceError::Internal(m) => CommandError::Internal(m),
    }
}

fn write_error(e: WriteError) -> CommandError {
    match e {
        WriteError::Conflict(m) => CommandError::Conflict(m),
        WriteError::Denied(m) => CommandError::Denied(m),
        WriteError::Statement(m) => {
            CommandError::UpstreamError(format!("the database refused: {m}"))
        }
        WriteError::Unavailable(m) => CommandError::UpstreamUnavailable(m),
        WriteError::Timeout(m) => CommandError::UpstreamTimeout(m),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn opt(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Null, text)
}

/// The database's value for a unified one, through the inverse of `map`;
/// integers where the database's values are all integers.
fn local(map: Option<&BTreeMap<String, String>>, unified: &str) -> Result<Value, CommandError> {
    let Some(map) = map else {
        return Ok(text(unified));
    };
    let Some((db, _)) = map.iter().find(|(_, u)| u.as_str() == unified) else {
        return Err(CommandError::Rejected(format!(
            "`{unified}` has no value in this database (its map lists {})",
            map.values().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let numeric = map.keys().all(|k| k.parse::<i64>().is_ok());
    Ok(match db.parse::<i64>() {
        Ok(n) if numeric => Value::Integer(n),
        _ => text(db),
    })
}

pub fn apply(
    commands: &BTreeMap<String, CommandSettings>,
    entities: &BTreeMap<String, EntitySettings>,
    command: Command,
) -> Result<CommandResult, CommandError> {
    let name = match &command {
        Command::CreateCase(_) => "create-case",
        Command::TransitionCase(_) => "transition-case",
    };
    let settings = commands.get(name).ok_or_else(|| {
        CommandError::Unsupported(format!(
            "this source declares no `{name}` command ([plugin.settings.commands.{name}])"
        ))
    })?;
    let maps = entities
        .get(&settings.entity)
        .map(|e| &e.map)
        .ok_or_else(|| CommandError::BadConfig(format!("no entity `{}`", settings.entity)))?;
    let state_map = maps.get("state");
    let loop_map = maps.get("loop");
    let mut values: BTreeMap<&str, Value> = BTreeMap::new();
    let step;
    let id = match &command {
        Command::CreateCase(c) => {
            values.insert("id", text(&c.id));
            values.insert("division", text(&c.division));
            values.insert("title", text(&c.title));
            values.insert("category", text(&c.category));
            values.insert("loop", local(loop_map, &c.case_loop)?);
            values.insert("state", local(state_map, &c.first.state)?);
            values.insert("reporter_name", opt(&c.reporter_name));
            values.insert("reporter_phone", opt(&c.reporter_phone));
            values.insert("due_at", opt(&c.due_at));
            values.insert("linked_case", opt(&c.linked_case));
            step = &c.first;
            c.id.clone()
        }
        Command::TransitionCase(t) => {
            values.insert("id", text(&t.id));
            values.insert("division", text(&t.division));
            values.insert("from_state", local(state_map, &t.from_state)?);
            values.insert("from_loop", local(loop_map, &t.from_loop)?);
            values.insert("state", local(state_map, &t.to_state)?);
            values.insert("loop", local(loop_map, &t.to_loop)?);
            values.insert(
                "satisfaction",
                t.satisfaction.map_or(Value::Null, Value::Integer),
            );
            values.insert("linked_case", opt(&t.linked_case));
            step = &t.step;
            t.id.clone()
        }
    };
    // Both commands record one step.
    values.insert("step_id", text(&step.id));
    values.insert("step_state", local(state_map, &step.state)?);
    values.insert("step_loop", local(loop_map, &step.case_loop)?);
    values.insert("at", text(&step.at));
    values.insert("by_level", text(&step.by_level));
    values.insert("note", opt(&step.note));
    let calls = settings
        .run
        .iter()
        .map(|call| StatementCall {
            statement: call.statement.clone(),
            params: call
                .params
                .iter()
                .map(|p| values.get(p.as_str()).cloned().unwrap_or(Value::Null))
                .collect(),
            expect_rows: call.expect_rows,
        })
        .collect::<Vec<_>>();
    sql_write::transaction(&calls).map_err(write_error)?;
    Ok(CommandResult {
        id,
        replayed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_values_go_back_through_the_map() {
        let map: BTreeMap<String, String> = [("10", "discovered"), ("20", "assessed")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(local(Some(&map), "assessed"), Ok(Value::Integer(20)));
        assert!(matches!(
            local(Some(&map), "closed"),
            Err(CommandError::Rejected(m)) if m.contains("discovered, assessed")
        ));
        let names: BTreeMap<String, String> = [("研判", "assessed")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(local(Some(&names), "assessed"), Ok(text("研判")));
        assert_eq!(local(None, "assessed"), Ok(text("assessed")));
    }
}
