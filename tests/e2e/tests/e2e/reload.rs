//! Hot reload: a new configuration is built aside and swapped in; a broken
//! one is refused and the running one keeps serving; requests in flight
//! during reloads all complete.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lianqiao_e2e::{ConfigDir, saihan_jining_sqlite};

#[tokio::test]
async fn reloads_under_load_drop_no_request_and_a_broken_one_changes_nothing() {
    let dir = ConfigDir::new().with_huimin();
    let sources = dir.dir.path().join("sources");
    let gw = Arc::new(dir.start().await);
    assert_eq!(
        gw.get("/v1/grids?division=150105&limit=1").await.0,
        404,
        "no Saihan yet"
    );

    // Bounded load: 4 clients × 60 requests while the configuration changes.
    let ok = Arc::new(AtomicUsize::new(0));
    let other = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (gw, ok, other) = (gw.clone(), ok.clone(), other.clone());
            tokio::spawn(async move {
                for _ in 0..60 {
                    match gw
                        .get("/v1/grids?division=150103001&limit=5")
                        .await
                        .0
                        .as_u16()
                    {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    // Add Saihan: built aside, swapped in.
    let (saihan_db, _) = saihan_jining_sqlite();
    let saihan =
        std::fs::read_to_string(lianqiao_e2e::workspace_root().join("config/sources/saihan.toml"))
            .unwrap()
            .replace(
                "../../target/plugins/district_sql.wasm",
                &lianqiao_e2e::plugin_dir()
                    .join("district_sql.wasm")
                    .display()
                    .to_string(),
            )
            .replace(
                "sqlite://../../target/demo/saihan.sqlite",
                &format!("sqlite://{}", saihan_db.display()),
            );
    std::fs::write(sources.join("saihan.toml"), saihan).unwrap();
    gw.live.reload().await.expect("a valid change reloads");
    assert_eq!(
        gw.get("/v1/grids?division=150105&limit=1").await.0,
        200,
        "Saihan now served"
    );

    // A broken change is refused, named, and changes nothing.
    std::fs::write(
        sources.join("broken.toml"),
        "name = \"broken\"\ncoverage = []\n[plugin]\npath = \"nowhere.wasm\"\n",
    )
    .unwrap();
    let errors = gw
        .live
        .reload()
        .await
        .expect_err("a broken change is refused");
    assert!(errors.to_string().contains("broken.toml"), "{errors}");
    assert_eq!(
        gw.get("/v1/grids?division=150105&limit=1").await.0,
        200,
        "the old configuration serves"
    );

    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        other.load(Ordering::Relaxed),
        0,
        "no request failed during reloads"
    );
    assert_eq!(ok.load(Ordering::Relaxed), 240);
}

#[tokio::test]
async fn a_cursor_outlives_a_reload() {
    // No key in the environment: the gateway makes random ones, once per
    // process (the cursor key, and by the same function the statistics
    // noise key), so a reload neither breaks a caller's paging nor hands
    // out fresh noise to average away.
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, first) = gw.get("/v1/grids?division=150103&limit=3").await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["page"]["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    gw.live.reload().await.expect("reload");
    let (status, second) = gw
        .get(&format!(
            "/v1/grids?division=150103&limit=3&cursor={cursor}"
        ))
        .await;
    assert_eq!(status, 200, "the cursor broke across a reload: {second}");
    assert_ne!(first["data"][0]["id"], second["data"][0]["id"], "{second}");
}
