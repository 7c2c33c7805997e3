//! Source templates: what districts that share a schema share.
//!
//! A region connects ~100 district databases in a handful of schemas. The
//! mapping of one schema (its SQL per resource, the plugin, limits) is
//! written once, as `<sources dir>/templates/<name>.toml`; a district's
//! own file says `template = "<name>"` and only what differs — its name,
//! coverage, database, credentials:
//!
//! ```toml
//! name = "huimin"
//! template = "district-huimin"
//! coverage = ["150103"]
//! [sql]
//! url = "sqlite://../data/huimin.sqlite"
//! ```
//!
//! The source file is laid over its template key by key (tables merge,
//! any other value in the source file wins). A template is part of the
//! source files that use it: its relative paths resolve against each
//! source file's folder, as if written there. `lianqiao source show
//! <name>` prints a source's effective configuration.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::ConfigError;

/// The folder of templates under a sources directory.
pub const TEMPLATES: &str = "templates";

/// A source file as written and as merged with its template.
pub struct Layered {
    /// The effective table (template, then the file over it).
    pub table: toml::Table,
    /// The template's file, if the source uses one.
    pub template: Option<PathBuf>,
    /// Keys the source file sets itself (dotted paths of its leaves), to
    /// say which file an error is in.
    own: Vec<String>,
}

/// Read `file` and lay it over its template (from `sources_dir`).
pub fn read(file: &Path, sources_dir: &Path) -> Result<Layered, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, "", format!("cannot read the file: {e}")))?;
    let mut table: toml::Table = super::load::parse(file, &text)?;
    let mut own = Vec::new();
    leaves(&table, "", &mut own);
    let Some(name) = table.remove("template") else {
        return Ok(Layered {
            table,
            template: None,
            own,
        });
    };
    let name = match name.as_str() {
        Some(n) if super::is_source_name(n) => n.to_string(),
        _ => {
            return Err(ConfigError::new(
                file,
                "template",
                format!(
                    "must name a template in {}/{TEMPLATES}/ (1–64 of a-z, 0-9, - and _), got {name}",
                    sources_dir.display()
                ),
            ));
        }
    };
    let template_file = sources_dir.join(TEMPLATES).join(format!("{name}.toml"));
    let template_text = std::fs::read_to_string(&template_file).map_err(|e| {
        ConfigError::new(
            file,
            "template",
            format!(
                "no template `{name}`: cannot read {}: {e}",
                template_file.display()
            ),
        )
    })?;
    let mut base: toml::Table = super::load::parse(&template_file, &template_text)?;
    for key in ["template", "name", "coverage"] {
        if base.contains_key(key) {
            return Err(ConfigError::new(
                &template_file,
                key,
                "a template cannot set this: each source file says it for itself",
            ));
        }
    }
    merge(&mut base, table);
    Ok(Layered {
        table: base,
        template: Some(template_file),
        own,
    })
}

impl Layered {
    /// The effective configuration as `T`; an error names the file the
    /// offending key was written in.
    pub fn parse<T: DeserializeOwned>(&self, file: &Path) -> Result<T, ConfigError> {
        let value = toml::Value::Table(self.table.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let mut key = e.path().to_string();
            // The message alone (its Display adds the table it was in).
            let message = e.into_inner().message().trim().to_string();
            if let Some(unknown) = message
                .strip_prefix("unknown field `")
                .and_then(|m| m.split('`').next())
                && key.rsplit('.').next() != Some(unknown)
            {
                key = if key == "." {
                    unknown.to_string()
                } else {
                    format!("{key}.{unknown}")
                };
            }
            if key == "." {
                key.clear();
            }
            let in_file = match &self.template {
                Some(t)
                    if !self
                        .own
                        .iter()
                        .any(|o| o == &key || o.starts_with(&format!("{key}.")))
                        && !key.is_empty() =>
                {
                    t.as_path()
                }
                _ => file,
            };
            ConfigError::new(in_file, key, message)
        })
    }

    /// The effective configuration as TOML, for operators.
    pub fn show(&self) -> String {
        toml::to_string_pretty(&self.table).unwrap_or_default()
    }
}

/// Lay `over` onto `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Every leaf key of `table` as a dotted path.
fn leaves(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => leaves(t, &path, out),
            _ => out.push(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_file_is_laid_over_its_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TEMPLATES)).unwrap();
        std::fs::write(
            dir.path().join("templates/district-a.toml"),
            "[plugin]\npath = \"p.wasm\"\n[limits]\nmemory_mib = 32\ndeadline_ms = 2000\n[plugin.settings.entities.grids]\nsql = \"SELECT 1\"\n",
        )
        .unwrap();
        let file = dir.path().join("one.toml");
        std::fs::write(
            &file,
            "name = \"one\"\ntemplate = \"district-a\"\ncoverage = [\"150103\"]\n[limits]\ndeadline_ms = 900\n",
        )
        .unwrap();
        let layered = read(&file, dir.path()).unwrap();
        let t = &layered.table;
        assert_eq!(t["name"].as_str(), Some("one"));
        assert!(!t.contains_key("template"));
        assert_eq!(
            t["limits"]["memory_mib"].as_integer(),
            Some(32),
            "from the template"
        );
        assert_eq!(
            t["limits"]["deadline_ms"].as_integer(),
            Some(900),
            "the file wins"
        );
        assert_eq!(
            t["plugin"]["settings"]["entities"]["grids"]["sql"].as_str(),
            Some("SELECT 1")
        );
        assert!(layered.show().contains("deadline_ms = 900"));
    }

    #[test]
    fn a_missing_template_and_a_template_that_names_its_source_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("one.toml");
        std::fs::write(&file, "name = \"one\"\ntemplate = \"nope\"\n").unwrap();
        let e = read(&file, dir.path()).err().unwrap();
        assert_eq!(e.key, "template");
        assert!(e.message.contains("no template `nope`"), "{}", e.message);
        std::fs::create_dir(dir.path().join(TEMPLATES)).unwrap();
        std::fs::write(
            dir.path().join("templates/bad.toml"),
            "coverage = [\"15\"]\n",
        )
        .unwrap();
        std::fs::write(&file, "name = \"one\"\ntemplate = \"bad\"\n").unwrap();
        let e = read(&file, dir.path()).err().unwrap();
        assert_eq!(e.key, "coverage");
        assert!(e.file.ends_with("templates/bad.toml"));
    }
}
