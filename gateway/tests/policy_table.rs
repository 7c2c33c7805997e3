//! The default policy's test table (config/policy/tests) passes against the
//! shipped policy and fields file — what `lianqiao policy test` runs.

use std::path::PathBuf;
use std::sync::Arc;

#[test]
fn the_default_policy_passes_its_test_table() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let engine = lianqiao_policy::PolicyEngine::load(&root.join("config/policy"))
        .unwrap_or_else(|p| panic!("{p:?}"));
    let fields = std::fs::read_to_string(root.join("config/fields.toml")).unwrap();
    let catalog = lianqiao_gateway::model::parse_field_classes(&fields).unwrap();
    let enforcer = lianqiao_policy::Enforcer {
        engine: Arc::new(engine),
        catalog: Arc::new(catalog),
    };
    let results =
        lianqiao_policy::cases::run_dir(&enforcer, &root.join("config/policy/tests")).unwrap();
    assert!(results.len() >= 16, "the table has its cases");
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {:?}", r.name, r.problems))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The console's matrix for the shipped policy agrees, cell by cell, with
/// what `lianqiao policy explain` prints for every level, resource and
/// purpose (the operator's command and the console are one engine).
#[test]
fn the_console_matrix_agrees_with_policy_explain_for_every_level_and_resource() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let (dir, fields_file) = (root.join("config/policy"), root.join("config/fields.toml"));
    let engine = lianqiao_policy::PolicyEngine::load(&dir).unwrap_or_else(|p| panic!("{p:?}"));
    let fields = std::fs::read_to_string(&fields_file).unwrap();
    let catalog = lianqiao_gateway::model::parse_field_classes(&fields).unwrap();
    let enforcer = lianqiao_policy::Enforcer {
        engine: Arc::new(engine),
        catalog: Arc::new(catalog),
    };
    // The purposes callers may declare, from the shipped configuration.
    let main: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("config/lianqiao.toml")).unwrap())
            .unwrap();
    let purposes: Vec<String> = main["policy"]["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(purposes.len() >= 3, "{purposes:?}");
    let division = lianqiao_gateway::console::matrix::DEFAULT_DIVISION;
    let mut cells = 0;
    for purpose in &purposes {
        let matrix = lianqiao_gateway::console::matrix::matrix(&enforcer, division, purpose, &[]);
        for level in matrix["levels"].as_array().unwrap() {
            let name = level["level"].as_str().unwrap();
            let at = level["division"].as_str().unwrap();
            for cell in level["resources"].as_array().unwrap() {
                let resource = cell["resource"].as_str().unwrap();
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_lianqiao"))
                    .current_dir(&root)
                    .args(["policy", "explain", "--level", name, "--division", at])
                    .args(["--purpose", purpose, "--resource", resource])
                    .arg("--dir")
                    .arg(&dir)
                    .arg("--fields")
                    .arg(&fields_file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let explained: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                for key in ["decision", "scope", "only", "fields", "policies", "reason"] {
                    assert_eq!(
                        cell[key], explained[key],
                        "{purpose} {name} {resource} {key}: console {} vs policy explain {}",
                        cell[key], explained[key]
                    );
                }
                cells += 1;
            }
        }
    }
    assert_eq!(
        cells,
        purposes.len() * 6 * lianqiao_gateway::model::ENTITIES.len()
    );
}
