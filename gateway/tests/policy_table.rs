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
