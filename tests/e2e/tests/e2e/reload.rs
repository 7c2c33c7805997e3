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

/// One gateway snapshot per request: a reload between a request's
/// arrival and its decision (here while its body is still on the way)
/// changes nothing for that request, and its audit record names the
/// policy version that decided it. Before, the guard read the live
/// gateway for the audit record and the handler read it again: the old
/// version was audited for a write the new policy decided.
#[tokio::test]
async fn a_reload_mid_request_changes_nothing_for_it_and_its_audit_names_the_deciding_policy() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = crate::cases::fresh_huimin_copy("snapshot");
    let dir = ConfigDir::new().with_demo_source("huimin", &lianqiao_e2e::sqlite_url(&db));
    let audit_url = dir.audit_url();
    let policy = dir.dir.path().join("policy/no-case-writes.cedar");
    let gw = dir.start().await;
    let version = || {
        gw.live
            .current()
            .config
            .enforcer
            .engine
            .version()
            .to_string()
    };
    let before = version();
    let grid = lianqiao_e2e::huimin_grid();
    let body = serde_json::json!({
        "division": grid, "title": "楼道堆物清理", "category": "环境卫生",
        "reporter_name": "王秀英", "reporter_phone": "13947001234",
    })
    .to_string();
    let token = lianqiao_e2e::token("grid", &grid, &[]);
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/cases HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\nx-purpose: case-handling\r\ncontent-type: application/json\r\nidempotency-key: snapshot-1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The request is in, authenticated; its body is not. Meanwhile a
    // policy that forbids every case write is swapped in.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::fs::write(
        &policy,
        "@id(\"no-case-writes\")\nforbid (principal, action == Lianqiao::Action::\"write_case\", resource);\n",
    )
    .unwrap();
    gw.live.reload().await.expect("a valid policy reloads");
    let after = version();
    assert_ne!(after, before);
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "the policy in force when the request came in decides it: {response}"
    );
    let id = response
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("a request id")
        .trim()
        .to_string();
    let records = lianqiao_e2e::audit_records(&audit_url).await;
    let record = records
        .iter()
        .find(|r| r.request_id == id)
        .expect("the write's audit record")
        .record()
        .unwrap();
    assert_eq!(record.status, 201);
    assert_eq!(record.policy_version, before, "the version that decided");

    // The next write is the new policy's.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = head.replace("snapshot-1", "snapshot-2");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
}
