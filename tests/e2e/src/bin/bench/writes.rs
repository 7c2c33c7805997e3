//! Case writes, whole: `POST /v1/cases` and `POST /v1/cases/{id}/transitions`
//! through authentication, the policy, the idempotency store, the plugin's
//! declared statements in one SQLite transaction, the read-back through the
//! disclosure gate and the audit record — against the same two INSERTs run
//! directly on SQLite in the same run. Then durable writes per second with
//! several clients at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lianqiao_e2e::{ConfigDir, huimin, sqlite_url, workspace_root};

use super::{Measured, measure, table};

type Http = Client<HttpConnector, Full<Bytes>>;

async fn post(client: &Http, url: &str, auth: &str, key: &str, body: String) -> (u16, Bytes) {
    let request = hyper::Request::post(url)
        .header("authorization", auth)
        .header("x-purpose", "case-handling")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body)))
        .expect("a request");
    let response = client.request(request).await.expect("the gateway answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, body)
}

pub async fn writes(n: usize) -> anyhow::Result<String> {
    let dir = workspace_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("huimin-writes-{}.sqlite", std::process::id()));
    std::fs::copy(&huimin().1, &db)?;
    let gw = ConfigDir::new()
        .with_demo_source("huimin", &sqlite_url(&db))
        .start()
        .await;
    let grid = huimin()
        .0
        .grids
        .iter()
        .find(|g| g.code.len() == 14)
        .map(|g| g.code.clone())
        .ok_or_else(|| anyhow::anyhow!("no grid"))?;
    let auth = format!("Bearer {}", lianqiao_e2e::token("grid", &grid, &[]));
    let client: Http = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://{}", gw.addr);
    let body = format!(r#"{{"division":"{grid}","title":"楼道堆物","category":"环境卫生"}}"#);

    let mut counter = 0u64;
    let mut ids = Vec::new();
    let create = measure("POST /v1/cases (new key)", n, || {
        counter += 1;
        let (client, url, auth, body) = (&client, format!("{base}/v1/cases"), &auth, body.clone());
        let key = format!("bench-c-{counter}");
        async move {
            let (status, answer) = post(client, &url, auth, &key, body).await;
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
            let json: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
            let id = json["data"]["id"].as_str().unwrap_or_default().to_string();
            std::hint::black_box(id);
        }
    })
    .await;
    // The cases just created, to move (every one is `discovered`).
    for i in 0..(n + super::WARMUP) {
        let (status, answer) = post(
            &client,
            &format!("{base}/v1/cases"),
            &auth,
            &format!("bench-m-{i}"),
            body.clone(),
        )
        .await;
        anyhow::ensure!(status == 201, "{}", String::from_utf8_lossy(&answer));
        let json: serde_json::Value = serde_json::from_slice(&answer)?;
        ids.push(json["data"]["id"].as_str().unwrap_or_default().to_string());
    }
    let mut next = ids.iter();
    let transition = measure(
        "POST /v1/cases/{id}/transitions (discovered → assessed)",
        n,
        || {
            let id = next.next().cloned().unwrap_or_default();
            let (client, auth) = (&client, &auth);
            let url = format!("{base}/v1/cases/{id}/transitions");
            async move {
                let (status, answer) = post(
                    client,
                    &url,
                    auth,
                    &format!("bench-t-{id}"),
                    r#"{"to":"assessed"}"#.into(),
                )
                .await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            }
        },
    )
    .await;
    let replay = measure("POST /v1/cases (a retry: the stored result)", n, || {
        let (client, url, auth, body) = (&client, format!("{base}/v1/cases"), &auth, body.clone());
        async move {
            let (status, _) = post(client, &url, auth, "bench-c-1", body).await;
            assert_eq!(status, 201);
        }
    })
    .await;

    // Baseline: the two statements a create runs, in one transaction,
    // straight on the same SQLite file.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&sqlite_url(&db))
        .await?;
    let mut k = 0u64;
    let direct = measure("baseline: the same 2 INSERTs, one transaction, sqlx", n, || {
        k += 1;
        let (pool, grid) = (pool.clone(), grid.clone());
        async move {
            let id = format!("bench-direct-{k}");
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("INSERT INTO problem_case (case_no, title, category, loop_level, status, grid_code, reporter, reporter_tel, opened, updated, due, city_case_no) VALUES (?, '楼道堆物', '环境卫生', '网格', '发现', ?, NULL, NULL, '2026-12-03T10:00:00+08:00', '2026-12-03T10:00:00+08:00', NULL, NULL)")
                .bind(&id).bind(&grid).execute(&mut *tx).await.expect("insert case");
            sqlx::query("INSERT INTO problem_case_step (step_no, case_no, status, loop_level, at, by_level, note) VALUES (?, ?, '发现', '网格', '2026-12-03T10:00:00+08:00', 'grid', NULL)")
                .bind(format!("{id}.1")).bind(&id).execute(&mut *tx).await.expect("insert step");
            tx.commit().await.expect("commit");
        }
    })
    .await;
    pool.close().await;

    // Durable writes per second: 8 clients creating cases for 3 s.
    let clients = 8;
    let window = Duration::from_secs(3);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, auth, body) = (
            client.clone(),
            format!("{base}/v1/cases"),
            auth.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while began.elapsed() < window {
                let (status, _) = post(
                    &client,
                    &url,
                    &auth,
                    &format!("bench-p-{c}-{done}"),
                    body.clone(),
                )
                .await;
                assert_eq!(status, 201);
                done += 1;
            }
            done
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t.await?;
    }
    let rate = total as f64 / began.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&db);

    let base = direct.percentile(0.5);
    let rows: [&Measured; 4] = [&create, &transition, &replay, &direct];
    Ok(format!(
        "\n### Case writes (Huimin on SQLite; audit and idempotency keys in the gateway's SQLite store)\n\n{}\nDurable creates with {clients} clients for {}s: {total} in all, **{rate:.0} writes/s** (each: idempotency key claimed and finished, 2 statements committed at the district, read back, audited).\n",
        table(&rows, "baseline", base),
        window.as_secs()
    ))
}
