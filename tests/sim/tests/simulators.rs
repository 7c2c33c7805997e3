//! The simulators over real HTTP: auth, paging, errors and faults.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lianqiao_sim::generate::DEFAULT_SEED;
use lianqiao_sim::upstream::{self, city_platform, faults::Faults, party_link, world::World};
use serde_json::Value;

fn world() -> Arc<World> {
    static WORLD: OnceLock<Arc<World>> = OnceLock::new();
    WORLD
        .get_or_init(|| Arc::new(World::generate(DEFAULT_SEED)))
        .clone()
}

async fn send(req: Request<Full<Bytes>>) -> (u16, HashMap<String, String>, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(req).await.expect("request");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, body)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn party_link_sim(faults: Faults) -> SocketAddr {
    let apps = HashMap::from([("demo".to_string(), "demo-secret".to_string())]);
    let (addr, _) = upstream::serve(
        party_link::router(world(), apps, faults),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    addr
}

/// A signed party-link request, with the timestamp and nonce given.
fn signed(
    addr: SocketAddr,
    path: &str,
    body: &str,
    ts: i64,
    nonce: &str,
    secret: &str,
) -> Request<Full<Bytes>> {
    let canonical =
        party_link::canonical("POST", path, "", body.as_bytes(), &ts.to_string(), nonce);
    Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .header("appKey", "demo")
        .header("timestamp", ts.to_string())
        .header("nonce", nonce)
        .header("sign", party_link::sign(secret, &canonical))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn party_link_reports_huimins_9657_members_in_pages_of_at_most_200() {
    let addr = party_link_sim(Faults::new(1)).await;
    let body = r#"{"xzqhdm":"150103","pageNo":1,"pageSize":200}"#;
    let (status, _, raw) = send(signed(
        addr,
        "/api/v1/dy/list",
        body,
        now_ms(),
        "n-1",
        "demo-secret",
    ))
    .await;
    assert_eq!(status, 200);
    let v = json(&raw);
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["total"], 9657);
    let list = v["data"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 200);
    let m = &list[0];
    for key in [
        "dyid", "xm", "xb", "mz", "csrq", "sfzh", "lxdh", "rdrq", "szdzzdm", "jzdz",
    ] {
        assert!(m.get(key).is_some(), "member lacks `{key}`: {m}");
    }
    assert!(lianqiao_sim::generate::idcard::is_valid(
        m["sfzh"].as_str().unwrap()
    ));

    let body = r#"{"xzqhdm":"150103","pageNo":1,"pageSize":500}"#;
    let (_, _, raw) = send(signed(
        addr,
        "/api/v1/dy/list",
        body,
        now_ms(),
        "n-2",
        "demo-secret",
    ))
    .await;
    assert_eq!(json(&raw)["code"], party_link::codes::BAD_PARAMS);

    let body = r#"{"xzqhdm":"150103","pageSize":200}"#;
    let (_, _, raw) = send(signed(
        addr,
        "/api/v1/dzz/list",
        body,
        now_ms(),
        "n-3",
        "demo-secret",
    ))
    .await;
    assert_eq!(json(&raw)["data"]["total"], 400);
}

#[tokio::test]
async fn party_link_refuses_bad_signature_stale_timestamp_and_replayed_nonce() {
    let addr = party_link_sim(Faults::new(1)).await;
    let body = r#"{"xzqhdm":"150103"}"#;
    let code = |raw: &Bytes| json(raw)["code"].as_i64().unwrap();

    let (status, _, raw) = send(signed(
        addr,
        "/api/v1/dy/list",
        body,
        now_ms(),
        "a",
        "wrong-secret",
    ))
    .await;
    assert_eq!(
        (status, code(&raw)),
        (200, party_link::codes::BAD_SIGNATURE)
    );

    let stale = now_ms() - 6 * 60 * 1000;
    let (_, _, raw) = send(signed(
        addr,
        "/api/v1/dy/list",
        body,
        stale,
        "b",
        "demo-secret",
    ))
    .await;
    assert_eq!(code(&raw), party_link::codes::STALE_TIMESTAMP);

    let ts = now_ms();
    let (_, _, raw) = send(signed(
        addr,
        "/api/v1/dy/list",
        body,
        ts,
        "c",
        "demo-secret",
    ))
    .await;
    assert_eq!(code(&raw), 0);
    let (_, _, raw) = send(signed(
        addr,
        "/api/v1/dy/list",
        body,
        ts,
        "c",
        "demo-secret",
    ))
    .await;
    assert_eq!(code(&raw), party_link::codes::REPLAYED_NONCE);

    let unsigned = Request::post(format!("http://{addr}/api/v1/dy/list"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (_, _, raw) = send(unsigned).await;
    assert_eq!(code(&raw), party_link::codes::MISSING_AUTH);

    // A body altered after signing breaks the signature.
    let mut req = signed(addr, "/api/v1/dy/list", body, now_ms(), "d", "demo-secret");
    *req.body_mut() = Full::new(Bytes::from(r#"{"xzqhdm":"15"}"#));
    let (_, _, raw) = send(req).await;
    assert_eq!(code(&raw), party_link::codes::BAD_SIGNATURE);
}

async fn city_sim(ttl: Duration, rate_limit: u32, faults: Faults) -> SocketAddr {
    let settings = city_platform::Settings {
        clients: HashMap::from([("demo".to_string(), "demo-secret".to_string())]),
        token_ttl: ttl,
        rate_limit,
    };
    let (addr, _) = upstream::serve(
        city_platform::router(world(), settings, faults),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    addr
}

async fn token(addr: SocketAddr) -> String {
    let req = Request::post(format!("http://{addr}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(
            "grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
        )))
        .unwrap();
    let (status, _, raw) = send(req).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    json(&raw)["access_token"].as_str().unwrap().to_string()
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn city_platform_lists_huimins_eight_streets_and_pages_by_cursor() {
    let addr = city_sim(Duration::from_secs(300), 1000, Faults::new(1)).await;
    let t = token(addr).await;
    let (status, _, raw) = send(get(addr, "/divisions?parentCode=150103", Some(&t))).await;
    assert_eq!(status, 200);
    let v = json(&raw);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(names.contains(&"新华西路街道"));

    let (_, _, raw) = send(get(addr, "/divisions?parentCode=150100", Some(&t))).await;
    let codes: Vec<String> = json(&raw)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes, ["150102", "150103", "150104", "150105"]);

    // Walk service centres of Huimin with a small page: 88 in all.
    let mut path = "/service-centers?divisionCode=150103&limit=30".to_string();
    let mut seen = 0;
    loop {
        let (status, _, raw) = send(get(addr, &path, Some(&t))).await;
        assert_eq!(status, 200);
        let v = json(&raw);
        seen += v["items"].as_array().unwrap().len();
        match v["nextCursor"].as_str() {
            Some(c) => path = format!("/service-centers?divisionCode=150103&limit=30&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, 88);

    let (status, headers, raw) = send(get(
        addr,
        "/cases?divisionCode=150103&cursor=forged",
        Some(&t),
    ))
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/problem+json")
    );
    assert_eq!(json(&raw)["status"], 400);
}

#[tokio::test]
async fn city_platform_refuses_missing_and_expired_tokens_with_401() {
    let addr = city_sim(Duration::from_millis(300), 1000, Faults::new(1)).await;
    let (status, _, raw) = send(get(addr, "/divisions?parentCode=150103", None)).await;
    assert_eq!(status, 401);
    assert_eq!(
        json(&raw)["type"],
        "urn:hohhot-platform:problem:missing-token"
    );

    let t = token(addr).await;
    let (status, _, _) = send(get(addr, "/divisions?parentCode=150103", Some(&t))).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, raw) = send(get(addr, "/divisions?parentCode=150103", Some(&t))).await;
    assert_eq!(status, 401);
    assert_eq!(
        json(&raw)["type"],
        "urn:hohhot-platform:problem:expired-token"
    );

    let bad = Request::post(format!("http://{addr}/oauth/token"))
        .body(Full::new(Bytes::from(
            "grant_type=client_credentials&client_id=demo&client_secret=nope",
        )))
        .unwrap();
    assert_eq!(send(bad).await.0, 401);
}

#[tokio::test]
async fn city_platform_rate_limits_with_retry_after() {
    let addr = city_sim(Duration::from_secs(300), 3, Faults::new(1)).await;
    let t = token(addr).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let (status, headers, _) = send(get(addr, "/divisions?parentCode=150103", Some(&t))).await;
        statuses.push(status);
        if status == 429 {
            retry_after = headers.get("retry-after").cloned();
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
}

#[tokio::test]
async fn faults_are_injected_per_endpoint_and_cleared() {
    let faults = Faults::new(7);
    let addr = city_sim(Duration::from_secs(300), 1000, faults.clone()).await;
    let t = token(addr).await;
    let set = |spec: &str| {
        Request::post(format!("http://{addr}/__admin/faults"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(spec.to_string())))
            .unwrap()
    };
    assert_eq!(
        send(set(r#"{"/divisions": {"error_rate": 1.0, "status": 500}}"#))
            .await
            .0,
        204
    );
    assert_eq!(
        send(get(addr, "/divisions?parentCode=150103", Some(&t)))
            .await
            .0,
        500
    );
    // Other endpoints are untouched.
    assert_eq!(
        send(get(addr, "/service-centers?divisionCode=150103", Some(&t)))
            .await
            .0,
        200
    );

    send(set(r#"{"/divisions": {"malformed_rate": 1.0}}"#)).await;
    let (status, _, raw) = send(get(addr, "/divisions?parentCode=150103", Some(&t))).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&raw).is_err());

    send(set(r#"{"/divisions": {"truncated_rate": 1.0}}"#)).await;
    let (_, _, raw) = send(get(addr, "/divisions?parentCode=150103", Some(&t))).await;
    assert!(serde_json::from_slice::<Value>(&raw).is_err());

    send(set(r#"{"/divisions": {"latency_ms": 150}}"#)).await;
    let began = std::time::Instant::now();
    assert_eq!(
        send(get(addr, "/divisions?parentCode=150103", Some(&t)))
            .await
            .0,
        200
    );
    assert!(began.elapsed() >= Duration::from_millis(150));

    send(set(r#"{"/divisions": {"hang": true}}"#)).await;
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        send(get(addr, "/divisions?parentCode=150103", Some(&t))),
    )
    .await;
    assert!(hung.is_err(), "a hanging endpoint must not answer");

    let clear = Request::delete(format!("http://{addr}/__admin/faults"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(clear).await.0, 204);
    assert_eq!(
        send(get(addr, "/divisions?parentCode=150103", Some(&t)))
            .await
            .0,
        200
    );
}
