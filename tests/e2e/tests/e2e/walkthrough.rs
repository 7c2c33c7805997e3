//! Issue 18's walkthrough: a district the project has never seen — its own
//! schema, pinyin column names, Chinese level names and local codes that
//! are not unified ones — connected the way docs/integrators.md says:
//! `source new` → edit → `source check` → `source add` on a running
//! gateway, which then serves it under unified codes.

use std::path::Path;
use std::process::Command;

use lianqiao_e2e::{ConfigDir, default_auth, workspace_root};

/// 新城区 (Xincheng, 150102) numbers its divisions `XC-01-001-01`; a table
/// of its own pairs each local code with the unified one. `text` is the
/// column type the database wants for short text (keys included).
fn xincheng_statements(text: &str) -> Vec<String> {
    let mut out = vec![
        format!(
            "CREATE TABLE xc_quhua (dm {text} PRIMARY KEY, mc {text} NOT NULL, jb {text} NOT NULL, sjdm {text}, hu_shu INTEGER, ren_kou INTEGER)"
        ),
        format!(
            "CREATE TABLE xc_wangge (wgbm {text} PRIMARY KEY, wg_name {text} NOT NULL, wgjb {text} NOT NULL, sq_dm {text} NOT NULL, hu_shu INTEGER)"
        ),
        format!(
            "CREATE TABLE xc_code_map (local_code {text} PRIMARY KEY, gb_code {text} NOT NULL UNIQUE)"
        ),
        "INSERT INTO xc_quhua VALUES ('XC', '新城区', '区', NULL, 52000, 140000)".into(),
        "INSERT INTO xc_code_map VALUES ('XC', '150102')".into(),
    ];
    for street in 1..=2 {
        let s = format!("XC-{street:02}");
        out.push(format!(
            "INSERT INTO xc_quhua VALUES ('{s}', '新城第{street}街道', '街道', 'XC', 9000, 24000)"
        ));
        out.push(format!(
            "INSERT INTO xc_code_map VALUES ('{s}', '150102{street:03}')"
        ));
        for community in 1..=2 {
            let c = format!("{s}-{community:03}");
            out.push(format!(
                "INSERT INTO xc_quhua VALUES ('{c}', '新城{street}-{community}社区', '社区', '{s}', 3000, 8000)"
            ));
            out.push(format!(
                "INSERT INTO xc_code_map VALUES ('{c}', '150102{street:03}{community:03}')"
            ));
            for grid in 1..=3 {
                let g = format!("{c}-{grid:02}");
                let tier = if grid == 3 { "小" } else { "大" };
                out.push(format!(
                    "INSERT INTO xc_quhua VALUES ('{g}', '新城{street}-{community}-{grid}网格', '网格', '{c}', 300, 800)"
                ));
                out.push(format!(
                    "INSERT INTO xc_wangge VALUES ('{g}', '新城{street}-{community}-{grid}网格', '{tier}', '{c}', 300)"
                ));
                out.push(format!(
                    "INSERT INTO xc_code_map VALUES ('{g}', '150102{street:03}{community:03}{grid:02}')"
                ));
            }
        }
    }
    out
}

async fn xincheng_database(file: &Path) {
    use sqlx::ConnectOptions;
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .connect()
        .await
        .expect("create the district database");
    for statement in xincheng_statements("TEXT") {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut db)
            .await
            .expect("fill the district database");
    }
}

/// What the integrator writes into the proposal: the district's code, its
/// code table, and which fields hold local codes (`code` stays local).
fn integrators_edit(proposed: &str) -> String {
    proposed
        .replace("coverage = [\"GAP\"]", "coverage = [\"150102\"]")
        .replace(
            "[plugin.settings.entities.divisions]",
            "[plugin.settings.local_codes]\ntable = \"xc_code_map\"\nlocal = \"local_code\"\nunified = \"gb_code\"\n\n[plugin.settings.entities.divisions]\nlocal_code_fields = [\"id\", \"division\", \"parent\"]",
        )
        .replace(
            "[plugin.settings.entities.grids]",
            "[plugin.settings.entities.grids]\nlocal_code_fields = [\"id\", \"division\", \"community\"]",
        )
}

/// `lianqiao source new` for the source `xincheng` in `database`, written
/// to `out` with paths for the configuration `main`.
fn source_new(database: &str, out: &Path, main: &str) -> (bool, String) {
    let plugin = lianqiao_e2e::plugin_dir().join("district_sql.wasm");
    lianqiao(&[
        "source",
        "new",
        "--sql",
        database,
        "--name",
        "xincheng",
        "--out",
        &out.display().to_string(),
        "--config",
        main,
        "--plugin",
        &plugin.display().to_string(),
    ])
}

fn lianqiao(args: &[&str]) -> (bool, String) {
    let out = Command::new(workspace_root().join("target/debug/lianqiao"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run lianqiao");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn a_new_district_is_connected_by_source_new_check_and_add() {
    let work = tempfile::tempdir().expect("tempdir");
    let db = work.path().join("xincheng.sqlite");
    xincheng_database(&db).await;
    // A running gateway serving another district.
    let config = ConfigDir::new().with_huimin();
    let main = config.main_file().display().to_string();
    let gateway = config.spawn_binary(&[]).await;

    // 1. source new: a proposal from the catalog, gaps marked.
    let proposal = work.path().join("xincheng.toml");
    let proposal_arg = proposal.display().to_string();
    let plugin = lianqiao_e2e::plugin_dir().join("district_sql.wasm");
    let (ok, text) = source_new(&format!("sqlite://{}", db.display()), &proposal, &main);
    assert!(ok, "{text}");
    let proposed = std::fs::read_to_string(&proposal).expect("the proposal");
    for expected in [
        // The district's code is guessed from its divisions table… but its
        // codes are local, so it cannot be: a gap.
        "coverage = [\"GAP\"]",
        "[plugin.settings.entities.divisions]",
        "FROM \"xc_quhua\" t",
        "[plugin.settings.entities.grids]",
        "FROM \"xc_wangge\" t",
        "t.\"hu_shu\" AS households",
        "holds local codes such as \"XC",
        "map.tier = { \"大\" = \"big\", \"小\" = \"small\" }",
        "map.level = { \"区\" = \"district\", \"社区\" = \"community\", \"网格\" = \"grid\", \"街道\" = \"street\" }",
    ] {
        assert!(
            proposed.contains(expected),
            "`{expected}` is not in the proposal:\n{proposed}"
        );
    }
    // It parses, and cannot be served as it is: check says why.
    let (ok, text) = lianqiao(&["source", "check", &proposal_arg, "--config", &main]);
    assert!(!ok, "the unedited proposal passed:\n{text}");
    assert!(text.contains("coverage"), "{text}");

    // 2. The integrator's edit: the district's code, and its code table.
    let edited = integrators_edit(&proposed);
    std::fs::write(&proposal, &edited).expect("edit the proposal");

    // 3. source check: the probe passes, every row sampled.
    let (ok, text) = lianqiao(&["source", "check", &proposal_arg, "--config", &main]);
    assert!(ok, "the edited file fails its check:\n{text}\n{edited}");
    assert!(
        text.contains("probe xincheng: sampled divisions 19, grids 12"),
        "{text}"
    );

    // The plugin keeps the contract on this district (the kit).
    let (ok, text) = lianqiao(&[
        "plugin",
        "test",
        &plugin.display().to_string(),
        "--source",
        &proposal_arg,
        "--config",
        &main,
    ]);
    assert!(ok, "the conformance kit fails on the new district:\n{text}");
    assert!(text.contains("grids: a narrower scope (150102"), "{text}");

    // 4. source add on the running gateway: installed, reloaded, served.
    let addr = format!("127.0.0.1:{}", gateway.port);
    let (ok, text) = lianqiao(&[
        "source",
        "add",
        &proposal_arg,
        "--config",
        &main,
        "--wait",
        &addr,
    ]);
    assert!(ok, "{text}\n{}", gateway.log());
    assert!(
        config.dir.path().join("sources/xincheng.toml").is_file(),
        "{text}"
    );
    let auth = default_auth();
    let headers = [("authorization", auth), ("x-purpose", "case-handling")];
    let (status, body) = lianqiao_e2e::http_get_with(
        &format!("http://{addr}/v1/grids?division=150102002&limit=50"),
        &headers,
    )
    .await
    .expect("grids");
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    let grids = body["data"].as_array().expect("rows");
    assert_eq!(grids.len(), 6, "{body}");
    // Unified codes where the API promises them; the local code kept.
    assert_eq!(grids[0]["division"], "15010200200101", "{body}");
    assert_eq!(grids[0]["community"], "150102002001", "{body}");
    assert_eq!(grids[0]["code"], "XC-02-001-01", "{body}");
    assert_eq!(grids[0]["tier"], "big", "{body}");
    assert_eq!(grids[0]["source"], "xincheng", "{body}");
    // A division by its unified code; its parent unified too.
    let (status, body) = lianqiao_e2e::http_get_with(
        &format!("http://{addr}/v1/divisions/150102001002"),
        &headers,
    )
    .await
    .expect("division");
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["data"]["parent"], "150102001", "{body}");
    assert_eq!(body["data"]["level"], "community", "{body}");
    // The other district still serves.
    let (status, _) = lianqiao_e2e::http_get_with(
        &format!("http://{addr}/v1/grids?division=150103001&limit=1"),
        &headers,
    )
    .await
    .expect("huimin");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_broken_file_is_not_added() {
    let config = ConfigDir::new().with_huimin();
    let main = config.main_file().display().to_string();
    let broken = config.dir.path().join("broken.toml");
    let huimin = std::fs::read_to_string(config.dir.path().join("sources/huimin.toml"))
        .expect("huimin's file");
    // Another name, a mapping with a misspelt column, outside the sources dir.
    std::fs::write(
        &broken,
        huimin
            .replace("name = \"huimin\"", "name = \"huimin2\"")
            .replace("coverage = [\"150103\"]", "coverage = [\"150104\"]")
            .replace("g.households AS households", "g.househlds AS households"),
    )
    .expect("write");
    let broken_arg = broken.display().to_string();
    let (ok, text) = lianqiao(&["source", "add", &broken_arg, "--config", &main]);
    assert!(!ok, "{text}");
    assert!(text.contains("grids: the mapping does not run"), "{text}");
    assert!(text.contains("not added (nothing was changed)"), "{text}");
    assert!(
        !config.dir.path().join("sources/huimin2.toml").exists(),
        "a refused file was installed"
    );
}

/// A new HTTP system through `plugin new`: generated, built from scratch
/// for wasm32-wasip2, configured (its address, its credential, which item
/// keys hold which fields), passed through the conformance kit and added
/// to a running gateway. The system here is the city platform simulator's
/// service-centre listing (OAuth2, cursor paging, camelCase items).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_http_system_is_connected_by_plugin_new_build_test_and_add() {
    let up = lianqiao_e2e::Upstreams::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let config = ConfigDir::new().with_huimin();
    let main = config.main_file().display().to_string();
    let gateway = config.spawn_binary(&[]).await;
    let secret = config.dir.path().join("street-app.secret");
    std::fs::write(&secret, "demo-secret").expect("secret");

    let (ok, text) = lianqiao(&[
        "plugin",
        "new",
        "street-app",
        "--kind",
        "http",
        "--dir",
        &work.path().display().to_string(),
        "--config",
        &main,
    ]);
    assert!(ok, "{text}");
    let crate_dir = work.path().join("street-app");
    let source = crate_dir.join("source.toml");
    let generated = std::fs::read_to_string(&source).expect("source.toml");
    std::fs::write(
        &source,
        generated
            .replace(
                "http://127.0.0.1:8092",
                &format!("http://{}", up.city_platform),
            )
            .replace(
                "\"../../target/demo/secrets/city-platform\"",
                &format!("{:?}", secret.display().to_string()),
            ),
    )
    .expect("configure the source");

    // Generated code is formatted as its users' `cargo fmt` would leave it.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let fmt = std::process::Command::new(&cargo)
        .args(["fmt", "--check"])
        .current_dir(&crate_dir)
        .output()
        .expect("cargo fmt");
    assert!(
        fmt.status.success(),
        "the scaffold is not rustfmt-clean:\n{}",
        String::from_utf8_lossy(&fmt.stdout)
    );
    // Built from scratch: the crate's own, empty target directory.
    let started = std::time::Instant::now();
    let built = std::process::Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&crate_dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("cargo build");
    assert!(
        built.status.success(),
        "the scaffold does not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let component = crate_dir.join("target/wasm32-wasip2/release/street_app.wasm");
    let source_arg = source.display().to_string();
    let (ok, text) = lianqiao(&[
        "plugin",
        "test",
        &component.display().to_string(),
        "--source",
        &source_arg,
        "--config",
        &main,
    ]);
    eprintln!(
        "scaffold built from scratch and tested in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(ok, "the scaffold fails the conformance kit:\n{text}");
    assert!(
        text.contains("ok    service-centers: a narrower scope"),
        "{text}"
    );

    let addr = format!("127.0.0.1:{}", gateway.port);
    let (ok, text) = lianqiao(&[
        "source",
        "add",
        &source_arg,
        "--config",
        &main,
        "--wait",
        &addr,
    ]);
    assert!(ok, "{text}\n{}", gateway.log());
    let auth = default_auth();
    let (status, body) = lianqiao_e2e::http_get_with(
        &format!("http://{addr}/v1/service-centers?division=150105&limit=5"),
        &[("authorization", auth), ("x-purpose", "case-handling")],
    )
    .await
    .expect("service centres");
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    let rows = body["data"].as_array().expect("rows");
    assert!(!rows.is_empty(), "{body}");
    assert!(
        rows.iter().all(|r| r["source"] == "street-app"
            && r["division"]
                .as_str()
                .is_some_and(|d| d.starts_with("150105"))),
        "{body}"
    );
}

/// The same district in PostgreSQL and in MariaDB: `source new` reads each
/// catalog (types, quoting and casts of its own), and the edited file
/// passes `source check` against the real server.
#[tokio::test]
async fn source_new_reads_postgres_and_mariadb_catalogs() {
    let servers = [
        ("LIANQIAO_TEST_POSTGRES_URL", "TEXT", "FROM \"xc_wangge\" t"),
        (
            "LIANQIAO_TEST_MYSQL_URL",
            "VARCHAR(64)",
            "FROM `xc_wangge` t",
        ),
    ];
    let mut ran = 0;
    for (var, text, from) in servers {
        let Some(url) =
            lianqiao_e2e::database_url(var, "source_new_reads_postgres_and_mariadb_catalogs")
        else {
            continue;
        };
        let url = lianqiao_e2e::fresh_database(&url, "lq_walkthrough").await;
        let db = sqlx::AnyPool::connect(&url).await.expect("connect");
        for statement in xincheng_statements(text) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&db)
                .await
                .expect("fill the district database");
        }
        db.close().await;
        let config = ConfigDir::new().with_huimin();
        let main = config.main_file().display().to_string();
        let proposal = config.dir.path().join("xincheng.toml");
        let proposal_arg = proposal.display().to_string();
        let (ok, out) = source_new(&url, &proposal, &main);
        assert!(ok, "{var}: {out}");
        let proposed = std::fs::read_to_string(&proposal).expect("the proposal");
        for expected in [
            from,
            "map.tier = { \"大\" = \"big\", \"小\" = \"small\" }",
            "holds local codes such as \"XC",
            "AS households",
        ] {
            assert!(
                proposed.contains(expected),
                "{var}: `{expected}` is not in the proposal:\n{proposed}"
            );
        }
        std::fs::write(&proposal, integrators_edit(&proposed)).expect("edit");
        let (ok, out) = lianqiao(&["source", "check", &proposal_arg, "--config", &main]);
        assert!(ok, "{var}: the edited file fails its check:\n{out}");
        assert!(
            out.contains("probe xincheng: sampled divisions 19, grids 12"),
            "{var}: {out}"
        );
        ran += 1;
    }
    eprintln!("source new read {ran} of 2 database servers");
}

/// The same connection through the admin listener: `PUT
/// /admin/sources/{name}` checks, installs and reloads — for a
/// `source-admin` only, every attempt audited, a broken file changing
/// nothing.
#[tokio::test]
async fn the_admin_listener_adds_a_source_for_a_source_admin_only() {
    let work = tempfile::tempdir().expect("tempdir");
    let db = work.path().join("xincheng.sqlite");
    xincheng_database(&db).await;
    let config = ConfigDir::new().with_huimin();
    let main = config.main_file().display().to_string();
    let gateway = config.spawn_binary(&[]).await;
    let proposal = work.path().join("xincheng.toml");
    let (ok, text) = source_new(&format!("sqlite://{}", db.display()), &proposal, &main);
    assert!(ok, "{text}");
    let good = integrators_edit(&std::fs::read_to_string(&proposal).expect("proposal"));
    let url = format!("http://127.0.0.1:{}/admin/sources/xincheng", gateway.admin);
    let admin = format!(
        "Bearer {}",
        lianqiao_e2e::token("region", "15", &["source-admin"])
    );
    let other = format!("Bearer {}", lianqiao_e2e::token("region", "15", &[]));
    let put = |auth: Option<String>, body: String| {
        let url = url.clone();
        async move {
            let mut headers = vec![("content-type", "application/toml")];
            if let Some(auth) = &auth {
                headers.push(("authorization", auth.as_str()));
            }
            lianqiao_e2e::http_send("PUT", &url, &headers, &body)
                .await
                .expect("PUT")
        }
    };
    let (status, body) = put(None, good.clone()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = put(Some(other), good.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("role_required"), "{body}");
    let broken = good.replace("t.\"hu_shu\" AS households", "t.\"hushu\" AS households");
    assert_ne!(broken, good);
    let (status, body) = put(Some(admin.clone()), broken).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invalid_source"), "{body}");
    assert!(body.contains("the mapping does not run"), "{body}");
    let installed = config.dir.path().join("sources/xincheng.toml");
    assert!(!installed.exists(), "a refused file was installed");
    let (status, body) = put(Some(admin.clone()), good.clone()).await;
    assert_eq!(status, 200, "{body}\n{}", gateway.log());
    assert!(installed.is_file(), "{body}");
    // Served at once: the admin call reloaded before answering.
    let (status, body) = lianqiao_e2e::http_get_with(
        &format!(
            "http://127.0.0.1:{}/v1/grids?division=150102&limit=1",
            gateway.port
        ),
        &[
            ("authorization", default_auth()),
            ("x-purpose", "case-handling"),
        ],
    )
    .await
    .expect("grids");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"source\":\"xincheng\""), "{body}");
    // Every attempt is in the audit trail: 401, 403, 422, the change.
    let (ok, text) = lianqiao(&["audit", "query", "--config", &main, "--limit", "1000"]);
    assert!(ok, "{text}");
    let attempts = text.matches("/admin/sources/{name}").count();
    assert!(attempts >= 4, "{attempts} admin records:\n{text}");
    assert!(text.contains("\"decision\":\"allow\""), "{text}");
}
