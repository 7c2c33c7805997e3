//! The integrator's tools beside the probe (`sources::probe`): reading a
//! district database's catalog and proposing a source file from it, and
//! the plugin contract's conformance kit.

pub mod conformance;
pub mod install;
pub mod introspect;
pub mod plugin_new;
pub mod scaffold;

use std::path::{Component, Path, PathBuf};

/// `to` as a path relative to the directory `from` (both made absolute
/// against the current directory), for paths written into a source file,
/// which the gateway resolves against the file's own directory.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let (Ok(from), Ok(to)) = (std::path::absolute(from), std::path::absolute(to)) else {
        return to.to_path_buf();
    };
    fn normal(p: &Path) -> Vec<Component<'_>> {
        let mut out: Vec<Component> = Vec::new();
        for c in p.components() {
            match c {
                Component::CurDir => {}
                Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                    out.pop();
                }
                c => out.push(c),
            }
        }
        out
    }
    let (from, to) = (normal(&from), normal(&to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(
            relative_path(
                Path::new("/r/config/sources"),
                Path::new("/r/target/plugins/x.wasm")
            ),
            PathBuf::from("../../target/plugins/x.wasm")
        );
        assert_eq!(
            relative_path(Path::new("/r/a/./b/../c"), Path::new("/r/a/c/d")),
            PathBuf::from("d")
        );
    }
}
