//! A policy change, seen before it goes live. An operator drafts new texts
//! for the policy files (`policy/*.cedar`, the schema, the test tables
//! `policy/tests/*.toml`, the field classes `fields.toml`); the preview
//! validates the proposed set exactly as the loader would, runs every test
//! table against it, and diffs "who sees what" between the running policy
//! and the proposed one, for every purpose. Applying writes the files and
//! reloads through `Live::reload`, the same validate-and-swap path as any
//! reload: a set that does not build leaves the running gateway serving.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lianqiao_policy::{Enforcer, PolicyEngine};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::matrix;
use crate::config::Config;

/// The draft of one operator's change: the new text of each file it
/// touches, by its name in the console (`policy/default.cedar`).
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub files: BTreeMap<String, Edit>,
}

#[derive(Clone, Debug)]
pub struct Edit {
    /// The proposed text; empty removes a policy or test file.
    pub text: String,
    /// The SHA-256 of the file on disk when the edit was made (`None`: it
    /// did not exist), so an apply notices a change made meanwhile.
    pub base: Option<String>,
}

/// Largest file a draft takes (the shipped policy is about 8 KiB).
pub const MAX_FILE_BYTES: usize = 128 * 1024;
/// Files one draft may change (drafts live in the gateway's memory).
pub const MAX_FILES: usize = 16;

const FIELDS: &str = "fields.toml";

/// The file on disk a console name stands for, or why the name is not one
/// a change may touch.
pub fn path_of(config: &Config, name: &str) -> Result<PathBuf, String> {
    let stem_ok = |stem: &str| {
        !stem.is_empty()
            && stem.len() <= 64
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let unknown = || {
        format!(
            "`{name}` is not a file a change may touch: fields.toml, policy/<name>.cedar, policy/<name>.cedarschema or policy/tests/<name>.toml (names of a-z, 0-9, - and _)"
        )
    };
    if name == FIELDS {
        return Ok(config.fields_file.clone());
    }
    if let Some(rest) = name.strip_prefix("policy/tests/") {
        return match rest.strip_suffix(".toml") {
            Some(stem) if stem_ok(stem) => Ok(config.policy_dir.join("tests").join(rest)),
            _ => Err(unknown()),
        };
    }
    if let Some(rest) = name.strip_prefix("policy/") {
        let stem = rest
            .strip_suffix(".cedarschema")
            .or_else(|| rest.strip_suffix(".cedar"));
        return match stem {
            Some(stem) if stem_ok(stem) => Ok(config.policy_dir.join(rest)),
            _ => Err(unknown()),
        };
    }
    Err(unknown())
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Every file a change may touch, as it is on disk now.
pub fn current_files(config: &Config) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut read_dir = |dir: &Path, prefix: &str, suffixes: &[&str]| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.is_file()
                && suffixes.iter().any(|s| name.ends_with(s))
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                files.insert(format!("{prefix}{name}"), text);
            }
        }
    };
    read_dir(&config.policy_dir, "policy/", &[".cedar", ".cedarschema"]);
    read_dir(
        &config.policy_dir.join("tests"),
        "policy/tests/",
        &[".toml"],
    );
    if let Ok(text) = std::fs::read_to_string(&config.fields_file) {
        files.insert(FIELDS.to_string(), text);
    }
    files
}

/// Record `text` as the draft of `name`, against the file as it is now.
pub fn edit(config: &Config, draft: &mut Draft, name: &str, text: String) -> Result<(), String> {
    let path = path_of(config, name)?;
    if text.len() > MAX_FILE_BYTES {
        return Err(format!(
            "`{name}` is {} bytes; a policy file is at most {MAX_FILE_BYTES}",
            text.len()
        ));
    }
    if text.trim().is_empty() && (name == FIELDS || name.ends_with(".cedarschema")) {
        return Err(format!(
            "`{name}` cannot be removed: the gateway needs it (edit it instead)"
        ));
    }
    if !draft.files.contains_key(name) && draft.files.len() >= MAX_FILES {
        return Err(format!(
            "a draft changes at most {MAX_FILES} files; apply or discard this one first"
        ));
    }
    let on_disk = std::fs::read_to_string(&path).ok();
    if on_disk.is_none() && text.trim().is_empty() {
        draft.files.remove(name);
        return Ok(());
    }
    // Browsers send form text with CRLF line ends; the files use LF.
    let text = text.replace("\r\n", "\n");
    let base = on_disk.as_deref().map(sha256);
    match draft.files.get_mut(name) {
        // Drafting the file again takes the file as it is now into
        // account (the page said it changed; the preview diffs against the
        // running policy), so the base moves to it.
        Some(existing) => {
            existing.text = text;
            existing.base = base;
        }
        None => {
            draft.files.insert(name.to_string(), Edit { text, base });
        }
    }
    Ok(())
}

/// The files as they would be with the draft applied.
fn proposed(current: &BTreeMap<String, String>, draft: &Draft) -> BTreeMap<String, String> {
    let mut files = current.clone();
    for (name, edit) in &draft.files {
        if edit.text.trim().is_empty() {
            files.remove(name);
        } else {
            files.insert(name.clone(), edit.text.clone());
        }
    }
    files
}

/// The policy engine and field catalog the files would build, or every
/// problem (each with its file), as the loader reports them. Policies are
/// named by their paths, as the loader names them (the policy's version
/// digests the names too).
fn build(
    config: &Config,
    files: &BTreeMap<String, String>,
    running: &Enforcer,
) -> Result<Enforcer, Vec<String>> {
    let on_disk = |name: &str| {
        path_of(config, name)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| name.to_string())
    };
    let mut problems = Vec::new();
    let schemas: Vec<(&String, &String)> = files
        .iter()
        .filter(|(n, _)| n.starts_with("policy/") && n.ends_with(".cedarschema"))
        .collect();
    let policies: Vec<(String, String)> = files
        .iter()
        .filter(|(n, _)| {
            n.starts_with("policy/") && !n.starts_with("policy/tests/") && n.ends_with(".cedar")
        })
        .map(|(n, t)| (on_disk(n), t.clone()))
        .collect();
    if schemas.len() != 1 {
        problems.push(format!(
            "policy/: needs exactly one *.cedarschema file, the change leaves {}",
            schemas.len()
        ));
    }
    if policies.is_empty() {
        problems.push("policy/: no *.cedar file is left: nothing would be permitted".into());
    }
    let catalog = match files
        .get(FIELDS)
        .map(|t| crate::model::parse_field_classes(t))
    {
        Some(Ok(catalog)) => Some(catalog),
        Some(Err(found)) => {
            problems.extend(
                found
                    .into_iter()
                    .map(|(key, message)| format!("{FIELDS}: {key}: {message}")),
            );
            None
        }
        None => {
            problems.push(format!("{FIELDS} is missing"));
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let (schema_name, schema_text) = schemas[0];
    let engine = PolicyEngine::from_sources(&on_disk(schema_name), schema_text, &policies)
        .map_err(|found| {
            found
                .iter()
                .map(|p| format!("{}: {}", p.file, p.message))
                .collect::<Vec<_>>()
        })?;
    // The division registry is data, not policy: the proposal decides with
    // the one the running gateway has.
    engine.set_registry(running.engine.registry());
    Ok(Enforcer {
        engine: Arc::new(engine),
        catalog: Arc::new(catalog.unwrap_or_default()),
    })
}

/// One test case's outcome under the proposal.
#[derive(Clone, Debug)]
pub struct TestOutcome {
    pub file: String,
    pub name: String,
    pub problems: Vec<String>,
}

/// One cell of "who sees what" that the proposal changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellChange {
    pub purpose: String,
    pub level: String,
    pub resource: String,
    /// The field; empty when the decision (or scope) itself changes.
    pub field: String,
    pub before: String,
    pub after: String,
}

/// What the draft would do.
#[derive(Clone, Debug, Default)]
pub struct Preview {
    /// The files the draft touches.
    pub files: Vec<String>,
    /// Validation problems; when any, nothing else was computed.
    pub problems: Vec<String>,
    pub tests: Vec<TestOutcome>,
    pub changes: Vec<CellChange>,
    pub version_before: String,
    pub version_after: Option<String>,
}

impl Preview {
    pub fn failed_tests(&self) -> impl Iterator<Item = &TestOutcome> {
        self.tests.iter().filter(|t| !t.problems.is_empty())
    }

    /// Whether applying would be accepted.
    pub fn applicable(&self) -> bool {
        !self.files.is_empty() && self.problems.is_empty() && self.failed_tests().next().is_none()
    }

    /// Everything that stands in the way, in one message.
    pub fn refusal(&self) -> String {
        if self.files.is_empty() {
            return "the draft is empty: edit a file first".into();
        }
        let mut lines = self.problems.clone();
        lines.extend(self.failed_tests().map(|t| {
            format!(
                "test `{}` ({}) fails: {}",
                t.name,
                t.file,
                t.problems.join("; ")
            )
        }));
        lines.join("\n")
    }

    pub fn to_json(&self) -> Value {
        json!({
            "files": self.files,
            "valid": self.problems.is_empty(),
            "problems": self.problems,
            "tests": {
                "run": self.tests.len(),
                "failed": self.failed_tests().map(|t| json!({
                    "file": t.file, "name": t.name, "problems": t.problems,
                })).collect::<Vec<_>>(),
            },
            "changes": self.changes.iter().map(|c| json!({
                "purpose": c.purpose, "level": c.level, "resource": c.resource,
                "field": if c.field.is_empty() { Value::Null } else { json!(c.field) },
                "before": c.before, "after": c.after,
            })).collect::<Vec<_>>(),
            "policy_version": { "before": self.version_before, "after": self.version_after },
            "applicable": self.applicable(),
        })
    }
}

/// Validate the draft, run the test tables with it, and diff the matrix
/// for `division` under every purpose.
/// `current`: the files as they are now (`current_files`).
pub fn preview(
    config: &Config,
    current: &BTreeMap<String, String>,
    draft: &Draft,
    division: &str,
    roles: &[String],
) -> Preview {
    let running = &config.enforcer;
    let files = proposed(current, draft);
    let mut out = Preview {
        files: draft.files.keys().cloned().collect(),
        version_before: running.engine.version().to_string(),
        ..Preview::default()
    };
    let next = match build(config, &files, running) {
        Ok(next) => next,
        Err(problems) => {
            out.problems = problems;
            return out;
        }
    };
    out.version_after = Some(next.engine.version().to_string());
    for (name, text) in files.iter().filter(|(n, _)| n.starts_with("policy/tests/")) {
        match lianqiao_policy::cases::run(&next, name, text) {
            Ok(results) => out.tests.extend(results.into_iter().map(|r| TestOutcome {
                file: r.file,
                name: r.name,
                problems: r.problems,
            })),
            Err(e) => out.problems.push(format!("{name}: {e}")),
        }
    }
    for purpose in &config.policy.purposes {
        let before = cells(&matrix::matrix(running, division, purpose, roles));
        let after = cells(&matrix::matrix(&next, division, purpose, roles));
        out.changes.extend(diff(purpose, &before, &after));
    }
    out
}

type Cells = BTreeMap<(String, String, String), String>;

/// Each cell of a matrix as one word: `(level, resource, "")` for the
/// decision (with its scope), `(level, resource, field)` for each field of
/// an allowed resource.
fn cells(m: &Value) -> Cells {
    let mut out = Cells::new();
    for level in m["levels"].as_array().into_iter().flatten() {
        let l = level["level"].as_str().unwrap_or("").to_string();
        for cell in level["resources"].as_array().into_iter().flatten() {
            let r = cell["resource"].as_str().unwrap_or("").to_string();
            if cell["decision"] != "allow" {
                out.insert((l.clone(), r, String::new()), "denied".into());
                continue;
            }
            let scope = cell["scope"].as_str().unwrap_or("");
            out.insert(
                (l.clone(), r.clone(), String::new()),
                format!("allowed within {scope}"),
            );
            for f in cell["fields"].as_array().into_iter().flatten() {
                let shown = f["as"].as_str().unwrap_or("withheld");
                let word = match f["mask"].as_str() {
                    Some(mask) if shown == "masked" => format!("masked ({mask})"),
                    _ => shown.to_string(),
                };
                out.insert(
                    (
                        l.clone(),
                        r.clone(),
                        f["field"].as_str().unwrap_or("").to_string(),
                    ),
                    word,
                );
            }
        }
    }
    out
}

/// The cells that differ. A field's change is reported only where the
/// resource is allowed on both sides (a changed decision is one line).
fn diff(purpose: &str, before: &Cells, after: &Cells) -> Vec<CellChange> {
    let keys: BTreeSet<&(String, String, String)> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        let (level, resource, field) = key;
        let decision = (level.clone(), resource.clone(), String::new());
        let allowed_both = [before, after]
            .iter()
            .all(|side| side.get(&decision).is_some_and(|d| d != "denied"));
        if !field.is_empty() && !allowed_both {
            continue;
        }
        let word = |side: &Cells| {
            side.get(key)
                .cloned()
                .unwrap_or_else(|| "withheld".to_string())
        };
        let (b, a) = (word(before), word(after));
        if b != a {
            out.push(CellChange {
                purpose: purpose.to_string(),
                level: level.clone(),
                resource: resource.clone(),
                field: field.clone(),
                before: b,
                after: a,
            });
        }
    }
    out
}

/// The files of the draft that changed on disk since it was made.
/// `current`: the files as they are now (`current_files`).
pub fn conflicts(current: &BTreeMap<String, String>, draft: &Draft) -> Vec<String> {
    draft
        .files
        .iter()
        .filter(|(name, edit)| current.get(*name).map(|t| sha256(t)) != edit.base)
        .map(|(name, _)| name.clone())
        .collect()
}

/// What a file held before an apply (`None`: it did not exist).
pub struct Backup(Vec<(PathBuf, Option<String>)>);

/// Write the draft's files (each through a temporary file and a rename, so
/// a reader never sees half a file). Returns what they held, to restore if
/// the reload refuses the result.
pub fn write(config: &Config, draft: &Draft) -> Result<Backup, String> {
    let mut backup = Backup(Vec::new());
    for (name, edit) in &draft.files {
        let path = path_of(config, name)?;
        let before = std::fs::read_to_string(&path).ok();
        let result = if edit.text.trim().is_empty() {
            std::fs::remove_file(&path)
        } else {
            replace(&path, &edit.text)
        };
        backup.0.push((path.clone(), before));
        if let Err(e) = result {
            restore(&backup);
            return Err(format!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(backup)
}

fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Not *.cedar or *.toml: a reload in between does not read it.
    let tmp = path.with_file_name(format!(".{name}.console-tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Put back what `write` replaced.
pub fn restore(backup: &Backup) {
    for (path, before) in backup.0.iter().rev() {
        let result = match before {
            Some(text) => replace(path, text),
            None => std::fs::remove_file(path),
        };
        if let Err(e) = result {
            tracing::error!(file = %path.display(), error = %e, "could not restore a policy file after a refused apply");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells_of(pairs: &[((&str, &str, &str), &str)]) -> Cells {
        pairs
            .iter()
            .map(|((l, r, f), w)| ((l.to_string(), r.to_string(), f.to_string()), w.to_string()))
            .collect()
    }

    #[test]
    fn a_diff_names_each_changed_field_and_a_changed_decision_once() {
        let before = cells_of(&[
            (("street", "members", ""), "allowed within 150103001"),
            (("street", "members", "phone"), "masked (phone)"),
            (("street", "members", "name"), "masked (name)"),
            (("grid", "members", ""), "allowed within 15010300100101"),
            (("grid", "members", "phone"), "clear"),
        ]);
        let after = cells_of(&[
            (("street", "members", ""), "allowed within 150103001"),
            (("street", "members", "phone"), "withheld"),
            (("street", "members", "name"), "masked (name)"),
            (("grid", "members", ""), "denied"),
        ]);
        let changes = diff("case-handling", &before, &after);
        let seen: Vec<(&str, &str, &str, &str)> = changes
            .iter()
            .map(|c| {
                (
                    c.level.as_str(),
                    c.field.as_str(),
                    c.before.as_str(),
                    c.after.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("grid", "", "allowed within 15010300100101", "denied"),
                ("street", "phone", "masked (phone)", "withheld"),
            ]
        );
    }
}
