//! `lianqiao plugin new <name> --kind http`: a plugin crate for an HTTP
//! system, from the templates in `sdk/templates/http/` — a settings-driven
//! adapter (listing path, item keys, cursor paging) over the SDK's
//! snapshots, that builds for wasm32-wasip2 with one command and passes
//! the conformance kit as generated; the integrator edits it from there.

use std::path::{Path, PathBuf};

const CARGO_TOML: &str = include_str!("../../../sdk/templates/http/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../../sdk/templates/http/src/lib.rs.tmpl");
const SOURCE_TOML: &str = include_str!("../../../sdk/templates/http/source.toml.tmpl");

/// The kinds of plugin there are templates for.
pub const KINDS: &[&str] = &["http"];

/// What was written.
pub struct Created {
    pub dir: PathBuf,
    /// Where `cargo build --release --target wasm32-wasip2` puts the component.
    pub component: PathBuf,
    pub source_file: PathBuf,
}

/// A plugin name: lowercase letters, digits and `-`, starting with a letter.
pub fn is_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 48
        && !name.ends_with('-')
}

/// Writes `<parent>/<name>/` (refusing an existing directory). `sdk` is the
/// SDK the crate depends on (a path); `sources_dir` is where the source
/// file will be installed, against which its plugin path is written.
pub fn create(
    parent: &Path,
    name: &str,
    kind: &str,
    sdk: &Path,
    sources_dir: &Path,
) -> Result<Created, String> {
    if !is_plugin_name(name) {
        return Err(format!(
            "`{name}` is not a plugin name: lowercase letters, digits and -, starting with a letter"
        ));
    }
    if !KINDS.contains(&kind) {
        return Err(format!("--kind {kind}: the kinds are {}", KINDS.join(", ")));
    }
    if !sdk.join("Cargo.toml").is_file() {
        return Err(format!(
            "{}: no SDK there (give --sdk <path to a Lianqiao checkout's sdk/>)",
            sdk.display()
        ));
    }
    let dir = std::path::absolute(parent.join(name)).map_err(|e| e.to_string())?;
    if dir.exists() {
        return Err(format!("{}: already exists", dir.display()));
    }
    let krate = name.replace('-', "_");
    let component = dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{krate}.wasm"));
    let sdk = std::path::absolute(sdk).map_err(|e| e.to_string())?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &krate)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace(
                "{{wasm}}",
                &super::relative_path(sources_dir, &component)
                    .display()
                    .to_string(),
            )
    };
    let write = |path: PathBuf, text: String| -> Result<(), String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(dir.join("Cargo.toml"), fill(CARGO_TOML))?;
    write(dir.join("src/lib.rs"), fill(LIB_RS))?;
    let source_file = dir.join("source.toml");
    write(source_file.clone(), fill(SOURCE_TOML))?;
    Ok(Created {
        dir,
        component,
        source_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_crate_and_toml_safe() {
        assert!(is_plugin_name("street-app"));
        assert!(!is_plugin_name("Street"));
        assert!(!is_plugin_name("a\"b"));
        assert!(!is_plugin_name("x-"));
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
        let created = create(dir.path(), "street-app", "http", &sdk, dir.path()).expect("created");
        for file in ["Cargo.toml", "src/lib.rs", "source.toml"] {
            let text = std::fs::read_to_string(created.dir.join(file)).expect("written");
            assert!(!text.contains("{{"), "{file}: {text}");
        }
        assert!(
            create(dir.path(), "street-app", "http", &sdk, dir.path()).is_err(),
            "an existing directory is refused"
        );
    }
}
