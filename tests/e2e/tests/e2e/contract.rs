//! The consumer's contract (issue 17): each inconsistency a new consumer
//! met, as a test. The document itself is checked by the generators and
//! validators in `cargo xtask test` (tests/consumer/); these check what
//! the gateway answers.

use lianqiao_e2e::{ConfigDir, http_request, huimin_with_members, token};
use serde_json::Value;

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn national_codes_are_aliases_and_division_rows_say_both_forms() {
    let (gw, _up) = huimin_with_members().await;
    let city = token("city", "1501", &[]);
    // The city's own division, by either form: one answer, prefix form,
    // with the national code beside it.
    for code in ["1501", "150100"] {
        let (status, body) = gw
            .get_as(&city, "case-handling", &format!("/v1/divisions/{code}"))
            .await;
        assert_eq!(status, 200, "{code}: {body}");
        assert_eq!(body["data"]["id"], "1501", "{body}");
        assert_eq!(body["data"]["code"], "1501", "{body}");
        assert_eq!(body["data"]["national_code"], "150100", "{body}");
        assert_eq!(body["data"]["parent"], "15", "{body}");
    }
    // Its children by either form of the parent: the same districts.
    let (s1, by_prefix) = gw
        .get_as(
            &city,
            "case-handling",
            "/v1/divisions?parent=1501&limit=100",
        )
        .await;
    let (s2, by_national) = gw
        .get_as(
            &city,
            "case-handling",
            "/v1/divisions?parent=150100&limit=100",
        )
        .await;
    assert_eq!(
        (s1.as_u16(), s2.as_u16()),
        (200, 200),
        "{by_prefix} {by_national}"
    );
    let districts = ids(&by_prefix);
    assert!(districts.contains(&"150103".to_string()), "{by_prefix}");
    assert!(
        districts
            .iter()
            .all(|d| d.len() == 6 && d.starts_with("1501")),
        "{districts:?}"
    );
    assert_eq!(districts, ids(&by_national));
    for row in by_prefix["data"].as_array().into_iter().flatten() {
        assert_eq!(row["parent"], "1501", "{row}");
        assert_eq!(
            row["national_code"], row["id"],
            "a district's national code is its code: {row}"
        );
    }
    // division=150100 is the city's subtree, as division=1501.
    let (_, a) = gw
        .get_as(&city, "case-handling", "/v1/grids?division=1501&limit=5")
        .await;
    let (_, b) = gw
        .get_as(&city, "case-handling", "/v1/grids?division=150100&limit=5")
        .await;
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(b["policy"]["scope"], serde_json::json!(["1501"]), "{b}");
    // A city token may carry the national form of its division.
    let national = token("city", "150100", &[]);
    let (status, body) = gw
        .get_as(&national, "case-handling", "/v1/divisions/1501")
        .await;
    assert_eq!(
        status, 200,
        "a token for 150100 is a token for 1501: {body}"
    );
}

#[tokio::test]
async fn no_empty_page_carries_a_cursor() {
    let gw = ConfigDir::new().with_huimin().start().await;
    for path in [
        "/v1/grids?division=150103&name=no-such-grid&limit=5",
        "/v1/grids?division=150103&households[gte]=100000&limit=5",
        "/v1/divisions?parent=150103009&limit=5",
    ] {
        let (status, body) = gw.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["data"], serde_json::json!([]), "{path}: {body}");
        assert!(body["page"]["next_cursor"].is_null(), "{path}: {body}");
    }
}

#[tokio::test]
async fn a_grouping_the_source_cannot_compute_is_a_client_error_not_a_failing_source() {
    let (gw, _up) = huimin_with_members().await;
    let city = token("city", "1501", &[]);
    // `household_role` is a category of members, but it lives in the
    // district databases, not in the party-link system that counts them.
    let path = "/v1/stats?metric=members.count&division=1501&by=household_role";
    for _ in 0..6 {
        let (status, body) = gw.get_as(&city, "statistics", path).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "unsupported_query", "{body}");
        assert_eq!(body["error"]["retryable"], false, "{body}");
    }
    // Not held against the source: its breaker stays closed.
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=members.count&division=1501&group_by=district",
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn every_refusal_says_why_and_which_policies_decided_it() {
    let (gw, _up) = huimin_with_members().await;
    let district = token("district", "150103", &[]);
    let city = token("city", "1501", &[]);
    let refusals = [
        (
            &district,
            "case-handling",
            "/v1/grids?division=150105",
            "outside_jurisdiction",
        ),
        (
            &city,
            "case-handling",
            "/v1/members?division=1501",
            "no_policy_permits",
        ),
        (
            &district,
            "case-handling",
            "/v1/_explain?resource=grids&as_level=city",
            "role_required",
        ),
        (
            &city,
            "statistics",
            "/v1/stats?metric=members.count&division=150103&joined_on[gte]=2000-01-01",
            "field_not_visible",
        ),
    ];
    for (who, purpose, path, reason) in refusals {
        let (status, body) = gw.get_as(who, purpose, path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{path}: {body}");
        assert_eq!(body["error"]["reason"], reason, "{path}: {body}");
        assert!(body["error"]["policies"].is_array(), "{path}: {body}");
        assert_eq!(body["error"]["retryable"], false, "{path}: {body}");
    }
    // An expired token says so.
    let expired = lianqiao_e2e::token_with("city", "1501", &[], -120);
    let (status, body) = gw
        .get_as(&expired, "case-handling", "/v1/divisions/1501")
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["reason"], "token_expired", "{body}");
}

#[tokio::test]
async fn the_api_answers_get_and_head_and_refuses_other_methods_with_allow() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let auth = format!("Bearer {}", token("district", "150103", &[]));
    let headers = [
        ("authorization", auth.as_str()),
        ("x-purpose", "case-handling"),
    ];
    let url = format!("http://{}/v1/grids?division=150103&limit=2", gw.addr);
    let (status, _, body) = http_request("HEAD", &url, &headers).await.expect("HEAD");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD answered a body: {body}");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, response_headers, body) =
            http_request(method, &url, &headers).await.expect(method);
        assert_eq!(status, 405, "{method}: {body}");
        assert_eq!(
            response_headers.get("allow").and_then(|v| v.to_str().ok()),
            Some("GET, HEAD"),
            "{method}"
        );
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    }
}

#[tokio::test]
async fn statistics_list_every_division_asked_for_zero_protected_or_not_covered() {
    let up = lianqiao_e2e::Upstreams::start().await;
    let gw = ConfigDir::new()
        .with_huimin()
        .with_upstreams(&up)
        .edit_main("registry_refresh_s = 0", "registry_refresh_s = 600")
        .start()
        .await;
    // The districts of 1501 are known once the registry is loaded.
    // Huimin's 596 divisions and the city platform's registry.
    gw.wait_for_registry(596).await;
    let city = token("city", "1501", &[]);
    // Grids: the city may list them, so counts are exact; only Huimin's
    // database is connected, so the other districts are not covered.
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=grids.count&division=150100&group_by=district",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "exact", "{body}");
    let cells = body["data"].as_array().expect("data");
    let divisions: Vec<&str> = cells
        .iter()
        .filter_map(|c| c["division"].as_str())
        .collect();
    for district in ["150102", "150103", "150104", "150105"] {
        assert!(divisions.contains(&district), "{district} missing: {body}");
    }
    for cell in cells {
        if cell["division"] == "150103" {
            assert!(cell["value"].as_i64().is_some_and(|v| v > 0), "{cell}");
        } else {
            assert!(cell["value"].is_null(), "{cell}");
            assert_eq!(cell["not_covered"], true, "{cell}");
        }
    }
    // A covered division with nothing in it is an exact zero, listed.
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=grids.count&division=150103&group_by=street&tier=micro&households[gte]=100000",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let streets = body["data"].as_array().expect("data");
    assert_eq!(streets.len(), 8, "Huimin's eight streets: {body}");
    assert!(streets.iter().all(|c| c["value"] == 0), "{body}");
    // Members: counted from the party-link system for every district, but
    // protected for the city (it may not list them): a value or suppressed.
    let (status, body) = gw
        .get_as(
            &city,
            "statistics",
            "/v1/stats?metric=members.count&division=1501&group_by=district",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "protected", "{body}");
    for cell in body["data"].as_array().expect("data") {
        assert!(
            cell["value"].as_i64().is_some() || cell["suppressed"] == true,
            "{cell}"
        );
    }
}
