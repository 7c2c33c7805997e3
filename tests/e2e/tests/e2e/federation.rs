//! Federation over real HTTP: the party-link and city-platform plugins
//! against their simulators, merged with the district databases.

use std::collections::HashSet;

use lianqiao_e2e::{ConfigDir, TestGateway, Upstreams, world};
use lianqiao_sim::upstream::faults::Fault;

async fn federated() -> (Upstreams, TestGateway) {
    let up = Upstreams::start().await;
    let gw = ConfigDir::new()
        .with_huimin()
        .with_upstreams(&up)
        .start()
        .await;
    (up, gw)
}

#[tokio::test]
async fn members_count_for_huimin_is_9657_and_splits_by_district() {
    let (_up, gw) = federated().await;
    let (status, body) = gw
        .get("/v1/stats?metric=members.count&division=150103")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["value"], 9657);

    let (status, body) = gw
        .get("/v1/stats?metric=grids.count&division=150103&by=tier")
        .await;
    assert_eq!(status, 200, "{body}");
    let total: i64 = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 537);

    let (status, body) = gw
        .get("/v1/stats?metric=service-centers.count&division=150103")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["value"], 88);
}

#[tokio::test]
async fn walking_all_members_of_huimin_equals_the_upstream() {
    let (_up, gw) = federated().await;
    let mut ids = HashSet::new();
    let mut path = "/v1/members?division=150103&limit=1000&fields=name".to_string();
    for _ in 0..50 {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        for row in body["data"].as_array().unwrap() {
            assert!(
                ids.insert(row["id"].as_str().unwrap().to_string()),
                "{row} twice"
            );
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => {
                path = format!("/v1/members?division=150103&limit=1000&fields=name&cursor={c}")
            }
            None => break,
        }
    }
    let huimin = world()
        .districts
        .iter()
        .find(|d| d.district.code == "150103")
        .map(|d| d.people.members.len());
    assert_eq!(Some(ids.len()), huimin);
}

#[tokio::test]
async fn the_same_division_from_two_sources_is_one_row() {
    let (_up, gw) = federated().await;
    let (status, body) = gw.get("/v1/divisions?parent=150103&limit=20").await;
    assert_eq!(status, 200, "{body}");
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{body}");
    assert!(
        rows.iter().all(|r| r["source"] == "city-platform+huimin"),
        "{body}"
    );
}

#[tokio::test]
async fn a_failing_source_gives_partial_results_and_strict_fails() {
    let (up, gw) = federated().await;
    up.city_faults.set(
        "/divisions",
        Fault {
            error_rate: 1.0,
            status: Some(503),
            ..Fault::default()
        },
    );
    let (status, body) = gw.get("/v1/divisions?parent=150103&limit=20").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partial"], true);
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "Huimin's rows are intact");
    assert!(rows.iter().all(|r| r["source"] == "huimin"));
    let city = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "city-platform")
        .cloned()
        .unwrap();
    assert_eq!(city["status"], "error");
    assert_eq!(city["error"]["code"], "source_error");
    assert!(
        city["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{city}"
    );

    let (status, body) = gw
        .get("/v1/divisions?parent=150103&limit=20&strict=true")
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["source"], "city-platform");

    // Garbage instead of JSON is an error of that source too.
    up.city_faults.set(
        "/divisions",
        Fault {
            malformed_rate: 1.0,
            ..Fault::default()
        },
    );
    let (status, body) = gw.get("/v1/divisions/150105001").await;
    assert_eq!(
        status, 502,
        "only the city platform serves Saihan's registry here: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn a_hanging_upstream_times_out_within_the_deadline() {
    let (up, gw) = federated().await;
    up.party_link_faults.set(
        "/api/v1/dy/list",
        Fault {
            hang: true,
            ..Fault::default()
        },
    );
    let began = std::time::Instant::now();
    let (status, body) = gw.get("/v1/members?division=150103001&limit=5").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "source_timeout");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(12),
        "{:?}",
        began.elapsed()
    );
    // Other resources keep answering.
    let (status, _) = gw.get("/v1/grids?division=150103001&limit=5").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_url_outside_the_allowlist_is_denied_to_the_plugin() {
    let up = Upstreams::start().await;
    // The plugin is told to call a path its source does not allow.
    let dir = ConfigDir::new().with_upstreams(&up);
    let path = dir.dir.path().join("sources/party-link.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("base_url = \"http://{}\"", up.party_link),
        &format!("base_url = \"http://{}/__admin\"", up.party_link),
    );
    std::fs::write(&path, text).unwrap();
    let gw = dir.start().await;
    let (status, body) = gw.get("/v1/members?division=150103001&limit=5").await;
    assert_eq!(status, 502, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("denied by the host") && message.contains("not in the source's allowlist"),
        "{message}"
    );
}

#[tokio::test]
async fn a_member_joins_party_link_and_district_records_without_exposing_the_key() {
    let (_up, gw) = federated().await;
    let (status, body) = gw
        .get(
            "/v1/members?division=150103001&limit=50&fields=name,grid,building,unit,household_role",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 50);
    let world = world();
    let people = &world
        .districts
        .iter()
        .find(|d| d.district.code == "150103")
        .unwrap()
        .people;
    for row in rows {
        assert_eq!(row["source"], "party-link+huimin", "{row}");
        assert!(
            row.get("id_number").is_none(),
            "not requested, not returned: {row}"
        );
        let member = people
            .members
            .iter()
            .find(|m| m.id == row["id"])
            .expect("a generated member");
        assert_eq!(row["name"], member.name.as_str(), "party-link's field");
        assert_eq!(
            row["grid"],
            member.grid.as_str(),
            "the district's field, joined"
        );
        assert_eq!(row["building"].as_str(), member.building.as_deref());
        assert_eq!(
            row["household_role"].as_str(),
            member.household_role.map(|r| r.as_str()),
            "{row}"
        );
    }
    let reports: Vec<&str> = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(reports, ["party-link", "huimin"]);
    // The district never lists members on its own.
    let (_, body) = gw
        .get("/v1/stats?metric=members.count&division=150103")
        .await;
    assert_eq!(body["data"][0]["value"], 9657);
}
