//! The docs cannot rot.
//!
//! - Every `cargo run -q -p lianqiao-gateway -- …` line of a ```sh block
//!   in docs/*.md is run with the built `lianqiao` binary from the
//!   workspace root (as a reader would run it there), and must succeed.
//! - Every ```toml block in docs/*.md must parse as TOML. A block whose
//!   first line is `# source file` is read with the gateway's own type for
//!   a source file and then loaded through its plugin, as if it were saved
//!   in `config/sources/` (so its plugin settings and its manifest are
//!   checked too). A block whose first line is `# lianqiao.toml` is read
//!   as the gateway's main file. A documented key that does not exist
//!   fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use lianqiao_gateway::config::{GatewayFile, SourceConfig, SourceFile};
use lianqiao_gateway::sources::SourceSet;
use lianqiao_host::{Allocator, EngineSettings, PluginEngine};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every docs/*.md file with its text.
fn docs() -> Vec<(PathBuf, String)> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read doc");
        docs.push((path, text));
    }
    docs.sort();
    docs
}

/// One fenced block of a Markdown file.
struct Block<'a> {
    /// The fence's language (`sh`, `toml`, …; empty for none).
    lang: &'a str,
    /// The line the fence opens on, 1-based.
    line: usize,
    lines: Vec<&'a str>,
}

/// The fenced blocks of `text`, in order.
fn blocks(text: &str) -> Vec<Block<'_>> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim();
        match open.take() {
            None => {
                if let Some(lang) = fence.strip_prefix("```") {
                    open = Some(Block {
                        lang: lang.trim(),
                        line: i + 1,
                        lines: Vec::new(),
                    });
                }
            }
            Some(block) if fence == "```" => blocks.push(block),
            Some(mut block) => {
                block.lines.push(line);
                open = Some(block);
            }
        }
    }
    blocks
}

#[test]
fn the_documented_lianqiao_commands_succeed() {
    const PREFIX: &str = "cargo run -q -p lianqiao-gateway -- ";
    let mut ran = 0;
    for (path, text) in docs() {
        for block in blocks(&text).into_iter().filter(|b| b.lang == "sh") {
            for line in &block.lines {
                let Some(command) = line.trim().strip_prefix(PREFIX) else {
                    continue;
                };
                let args: Vec<&str> = command.split_whitespace().collect();
                let out = Command::new(env!("CARGO_BIN_EXE_lianqiao"))
                    .args(&args)
                    .current_dir(root())
                    .output()
                    .expect("run lianqiao");
                assert!(
                    out.status.success(),
                    "{}: `{}` failed:\n{}{}",
                    path.display(),
                    line.trim(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                ran += 1;
            }
        }
    }
    assert!(ran >= 4, "the policy guide's commands were found ({ran})");
}

#[test]
fn every_documented_toml_block_parses_and_names_only_real_settings() {
    let mut parsed = 0;
    let mut source_files = Vec::new();
    for (path, text) in docs() {
        for block in blocks(&text).into_iter().filter(|b| b.lang == "toml") {
            let at = format!("{}:{}", path.display(), block.line);
            let body = block.lines.join("\n");
            let table: toml::Table = toml::from_str(&body)
                .unwrap_or_else(|e| panic!("{at}: the ```toml block is not TOML: {e}"));
            parsed += 1;
            match block.lines.first().map(|l| l.trim()) {
                Some("# source file") => {
                    let file: SourceFile = toml::from_str(&body).unwrap_or_else(|e| {
                        panic!("{at}: not a source file the gateway accepts: {e}")
                    });
                    source_files.push((at, file));
                }
                Some("# lianqiao.toml") => {
                    // A fragment: the one table the main file requires is added.
                    let whole = if table.contains_key("sources") {
                        body
                    } else {
                        format!("{body}\n[sources]\ndir = \"sources\"\n")
                    };
                    if let Err(e) = toml::from_str::<GatewayFile>(&whole) {
                        panic!("{at}: not a lianqiao.toml the gateway accepts: {e}");
                    }
                }
                _ => {}
            }
        }
    }
    assert!(
        parsed >= 3,
        "the docs' ```toml blocks were found ({parsed})"
    );
    assert!(
        !source_files.is_empty(),
        "no ```toml block starting with `# source file` was found"
    );
    load_through_their_plugins(source_files);
}

/// Load each documented source file's plugin with the file's settings, as
/// the gateway loads a source (`describe`, the contract's manifest checks,
/// the unified model), resolving its paths as if the file were saved in
/// `config/sources/`. The upstream is never contacted: no `[sql]` or
/// `[http]` grant is given, and `describe` needs none.
fn load_through_their_plugins(files: Vec<(String, SourceFile)>) {
    let base = root().join("config/sources");
    let configs: Vec<SourceConfig> = files
        .into_iter()
        .map(|(at, raw)| {
            let plugin = base.join(&raw.plugin.path);
            assert!(
                plugin.is_file(),
                "{at}: no plugin at {} (`cargo xtask plugins` builds the plugins)",
                plugin.display()
            );
            SourceConfig {
                settings_json: serde_json::to_string(&raw.plugin.settings)
                    .unwrap_or_else(|e| panic!("{at}: [plugin.settings] as JSON: {e}")),
                file: PathBuf::from(at),
                template: None,
                name: raw.name,
                description: raw.description,
                plugin,
                sha256: raw.plugin.sha256,
                coverage: raw.coverage,
                enrich: raw.enrich,
                limits: raw.limits,
                sql_url: None,
                sql_max_connections: 0,
                sql_write: None,
                http: None,
                cache_max_bytes: usize::try_from(raw.cache.max_mib << 20).unwrap_or(usize::MAX),
                response_ttl_ms: raw.cache.response_ttl_ms,
                breaker: raw.breaker,
            }
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let engine = PluginEngine::new(EngineSettings {
            // No address space reserved up front: a test loads one or two plugins.
            allocator: Allocator::OnDemand,
            ..EngineSettings::default()
        })
        .expect("plugin engine");
        if let Err(errors) = SourceSet::load(&configs, &engine).await {
            panic!("a documented source file does not load:\n{errors}");
        }
    });
}
