//! The audit trail: one hash-chained record per request, tampering named,
//! failing closed, and nothing lost when the gateway is killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lianqiao_e2e::{ConfigDir, default_auth, token};
use lianqiao_gateway::audit::{AuditStore, verify};

#[tokio::test]
async fn every_request_is_recorded_and_tampering_is_named() {
    let dir = ConfigDir::new().with_huimin();
    let url = dir.audit_url();
    let gw = dir.start().await;
    let street = token("street", "150103001", &[]);
    let mut ids = Vec::new();
    for path in [
        "/v1/grids?division=150103001&limit=3",
        "/v1/grids?division=150105&limit=3",
        "/v1/stats?metric=grids.count&division=150103001",
    ] {
        let auth = format!("Bearer {street}");
        let (_, headers, _) = gw
            .get_full(
                path,
                &[("authorization", &auth), ("x-purpose", "case-handling")],
            )
            .await;
        ids.push(headers["x-request-id"].to_str().unwrap().to_string());
    }
    let (_, headers, _) = gw
        .get_full("/v1/grids?division=150103", &[("authorization", "")])
        .await;
    ids.push(headers["x-request-id"].to_str().unwrap().to_string());

    let store = AuditStore::open(&url).await.unwrap();
    let records = store
        .query(&lianqiao_gateway::audit::Query {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), 4);
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r.request_id == id)
            .unwrap_or_else(|| panic!("no record of {id}"))
            .record()
            .unwrap()
    };
    let first = by_id(&ids[0]);
    assert_eq!(first.principal, "test-street-150103001");
    assert_eq!(first.purpose, "case-handling");
    assert_eq!(first.decision, "allow");
    assert_eq!((first.status, first.rows), (200, 3));
    assert_eq!(first.scope, "150103001");
    assert_eq!(first.sources, vec!["huimin".to_string()]);
    assert!(first.fields["public"].contains(&"name".to_string()));
    assert!(
        first
            .policies
            .contains(&"registry-within-jurisdiction".to_string())
    );
    assert_eq!(by_id(&ids[1]).decision, "deny");
    assert_eq!(by_id(&ids[1]).status, 403);
    assert_eq!(by_id(&ids[2]).route, "/v1/stats");
    assert_eq!(by_id(&ids[3]).decision, "unauthenticated");
    assert_eq!(verify(&store, "test").await.unwrap(), Ok(4));

    // Edit one record: verify names it.
    store
        .execute("UPDATE lianqiao_audit SET body = replace(body, '\"rows\":3', '\"rows\":0') WHERE seq = 1")
        .await
        .unwrap();
    let broken = verify(&store, "test").await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 1, "{broken}");
    assert!(broken.reason.contains("edited"), "{broken}");

    // Edit only a queryable column: named too.
    let dir2 = ConfigDir::new().with_huimin();
    let url2 = dir2.audit_url();
    let gw2 = dir2.start().await;
    for _ in 0..3 {
        gw2.get("/v1/grids?division=150103&limit=1").await;
    }
    let store2 = AuditStore::open(&url2).await.unwrap();
    store2
        .execute("UPDATE lianqiao_audit SET principal = 'someone-else' WHERE seq = 2")
        .await
        .unwrap();
    let broken = verify(&store2, "test").await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 2, "{broken}");

    // Delete one: the gap is named; delete the last: the head names it.
    let dir3 = ConfigDir::new().with_huimin();
    let url3 = dir3.audit_url();
    let gw3 = dir3.start().await;
    for _ in 0..4 {
        gw3.get("/v1/grids?division=150103&limit=1").await;
    }
    let store3 = AuditStore::open(&url3).await.unwrap();
    store3
        .execute("DELETE FROM lianqiao_audit WHERE seq = 4")
        .await
        .unwrap();
    let broken = verify(&store3, "test").await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");
    assert!(broken.reason.contains("truncated"), "{broken}");
    store3
        .execute("DELETE FROM lianqiao_audit WHERE seq = 2")
        .await
        .unwrap();
    let broken = verify(&store3, "test").await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 2, "{broken}");
    assert!(broken.reason.contains("missing"), "{broken}");

    // A record slipped in past the head (not through the chain's writer):
    // named, though the chain up to the head verifies.
    let dir4 = ConfigDir::new().with_huimin();
    let url4 = dir4.audit_url();
    let gw4 = dir4.start().await;
    for _ in 0..3 {
        gw4.get("/v1/grids?division=150103&limit=1").await;
    }
    let store4 = AuditStore::open(&url4).await.unwrap();
    assert_eq!(verify(&store4, "test").await.unwrap(), Ok(3));
    store4
        .execute("INSERT INTO lianqiao_audit SELECT chain, seq + 500, at, request_id, principal, division, status, decision, body, prev_hash, hash FROM lianqiao_audit WHERE seq = 3")
        .await
        .unwrap();
    let broken = verify(&store4, "test").await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");
    assert!(broken.reason.contains("past the chain's head"), "{broken}");
    drop((gw, gw2, gw3, gw4));
}

#[tokio::test]
async fn with_the_audit_store_down_records_are_refused_and_statistics_may_fail_open() {
    // Nothing listens on port 1: the store is down from the start.
    let down = "url = \"postgres://postgres@127.0.0.1:1/test\"";
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main("url = \"sqlite://audit.db\"", down)
        .start()
        .await;
    let (status, body) = gw.get("/v1/grids?division=150103&limit=2").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "audit_unavailable");
    assert!(body.get("data").is_none());
    let (status, body) = gw.get("/v1/stats?metric=grids.count&division=150103").await;
    assert_eq!(status, 503, "statistics fail closed by default: {body}");
    // Errors carry no data: they still answer.
    assert_eq!(gw.get("/v1/grids?division=150103&colour=red").await.0, 400);

    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main(
            "url = \"sqlite://audit.db\"",
            &format!("{down}\nstatistics_fail_open = true"),
        )
        .start()
        .await;
    let (status, body) = gw.get("/v1/stats?metric=grids.count&division=150103").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.get("/v1/grids?division=150103&limit=2").await.0, 503);
    let (_, metrics) = gw.admin_text("/metrics").await;
    assert!(
        !metrics.contains("lianqiao_audit_failures_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn killing_the_gateway_under_load_loses_no_record_of_a_delivered_response() {
    let dir = ConfigDir::new().with_huimin();
    let url = dir.audit_url();
    let mut gateway = dir.spawn_binary(&[("RUST_LOG", "warn")]).await;
    let client = reqwest_like::Client::new(gateway.port);

    // 8 clients loop until the kill; each keeps the request ids of the
    // responses it received whole.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let path = if (i + n) % 3 == 0 {
                        "/v1/stats?metric=grids.count&division=150103".to_string()
                    } else {
                        format!("/v1/grids?division=150103&limit={}", 1 + (i + n) % 20)
                    };
                    match client.get(&path, Some(default_auth())).await {
                        Ok((200, Some(id))) => received.push(id),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                received
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gateway.child.kill().expect("SIGKILL");
    let _ = gateway.child.wait();
    stop.store(true, Ordering::Relaxed);
    let mut received = Vec::new();
    for c in clients {
        received.extend(c.await.unwrap());
    }
    assert!(
        received.len() > 50,
        "only {} responses under load",
        received.len()
    );

    let store = AuditStore::open(&url).await.unwrap();
    let mut recorded = std::collections::HashSet::new();
    store
        .walk("test", |r| {
            recorded.insert(r.request_id);
            true
        })
        .await
        .unwrap();
    let lost: Vec<&String> = received
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} delivered responses have no audit record: {lost:?}",
        lost.len(),
        received.len()
    );
    assert!(
        verify(&store, "test").await.unwrap().is_ok(),
        "the chain survives the kill"
    );
    println!(
        "SIGKILL under load: {} responses delivered, all {} recorded ({} records in all)",
        received.len(),
        received.len(),
        recorded.len()
    );
}

/// A tiny HTTP/1.1 client over one connection per request (the gateway
/// is a child process here, so the shared test client does not apply).
mod reqwest_like {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Clone)]
    pub struct Client {
        port: u16,
    }

    impl Client {
        pub fn new(port: u16) -> Client {
            Client { port }
        }

        /// Status and `X-Request-Id`, once the whole body has arrived.
        pub async fn get(
            &self,
            path: &str,
            auth: Option<&str>,
        ) -> std::io::Result<(u16, Option<String>)> {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            let auth = auth.map_or(String::new(), |a| {
                format!("Authorization: {a}\r\nX-Purpose: case-handling\r\n")
            });
            stream
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            let text = String::from_utf8_lossy(&raw);
            let (head, body) = text
                .split_once("\r\n\r\n")
                .ok_or_else(|| std::io::Error::other("incomplete response"))?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("no status"))?;
            let length: Option<usize> = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())
                    .flatten()
            });
            if length.is_some_and(|n| body.len() < n) {
                return Err(std::io::Error::other("truncated body"));
            }
            let id = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-request-id")
                    .then(|| v.trim().to_string())
            });
            Ok((status, id))
        }
    }
}

#[tokio::test]
async fn the_audit_trail_can_live_in_postgresql() {
    let Some(url) = lianqiao_e2e::database_url(
        "LIANQIAO_TEST_POSTGRES_URL",
        "audit::the_audit_trail_can_live_in_postgresql",
    ) else {
        return;
    };
    // The test database outlives runs: a chain of this run's own.
    let chain = format!(
        "test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main(
            "url = \"sqlite://audit.db\"\nchain = \"test\"",
            &format!("url = \"{url}\"\nchain = \"{chain}\""),
        )
        .start()
        .await;
    for _ in 0..5 {
        assert_eq!(gw.get("/v1/grids?division=150103&limit=2").await.0, 200);
    }
    let store = AuditStore::open(&url).await.unwrap();
    assert_eq!(verify(&store, &chain).await.unwrap(), Ok(5));
    store
        .execute(&format!(
            "UPDATE lianqiao_audit SET body = replace(body, '\"rows\":2', '\"rows\":1') WHERE chain = '{chain}' AND seq = 3"
        ))
        .await
        .unwrap();
    let broken = verify(&store, &chain).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3, "{broken}");
}
