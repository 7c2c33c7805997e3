//! Config errors name the file and the key, and come all at once.

use lianqiao_e2e::{ConfigDir, plugin_dir};
use lianqiao_gateway::config;

#[test]
fn a_missing_file_is_named() {
    let errors = config::load(std::path::Path::new("/nonexistent/lianqiao.toml")).unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("/nonexistent/lianqiao.toml"), "{text}");
    assert!(text.contains("cannot read the file"), "{text}");
}

#[test]
fn an_unknown_key_is_named_with_file_key_and_line() {
    let dir = ConfigDir::new().source(
        "typo",
        &format!(
            "name = \"typo\"\ncoverage = [\"150103\"]\n[plugin]\npath = {:?}\n[limits]\nmemory_mb = 32\n",
            plugin_dir().join("district_sql.wasm").display().to_string()
        ),
    );
    let errors = config::load(&dir.main_file()).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert!(e.file.ends_with("sources/typo.toml"), "{e}");
    assert_eq!(e.key, "limits.memory_mb");
    assert!(
        e.message.contains("unknown field") && e.message.contains("memory_mib"),
        "{e}"
    );
    assert!(e.message.contains("line 6"), "{e}");
}

#[test]
fn every_error_is_reported_at_once() {
    let dir = ConfigDir::new()
        .source(
            "a",
            "name = \"a\"\ncoverage = [\"15'01\"]\n[plugin]\npath = \"no/such/plugin.wasm\"\n[limits]\nmemory_mib = 100000\n",
        )
        .source(
            "b",
            &format!(
                "name = \"a\"\ncoverage = [\"150103\"]\n[plugin]\npath = {:?}\n[sql]\nurl = \"oracle://x\"\n",
                plugin_dir().join("district_sql.wasm").display().to_string()
            ),
        );
    std::fs::write(
        dir.main_file(),
        "[server]\nlisten = \"nowhere\"\n[sources]\ndir = \"sources\"\n[model]\nfields = \"no-such-fields.toml\"\n",
    )
    .unwrap();
    let errors = config::load(&dir.main_file()).unwrap_err();
    let found: Vec<(String, String)> = errors
        .0
        .iter()
        .map(|e| {
            (
                e.file.file_name().unwrap().to_string_lossy().into_owned(),
                e.key.clone(),
            )
        })
        .collect();
    for expected in [
        ("lianqiao.toml", "server.listen"),
        ("lianqiao.toml", "model.fields"),
        ("a.toml", "plugin.path"),
        ("a.toml", "coverage[0]"),
        ("a.toml", "limits.memory_mib"),
        ("b.toml", "name"),
        ("b.toml", "sql.url"),
    ] {
        assert!(
            found
                .iter()
                .any(|(f, k)| f == expected.0 && k == expected.1),
            "missing {expected:?} in:\n{errors}"
        );
    }
    let text = errors.to_string();
    assert!(
        text.contains("no plugin file at") && text.contains("cargo xtask plugins"),
        "{text}"
    );
}

#[tokio::test]
async fn a_plugin_that_is_not_a_component_is_refused_with_its_source_file() {
    let dir = ConfigDir::new();
    let bogus = dir.dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm at all").unwrap();
    let dir = dir.source(
        "bogus",
        &format!(
            "name = \"bogus\"\ncoverage = [\"150103\"]\n[plugin]\npath = {:?}\n",
            bogus.display().to_string()
        ),
    );
    let errors = dir.build().await.expect_err("not a component");
    let text = errors.to_string();
    assert!(
        text.contains("bogus.toml") && text.contains("`plugin`"),
        "{text}"
    );
    assert!(text.contains("is not a valid component"), "{text}");
}

#[test]
fn the_shipped_demo_config_is_valid() {
    // The demo config points at target/demo and target/plugins, which
    // `cargo xtask test` prepares; this keeps the documented example honest.
    let errors = config::load(&lianqiao_e2e::workspace_root().join("config/lianqiao.toml"));
    assert!(errors.is_ok(), "{}", errors.unwrap_err());
}

#[tokio::test]
async fn bad_telemetry_settings_are_named() {
    let dir = ConfigDir::new().edit_main(
        "[telemetry]\n",
        "[telemetry]\ntrace_sample_ratio = 1.5\notlp_endpoint = \"https://collector:4318/v1/traces\"\notlp_metrics_endpoint = \"collector:4318\"\n",
    );
    let errors = dir.build().await.expect_err("three bad settings");
    let text = errors.to_string();
    for key in [
        "telemetry.trace_sample_ratio",
        "telemetry.otlp_endpoint",
        "telemetry.otlp_metrics_endpoint",
    ] {
        assert!(text.contains(key), "{key} not named in:\n{text}");
    }
    assert!(text.contains("0.0 (none) to 1.0"), "{text}");
    assert!(text.contains("http://127.0.0.1:4318"), "{text}");
}

#[tokio::test]
async fn a_value_map_on_id_or_division_is_refused() {
    // Scope and paging run on `division` and `id` in the database: a value
    // map would break both silently, so district-sql refuses it.
    let dir = ConfigDir::new().with_huimin().edit_source(
        "huimin",
        "map.household_role = {",
        "map.division = { x = \"y\" }\nmap.household_role = {",
    );
    let errors = match dir.build().await {
        Ok(_) => panic!("a map on `division` loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        errors.contains("`division` cannot be value-mapped"),
        "{errors}"
    );
}
