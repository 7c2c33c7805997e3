//! The commands the operator docs show run, and succeed: every
//! `cargo run -q -p lianqiao-gateway -- …` line of a ```sh block in
//! docs/*.md is run with the built `lianqiao` binary from the workspace
//! root (as a reader would run it there).

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_documented_lianqiao_commands_succeed() {
    const PREFIX: &str = "cargo run -q -p lianqiao-gateway -- ";
    let mut ran = 0;
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read doc");
        let mut in_sh = false;
        for line in text.lines() {
            match line.trim() {
                "```sh" => in_sh = true,
                "```" => in_sh = false,
                l if in_sh && l.starts_with(PREFIX) => {
                    let args: Vec<&str> = l[PREFIX.len()..].split_whitespace().collect();
                    let out = Command::new(env!("CARGO_BIN_EXE_lianqiao"))
                        .args(&args)
                        .current_dir(root())
                        .output()
                        .expect("run lianqiao");
                    assert!(
                        out.status.success(),
                        "{}: `{l}` failed:\n{}{}",
                        path.display(),
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    ran += 1;
                }
                _ => {}
            }
        }
    }
    assert!(ran >= 4, "the policy guide's commands were found ({ran})");
}
