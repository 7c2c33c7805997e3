//! What each source actually received for pushed-down filters: the SQL
//! text and parameters the database got, the HTTP requests the upstreams got.

use lianqiao_e2e::{ConfigDir, Upstreams, database_url, saihan_into};
use lianqiao_host::contract::Value;

fn source<'a>(
    gw: &'a lianqiao_e2e::TestGateway,
    name: &str,
) -> &'a lianqiao_gateway::sources::Source {
    gw.gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == name)
        .expect("source")
}

#[tokio::test]
async fn filters_reach_sqlite_as_sql_with_parameters() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, body) = gw
        .get("/v1/grids?division=150103001&tier=small&households[gte]=60&name[prefix]=坝口&limit=7&fields=name")
        .await;
    assert_eq!(status, 200, "{body}");
    let (sql, params) = source(&gw, "huimin")
        .plugin
        .recent_statements()
        .pop()
        .expect("a statement");
    assert!(sql.contains("WHERE (t.division LIKE ? ESCAPE '!') AND t.tier = ? AND t.households >= ? AND t.name LIKE ? ESCAPE '!'"), "{sql}");
    assert!(sql.ends_with("ORDER BY t.division, t.id LIMIT ?"), "{sql}");
    assert_eq!(
        params,
        vec![
            Value::Text("150103001%".into()),
            Value::Text("small".into()),
            Value::Integer(60),
            Value::Text("坝口%".into()),
            // limit + 1 for the lookahead of the merge, + 1 to know whether more follow
            Value::Integer(8),
        ]
    );
    // Only requested fields (and the merge keys) are selected.
    assert!(
        sql.starts_with("SELECT t.id, t.name, t.division FROM"),
        "{sql}"
    );
}

#[tokio::test]
async fn postgresql_receives_numbered_placeholders() {
    let Some(url) = database_url(
        "LIANQIAO_TEST_POSTGRES_URL",
        "postgresql_receives_numbered_placeholders",
    ) else {
        return;
    };
    saihan_into(&url)
        .await
        .expect("write Saihan into PostgreSQL");
    let gw = ConfigDir::new()
        .with_demo_source("saihan", &url)
        .start()
        .await;
    let (status, body) = gw
        .get("/v1/grids?division=150105&households[lte]=100&limit=3")
        .await;
    assert_eq!(status, 200, "{body}");
    let (sql, params) = source(&gw, "saihan")
        .plugin
        .recent_statements()
        .pop()
        .expect("a statement");
    assert!(
        sql.contains("t.division LIKE $1 ESCAPE '!'") && sql.contains("t.households <= $2"),
        "{sql}"
    );
    assert!(
        sql.contains("COLLATE \"C\""),
        "bytewise order on PostgreSQL: {sql}"
    );
    assert_eq!(params[1], Value::Integer(100));
}

#[tokio::test]
async fn upstreams_receive_their_own_protocols_and_never_the_secret() {
    let up = Upstreams::start().await;
    let gw = ConfigDir::new().with_upstreams(&up).start().await;
    let (status, body) = gw.get("/v1/members?division=150103001&limit=3").await;
    assert_eq!(status, 200, "{body}");
    let sent = up.party_link_faults.received();
    let first = sent.first().expect("the party-link system got a request");
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/api/v1/dy/list")
    );
    let body: serde_json::Value = serde_json::from_str(&first.body).expect("JSON body");
    assert_eq!(
        body["xzqhdm"], "150103001",
        "the scope, pushed down as the system's filter"
    );
    assert_eq!(body["pageSize"], 200);
    for header in ["appkey", "timestamp", "nonce", "sign"] {
        assert!(
            first.headers.iter().any(|(k, _)| k == header),
            "signed by the host: {header} missing"
        );
    }

    let (status, body) = gw.get("/v1/divisions?parent=150103&limit=3").await;
    assert_eq!(status, 200, "{body}");
    let sent = up.city_faults.received();
    let listing = sent
        .iter()
        .find(|r| r.path == "/divisions")
        .expect("a registry request");
    assert_eq!(listing.method, "GET");
    assert!(listing.query.contains("parentCode="), "{}", listing.query);
    let auth = listing
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.as_str());
    assert!(auth.is_some_and(|a| a.starts_with("Bearer ")), "{auth:?}");
    assert!(
        sent.iter().any(|r| r.path == "/oauth/token"),
        "the host fetched a token"
    );

    // The secret goes only to the token endpoint, as OAuth2 requires.
    let everything = up.party_link_faults.received().into_iter().chain(sent);
    for r in everything.filter(|r| r.path != "/oauth/token") {
        let text = format!("{:?}{}{}", r.headers, r.query, r.body);
        assert!(
            !text.contains("demo-secret"),
            "a secret reached {}: {text}",
            r.path
        );
    }
}

#[tokio::test]
async fn the_callers_trace_reaches_the_upstreams() {
    let up = Upstreams::start().await;
    let gw = ConfigDir::new().with_upstreams(&up).start().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, body) = gw
        .get_with(
            "/v1/members?division=150103002&limit=3",
            &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = up.party_link_faults.received();
    let headers: Vec<&str> = sent
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert!(
        !headers.is_empty(),
        "every upstream request carries the trace"
    );
    assert_eq!(headers.len(), sent.len());
    for h in &headers {
        assert!(
            h.starts_with(&format!("00-{trace}-")) && h.ends_with("-01"),
            "{h}"
        );
        assert!(
            !h.contains("00f067aa0ba902b7"),
            "a new span id per hop: {h}"
        );
    }

    // Without one, the gateway starts a trace of its own.
    let before = up.city_faults.received().len();
    let (status, _) = gw.get("/v1/service-centers?division=150103&limit=1").await;
    assert_eq!(status, 200);
    let fresh = &up.city_faults.received()[before..];
    let ids: std::collections::HashSet<String> = fresh
        .iter()
        .filter(|r| r.path != "/oauth/token")
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v[3..35].to_string())
        })
        .collect();
    assert_eq!(ids.len(), 1, "one trace for the request: {ids:?}");
}

#[tokio::test]
async fn cached_answers_spare_the_source_but_never_cross_scopes() {
    let dir = ConfigDir::new().with_huimin();
    let path = dir.dir.path().join("sources/huimin.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[sql]", "[cache]\nresponse_ttl_ms = 60000\n\n[sql]");
    std::fs::write(&path, text).unwrap();
    let gw = dir.start().await;
    let statements = || source(&gw, "huimin").plugin.recent_statements().len();

    let (_, first) = gw.get("/v1/grids?division=150103001&limit=5").await;
    let after_first = statements();
    let (_, second) = gw.get("/v1/grids?division=150103001&limit=5").await;
    assert_eq!(
        statements(),
        after_first,
        "the second answer came from the cache"
    );
    assert_eq!(first["data"], second["data"]);

    // Another scope is another query: the database is asked again.
    let (_, other) = gw.get("/v1/grids?division=150103002&limit=5").await;
    assert_eq!(statements(), after_first + 1);
    assert!(
        other["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"].as_str().unwrap().starts_with("150103002"))
    );
}
