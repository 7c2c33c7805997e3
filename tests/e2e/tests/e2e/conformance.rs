//! The conformance kit (`lianqiao plugin test`, issue 18): a plugin that
//! keeps the contract passes; one that breaks it fails with what to fix.

use lianqiao_e2e::{
    ConfigDir, database_url, fresh_database, jining_into, plugin_dir, saihan_into, workspace_root,
};

fn plugin_test(dir: &ConfigDir, source: &str, plugin: &str) -> (bool, String) {
    let out = std::process::Command::new(workspace_root().join("target/debug/lianqiao"))
        .args(["plugin", "test"])
        .arg(plugin_dir().join(plugin))
        .arg("--source")
        .arg(dir.dir.path().join(format!("sources/{source}.toml")))
        .arg("--config")
        .arg(dir.main_file())
        .env("RUST_LOG", "error")
        .output()
        .expect("run lianqiao plugin test");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn district_sql_passes_the_kit_on_a_real_district() {
    let dir = ConfigDir::new().with_huimin();
    let (ok, text) = plugin_test(&dir, "huimin", "district_sql.wasm");
    assert!(ok, "{text}");
    for expected in [
        "ok    grids: small pages (limit 7) give the same rows in the same order",
        "ok    grids: a narrower scope (150103",
        "ok    grids: the declared filter `tier = …` is applied",
        "ok    grids: its count agrees with its rows",
        "ok    grids: its count's record digest is the sum of its rows' record keys",
        "ok    errors: a cursor it did not make is `bad-cursor`",
        "ok    commands: a move of a case that does not exist is refused",
        "ok    cases: dates and timestamps are time",
        "ok    cases: lists its changes from the beginning",
        "ok    cases: nothing new after the last watermark",
        "ok    cases: a watermark it did not make is `bad-cursor`",
        "ok    grids: lists no changes",
        ", 0 failed",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
}

/// Contract 0.3's record digests come out of each engine's own SQL
/// (`md5()` in PostgreSQL and MariaDB, the host's `lq_record_key` in
/// SQLite): the kit checks each equals the sum the gateway computes from
/// the rows' ids, on every engine a district runs.
#[tokio::test]
async fn record_digests_agree_with_the_rows_on_postgresql_and_mariadb() {
    let mut engines = 0;
    if let Some(url) = database_url(
        "LIANQIAO_TEST_POSTGRES_URL",
        "record_digests_agree_with_the_rows_on_postgresql",
    ) {
        let url = fresh_database(&url, "lianqiao_kit_digest").await;
        saihan_into(&url)
            .await
            .expect("write Saihan into PostgreSQL");
        let dir = ConfigDir::new().with_demo_source("saihan", &url);
        let (ok, text) = plugin_test(&dir, "saihan", "district_sql.wasm");
        assert!(ok, "{text}");
        assert!(
            text.contains(": its count's record digest is the sum of its rows' record keys")
                && !text.contains("FAIL"),
            "{text}"
        );
        engines += 1;
    }
    if let Some(url) = database_url(
        "LIANQIAO_TEST_MYSQL_URL",
        "record_digests_agree_with_the_rows_on_mariadb",
    ) {
        let url = fresh_database(&url, "lianqiao_kit_digest").await;
        jining_into(&url).await.expect("write Jining into MariaDB");
        let dir = ConfigDir::new().with_demo_source("jining", &url);
        let (ok, text) = plugin_test(&dir, "jining", "district_sql.wasm");
        assert!(ok, "{text}");
        assert!(
            text.contains(": its count's record digest is the sum of its rows' record keys")
                && !text.contains("FAIL"),
            "{text}"
        );
        engines += 1;
    }
    println!("record digests checked on {engines} of 2 server engines");
}

#[test]
fn a_plugin_that_keeps_the_contract_passes_and_each_broken_one_fails_with_what_to_fix() {
    let (ok, text) = plugin_test(
        &ConfigDir::new().with_misbehaving("kit", "table", "150103", ""),
        "kit",
        "misbehave.wasm",
    );
    assert!(ok, "the conforming table failed:\n{text}");
    for expected in [
        "ok    grids: the declared filter `name = …` is applied",
        // 20 grids changed, then one deleted, in steps of 50.
        "ok    grids: lists its changes from the beginning (20 rows, 1 deletions in 1 steps)",
        "ok    grids: nothing new after the last watermark",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
    let cases = [
        (
            "loopcursor",
            "FAIL  grids: small pages (limit 7) give the same rows in the same order",
            "a cursor skips or repeats rows",
        ),
        (
            "ignorefilter",
            "FAIL  grids: the declared filter `name = …` is applied",
            "apply the filter upstream, or do not declare it in the manifest",
        ),
        (
            "leak",
            "FAIL  grids: pages through its coverage",
            "a row is outside the query's scope",
        ),
    ];
    for (mode, check, fix) in cases {
        let dir = ConfigDir::new().with_misbehaving("kit", mode, "150103", "");
        let (ok, text) = plugin_test(&dir, "kit", "misbehave.wasm");
        assert!(!ok, "{mode}: the kit passed:\n{text}");
        assert!(text.contains(check), "{mode}: `{check}` missing:\n{text}");
        assert!(text.contains(fix), "{mode}: `{fix}` missing:\n{text}");
    }
}
