//! `lianqiao check --probe` (issue 18): a mapping that loads but serves
//! wrong data fails the probe with a message that says what to fix.

use lianqiao_e2e::{ConfigDir, workspace_root};

/// Run `lianqiao check --probe` on `dir`: (success, stdout + stderr).
fn probe(dir: &ConfigDir) -> (bool, String) {
    let binary = workspace_root().join("target/debug/lianqiao");
    assert!(
        binary.exists(),
        "build the gateway first: {}",
        binary.display()
    );
    let out = std::process::Command::new(binary)
        .args(["check", "--probe", "--sample", "200", "--config"])
        .arg(dir.main_file())
        .env("RUST_LOG", "error")
        .output()
        .expect("run lianqiao check --probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_shipped_mapping_passes_the_probe() {
    let (ok, text) = probe(&ConfigDir::new().with_huimin());
    assert!(ok, "{text}");
    assert!(
        text.contains("probe huimin: sampled case-steps 200, cases 200, divisions 200, grids 200"),
        "{text}"
    );
    assert!(
        text.contains("every sampled row fits the unified model"),
        "{text}"
    );
}

#[test]
fn source_check_probes_the_source_a_file_declares() {
    let dir =
        ConfigDir::new()
            .with_huimin()
            .edit_source("huimin", "g.tier AS tier", "'tiny' AS tier");
    let out = std::process::Command::new(workspace_root().join("target/debug/lianqiao"))
        .arg("source")
        .arg("check")
        .arg(dir.dir.path().join("sources/huimin.toml"))
        .arg("--config")
        .arg(dir.main_file())
        .env("RUST_LOG", "error")
        .output()
        .expect("run lianqiao source check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("probe huimin:"), "{text}");
    assert!(
        text.contains("`tier` = `tiny` is not a value of the model"),
        "{text}"
    );
    // The problem names the file and the line of the mapping it is about.
    let file = dir.dir.path().join("sources/huimin.toml");
    let line = std::fs::read_to_string(&file)
        .expect("huimin's file")
        .lines()
        .position(|l| l.trim() == "[plugin.settings.entities.grids]")
        .expect("the grids mapping")
        + 1;
    assert!(
        text.contains(&format!("{}:{line}: grids: ", file.display())),
        "{text}"
    );
}

#[test]
fn broken_mappings_fail_the_probe_with_what_to_fix() {
    let cases = [
        (
            "a misspelt column",
            "g.households AS households",
            "g.househlds AS households",
            "grids: the mapping does not run",
        ),
        (
            "a value outside the model",
            "g.tier AS tier",
            "'tiny' AS tier",
            "`tier` = `tiny` is not a value of the model (big, medium, small, micro)",
        ),
        (
            "a kind the model does not have",
            "g.households AS households",
            "'many' AS households",
            "column `households` of row 1 holds a text that is not a whole number",
        ),
        (
            "a local code with letters",
            "g.code AS division",
            "g.code || 'A' AS division",
            "`division` is not a unified division code",
        ),
        (
            "ids that are not unique",
            "SELECT g.code AS id,",
            "SELECT g.community_code AS id,",
            "`id` is not unique",
        ),
    ];
    for (what, from, to, expected) in cases {
        let dir = ConfigDir::new()
            .with_huimin()
            .edit_source("huimin", from, to);
        let (ok, text) = probe(&dir);
        assert!(!ok, "{what}: the probe passed:\n{text}");
        assert!(
            text.contains(expected),
            "{what}: expected `{expected}` in:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_division_is_found_by_its_unified_code_whatever_its_local_code() {
    // The district keeps its own local code in `code`.
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_source("huimin", "d.code AS code", "'HM-' || d.code AS code")
        .start()
        .await;
    let (status, body) = gw.get("/v1/divisions/150103001").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["id"], "150103001", "{body}");
    assert_eq!(body["data"]["code"], "HM-150103001", "{body}");
}

#[test]
fn a_mapping_no_index_can_serve_is_warned_with_the_plan() {
    // Huimin's grids page by an index on the grid code…
    let (ok, text) = probe(&ConfigDir::new().with_huimin());
    assert!(ok, "{text}");
    assert!(!text.contains("grids: each page"), "{text}");
    // …until `division` is computed: then every page scans and sorts.
    let dir = ConfigDir::new().with_huimin().edit_source(
        "huimin",
        "g.code AS division",
        "'' || g.code AS division",
    );
    let (ok, text) = probe(&dir);
    assert!(ok, "a warning is not a failure:\n{text}");
    assert!(
        text.contains("warning: ") && text.contains("grids: each page sorts the whole scope"),
        "{text}"
    );
    assert!(
        text.contains("index the columns behind `division` and `id`"),
        "{text}"
    );
}

#[test]
fn a_parent_the_source_does_not_list_is_a_problem() {
    // Grids whose parent is a grid code no row of the district has.
    let dir = ConfigDir::new().with_huimin().edit_source(
        "huimin",
        "d.parent_code AS parent, d.code AS division",
        "CASE WHEN d.level = 'grid' THEN d.parent_code || '99' ELSE d.parent_code END AS parent, d.code AS division",
    );
    let out = std::process::Command::new(workspace_root().join("target/debug/lianqiao"))
        .args([
            "check", "--probe", "--source", "huimin", "--sample", "5000", "--config",
        ])
        .arg(dir.main_file())
        .env("RUST_LOG", "error")
        .output()
        .expect("run lianqiao check --probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "divisions: `parent` names a division inside the coverage that the source does not list"
        ),
        "{text}"
    );
}
