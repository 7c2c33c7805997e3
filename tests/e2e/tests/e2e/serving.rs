//! Huimin district served end to end: SQLite → district-sql plugin → API.

use std::collections::HashSet;

use lianqiao_e2e::{ConfigDir, huimin};
use serde_json::Value;
use sqlx::Row;

async fn direct_sqlite(sql: &str) -> Vec<sqlx::sqlite::SqliteRow> {
    let url = format!("sqlite://{}?mode=ro", huimin().1.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open huimin.sqlite");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&pool)
        .await
        .expect("direct query")
}

#[tokio::test]
async fn grids_of_a_street_are_real_rows_from_sqlite() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, body) = gw.get("/v1/grids?division=150103001&limit=5").await;
    assert_eq!(status, 200, "{body}");
    let rows = body["data"].as_array().expect("data");
    assert_eq!(rows.len(), 5);

    let expected = direct_sqlite(
        "SELECT g.code, d.name, g.tier, g.households FROM grid g JOIN division d ON d.code = g.code \
         WHERE g.code LIKE '150103001%' ORDER BY g.code LIMIT 5",
    )
    .await;
    for (row, db) in rows.iter().zip(&expected) {
        assert_eq!(row["id"], db.get::<String, _>(0));
        assert_eq!(row["name"], db.get::<String, _>(1));
        assert_eq!(row["tier"], db.get::<String, _>(2));
        assert_eq!(row["households"], db.get::<i64, _>(3));
        assert_eq!(row["source"], "huimin");
    }
    assert_eq!(body["sources"][0]["name"], "huimin");
    assert_eq!(body["sources"][0]["status"], "ok");
    assert_eq!(body["partial"], false);
    assert!(body["page"]["next_cursor"].is_string());
}

#[tokio::test]
async fn walking_every_page_returns_all_537_grids_once() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut path = "/v1/grids?division=150103&limit=100".to_string();
    for _page in 0..20 {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        for row in body["data"].as_array().expect("data") {
            let id = row["id"].as_str().expect("id").to_string();
            assert!(seen.insert(id.clone()), "{id} returned twice");
            order.push((row["division"].as_str().unwrap_or_default().to_string(), id));
        }
        match &body["page"]["next_cursor"] {
            Value::String(c) => path = format!("/v1/grids?division=150103&limit=100&cursor={c}"),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 537);
    assert_eq!(seen.len(), huimin().0.grids.len());
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "pages must come in (division, id) order");
}

#[tokio::test]
async fn divisions_children_and_one_division() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, body) = gw.get("/v1/divisions?parent=150103").await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.contains(&"新华西路街道") && names.contains(&"攸攸板镇"));

    let (status, body) = gw.get("/v1/divisions/150103001").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["name"], "新华西路街道");
    assert_eq!(body["data"]["level"], "street");
    assert_eq!(body["data"]["parent"], "150103");

    let (status, body) = gw.get("/v1/divisions/150103999").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn filters_and_projection_agree_with_the_database() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, body) = gw
        .get("/v1/grids?division=150103&tier=small&households[gte]=60&fields=name,households&limit=1000")
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["data"].as_array().unwrap();
    let expected =
        direct_sqlite("SELECT count(*) FROM grid WHERE tier = 'small' AND households >= 60").await
            [0]
        .get::<i64, _>(0);
    assert_eq!(rows.len() as i64, expected);
    assert!(expected > 0);
    for row in rows {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["id", "name", "households", "source"]);
        assert!(row["households"].as_i64().unwrap() >= 60);
    }
}

#[tokio::test]
async fn a_tampered_or_foreign_cursor_is_refused() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (_, body) = gw.get("/v1/grids?division=150103&limit=10").await;
    let cursor = body["page"]["next_cursor"].as_str().unwrap().to_string();

    // Flip one character of the payload.
    let mut bytes = cursor.clone().into_bytes();
    bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let (status, body) = gw
        .get(&format!(
            "/v1/grids?division=150103&limit=10&cursor={tampered}"
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_cursor");

    // The same cursor under other filters.
    let (status, body) = gw
        .get(&format!(
            "/v1/grids?division=150103001&limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_cursor");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("different query")
    );

    // Untouched, it works.
    let (status, _) = gw
        .get(&format!(
            "/v1/grids?division=150103&limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_division_no_source_covers_is_not_found_with_the_coverage() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, body) = gw.get("/v1/grids?division=150105").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("150103 (huimin)"),
        "{body}"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, body) = gw.get("/healthz").await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
    let (status, body) = gw.get("/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["sources"][0]["name"], "huimin");
    assert_eq!(body["sources"][0]["plugin"]["name"], "district-sql");
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused_before_they_are_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = lianqiao_e2e::ConfigDir::new().with_huimin().start().await;
    let raw = |request: Vec<u8>| async move {
        let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let _ = tcp.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tcp.read_to_end(&mut answer),
        )
        .await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let body = vec![b'x'; 1 << 20];
    let mut request =
        format!("POST /v1/grids?division=150103 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    request.extend(&body);
    let answer = raw(request).await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(
        answer.contains("payload_too_large"),
        "{}",
        &answer[..answer.len().min(400)]
    );
    let huge = "a".repeat(512 * 1024);
    let answer = raw(format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes())
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
}
