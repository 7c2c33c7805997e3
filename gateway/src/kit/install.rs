//! Adding or replacing a source in a configuration: the one path behind
//! `lianqiao source check`, `lianqiao source add` and the admin
//! listener's `PUT /admin/sources/{name}`. A candidate file is loaded as
//! if it were in the sources directory (through every check a reload
//! runs), its source is probed, and only then is it written there,
//! atomically, for the reload that swaps it in.

use std::path::{Path, PathBuf};

use crate::config;
use crate::sources::probe;
use crate::state::Gateway;

/// The `name` a source file declares.
pub fn source_name(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    name_in(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// The `name` in a source file's text.
pub fn name_in(text: &str) -> Result<String, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    table
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| "no `name`".to_string())
}

/// A candidate that loaded: the gateway it would make, and its probe.
pub struct Checked {
    pub name: String,
    pub gateway: Gateway,
    pub probe: probe::Report,
}

impl Checked {
    /// Its problems, one per line, each with the candidate file and the
    /// line of the mapping it is about.
    pub fn problems(&self, file: &Path) -> Vec<String> {
        self.probe
            .problems
            .iter()
            .map(|p| probe::located(file, p))
            .collect()
    }

    /// Its plan warnings, located the same way.
    pub fn warnings(&self, file: &Path) -> Vec<String> {
        self.probe
            .warnings
            .iter()
            .map(|w| probe::located(file, w))
            .collect()
    }
}

/// Loads the configuration at `config` with `candidate` in its sources
/// directory and probes the candidate's source (`sample` rows per entity).
/// `Err` carries the configuration's errors.
pub async fn check(config: &Path, candidate: &Path, sample: u32) -> Result<Checked, String> {
    let name = source_name(candidate)?;
    let loaded = config::load_with_candidate(config, Some(candidate)).map_err(|e| e.to_string())?;
    let gateway = Gateway::build(loaded).await.map_err(|e| e.to_string())?;
    let Some(source) = gateway.sources.get(&name) else {
        return Err(format!(
            "{}: source `{name}` did not load",
            candidate.display()
        ));
    };
    let probe = probe::probe(&source, sample).await;
    Ok(Checked {
        name,
        gateway,
        probe,
    })
}

/// Writes `text` into the sources directory of `config` atomically (a
/// temporary file renamed over the target), over the file that already
/// declares `name` if there is one, else as `<name>.toml`. The path.
pub fn install(config: &Path, text: &[u8], name: &str) -> Result<PathBuf, String> {
    let dir = config::sources_dir(config).map_err(|e| e.to_string())?;
    let existing = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .find(|p| source_name(p).is_ok_and(|n| n == name));
    let target = existing.unwrap_or_else(|| dir.join(format!("{name}.toml")));
    // Not `*.toml`: a reload that runs meanwhile does not read it.
    let tmp = dir.join(format!(".{name}.toml.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(text)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &target)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", target.display())
    })?;
    Ok(target)
}

/// A candidate received as text (the admin API): written beside the
/// sources as `.<name>.toml.pending` (never read by a reload), checked,
/// removed. A source name is `[a-z0-9_-]`, so it makes a safe file name.
pub async fn check_text(
    config: &Path,
    name: &str,
    text: &str,
    sample: u32,
) -> Result<Checked, String> {
    let dir = config::sources_dir(config).map_err(|e| e.to_string())?;
    let pending = dir.join(format!(".{name}.toml.pending"));
    std::fs::write(&pending, text).map_err(|e| format!("{}: {e}", pending.display()))?;
    let checked = check(config, &pending, sample).await;
    let _ = std::fs::remove_file(&pending);
    checked
}
