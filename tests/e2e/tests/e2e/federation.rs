//! Federation over real HTTP: the party-link and city-platform plugins
//! against their simulators, merged with the district databases.

use std::collections::HashSet;

use lianqiao_e2e::{ConfigDir, Upstreams, huimin_with_members, world};
use lianqiao_sim::upstream::faults::Fault;

#[tokio::test]
async fn members_count_for_huimin_is_9657_and_splits_by_district() {
    let (gw, _up) = huimin_with_members().await;
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
    let (gw, _up) = huimin_with_members().await;
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
    let (gw, _up) = huimin_with_members().await;
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
    let (gw, up) = huimin_with_members().await;
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
    // The gateway's words for the failure; the plugin's own text (which
    // could quote upstream data) goes only to the operator's log.
    assert_eq!(
        city["error"]["message"], "the upstream system answered with an error",
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
    assert_eq!(body["error"]["code"], "source_error", "{body}");
    assert_eq!(
        body["error"]["message"],
        "source `city-platform`: the upstream system answered with an error",
        "{body}"
    );
}

#[tokio::test]
async fn a_hanging_upstream_times_out_within_the_deadline() {
    let (gw, up) = huimin_with_members().await;
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
    assert_eq!(body["error"]["code"], "source_error");
    assert_eq!(
        message, "source `party-link`: the host denied the plugin a capability",
        "{message}"
    );
}

#[tokio::test]
async fn a_member_joins_party_link_and_district_records_without_exposing_the_key() {
    let (gw, _up) = huimin_with_members().await;
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

#[tokio::test]
async fn walking_members_of_hohhot_equals_the_union_of_what_each_source_holds() {
    let up = Upstreams::start().await;
    let (saihan_db, _) = lianqiao_e2e::saihan_jining_sqlite();
    let gw = ConfigDir::new()
        .with_huimin()
        .with_demo_source("saihan", &format!("sqlite://{}", saihan_db.display()))
        .with_upstreams(&up)
        .start()
        .await;
    let mut seen = HashSet::new();
    let mut joined = 0;
    let mut path = "/v1/members?division=1501&limit=1000&fields=grid".to_string();
    for _ in 0..60 {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        for row in body["data"].as_array().unwrap() {
            assert!(
                seen.insert(row["id"].as_str().unwrap().to_string()),
                "{row} twice"
            );
            if row["grid"].is_string() {
                joined += 1;
            }
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => {
                path = format!("/v1/members?division=1501&limit=1000&fields=grid&cursor={c}")
            }
            None => break,
        }
    }
    let world = world();
    let expected: HashSet<String> = world
        .districts
        .iter()
        .filter(|d| d.district.code.starts_with("1501"))
        .flat_map(|d| d.people.members.iter().map(|m| m.id.clone()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 9657 + 11800);
    assert_eq!(
        joined,
        seen.len(),
        "every member joined with its district record"
    );
}

#[tokio::test]
async fn party_orgs_and_cases_walk_completely_and_filter_in_the_gateway() {
    let (gw, _up) = huimin_with_members().await;
    let world = world();
    let huimin = world
        .districts
        .iter()
        .find(|d| d.district.code == "150103")
        .unwrap();

    let mut ids = HashSet::new();
    let mut path = "/v1/party-orgs?division=150103&limit=150&fields=kind".to_string();
    loop {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        ids.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match body["page"]["next_cursor"].as_str() {
            Some(c) => {
                path = format!("/v1/party-orgs?division=150103&limit=150&fields=kind&cursor={c}")
            }
            None => break,
        }
    }
    assert_eq!(ids.len(), huimin.people.orgs.len());
    assert_eq!(ids.len(), 400);

    let (status, body) = gw
        .get("/v1/cases?division=150103&state=closed&limit=1000&fields=state,title")
        .await;
    assert_eq!(status, 200, "{body}");
    let closed = body["data"].as_array().unwrap();
    assert!(closed.iter().all(|c| c["state"] == "closed"));
    // The city platform's city-loop cases and the district's own.
    let district_cases = lianqiao_sim::generate::cases::cases(&huimin.district);
    assert_eq!(
        closed.len(),
        huimin.cases.iter().filter(|c| c.state == "closed").count()
            + district_cases
                .iter()
                .filter(|c| c.state == "closed")
                .count()
    );
    let (_, body) = gw
        .get("/v1/stats?metric=cases.count&division=150103&by=state")
        .await;
    let total: i64 = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_i64().unwrap())
        .sum();
    assert_eq!(total as usize, huimin.cases.len() + district_cases.len());
}

#[tokio::test]
async fn a_source_slow_past_its_deadline_leaves_the_others_intact() {
    let (gw, up) = huimin_with_members().await;
    up.city_faults.set(
        "/divisions",
        Fault {
            hang: true,
            ..Fault::default()
        },
    );
    let (status, body) = gw.get("/v1/divisions?parent=150103&limit=20").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partial"], true);
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        8,
        "Huimin's rows are intact: {body}"
    );
    let city = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "city-platform")
        .cloned()
        .unwrap();
    assert_eq!(city["status"], "timeout");
    assert_eq!(city["error"]["code"], "source_timeout");
}

#[tokio::test]
async fn a_source_done_with_a_listing_is_not_asked_again() {
    let (gw, _up) = huimin_with_members().await;
    // In one community the registry has one row (the community), Huimin the
    // community and its grids: after the first page only Huimin is asked.
    let community = "150103100006";
    let query = format!("/v1/divisions?division={community}&limit=2&fields=name");
    let mut path = query.clone();
    let mut pages: Vec<Vec<(String, String)>> = Vec::new();
    let mut rows = 0;
    for _ in 0..30 {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["partial"], false, "{body}");
        rows += body["data"].as_array().unwrap().len();
        pages.push(
            body["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap().to_string(),
                        s["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
        );
        match body["page"]["next_cursor"].as_str() {
            Some(c) => path = format!("{query}&cursor={c}"),
            None => break,
        }
    }
    assert!(pages.len() >= 3, "{pages:?}");
    assert!(pages.iter().flatten().all(|(_, s)| s == "ok"), "{pages:?}");
    assert!(
        pages[0].iter().any(|(n, _)| n == "city-platform"),
        "the first page asks the registry: {pages:?}"
    );
    assert!(
        pages[2..]
            .iter()
            .all(|p| p.iter().all(|(n, _)| n == "huimin")),
        "once done, the registry is not asked again: {pages:?}"
    );
    let grids = lianqiao_e2e::huimin()
        .0
        .grids
        .iter()
        .filter(|g| g.community == community)
        .count();
    assert!(grids > 0);
    assert_eq!(rows, 1 + grids, "the community once, then its grids");
}

#[tokio::test]
async fn the_openapi_document_describes_every_resource_and_class() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let (status, doc) = gw.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for resource in [
        "divisions",
        "grids",
        "party-orgs",
        "members",
        "workers",
        "service-centers",
        "cases",
    ] {
        assert!(
            doc["paths"][format!("/v1/{resource}")]["get"].is_object(),
            "{resource}"
        );
    }
    assert!(doc["paths"]["/v1/stats"]["get"].is_object());
    let member = &doc["components"]["schemas"]["Member"]["properties"];
    assert_eq!(member["id_number"]["x-lianqiao-class"], "sensitive");
    assert_eq!(member["phone"]["x-lianqiao-class"], "personal");
    // A date only some callers see in clear is a string of its masked form.
    assert_eq!(member["birth_date"]["x-lianqiao-mask"], "date");
    assert!(member["birth_date"]["format"].is_null());
    assert_eq!(member["joined_on"]["format"], "date");
}

#[tokio::test]
async fn a_filter_on_a_joined_field_is_refused_not_answered_wrongly() {
    let (gw, _up) = huimin_with_members().await;
    let (status, body) = gw
        .get("/v1/members?division=150103&household_role=central")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be filtered on"),
        "{body}"
    );
}

#[tokio::test]
async fn a_failing_source_opens_its_circuit_and_a_probe_closes_it() {
    let up = Upstreams::start().await;
    let dir = ConfigDir::new().with_huimin().with_upstreams(&up);
    let path = dir.dir.path().join("sources/city-platform.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[plugin.settings]",
        "[breaker]\nfailures = 3\ncooldown_ms = 400\n\n[plugin.settings]",
    );
    std::fs::write(&path, text).unwrap();
    let gw = dir.start().await;
    let city = |body: &serde_json::Value| {
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "city-platform")
            .cloned()
            .unwrap()
    };

    up.city_faults.set(
        "/divisions",
        Fault {
            error_rate: 1.0,
            status: Some(500),
            ..Fault::default()
        },
    );
    // Three failed attempts (a request and its retry count as two) open it.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (_, body) = gw.get("/v1/divisions?parent=150103").await;
        statuses.push(city(&body)["status"].as_str().unwrap().to_string());
        if statuses.last().map(String::as_str) == Some("circuit_open") {
            break;
        }
    }
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("error"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("circuit_open"),
        "{statuses:?}"
    );
    let calls_before = up.city_faults.received().len();
    let (status, body) = gw.get("/v1/divisions?parent=150103").await;
    assert_eq!(status, 200, "Huimin still answers: {body}");
    assert_eq!(city(&body)["status"], "circuit_open", "{body}");
    assert_eq!(city(&body)["error"]["code"], "circuit_open");
    assert_eq!(
        up.city_faults.received().len(),
        calls_before,
        "an open circuit calls nothing"
    );
    let (_, ready) = gw.get("/readyz").await;
    let state = ready["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "city-platform")
        .unwrap()["breaker"]
        .clone();
    assert_eq!(state, "open");

    // The upstream recovers; after the cool-down one probe closes the circuit.
    up.city_faults.set("/divisions", Fault::default());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, body) = gw.get("/v1/divisions?parent=150103").await;
    assert_eq!(city(&body)["status"], "ok", "{body}");
    let (_, ready) = gw.get("/readyz").await;
    let state = ready["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "city-platform")
        .unwrap()["breaker"]
        .clone();
    assert_eq!(state, "closed");
}

#[tokio::test]
async fn a_transient_upstream_failure_is_retried_once() {
    let up = Upstreams::start().await;
    let gw = ConfigDir::new().with_upstreams(&up).start().await;
    up.city_faults.set(
        "/divisions",
        Fault {
            fail_first: 1,
            status: Some(503),
            ..Fault::default()
        },
    );
    let (status, body) = gw.get("/v1/divisions/150105001").await;
    assert_eq!(status, 200, "the retry succeeded: {body}");
    assert_eq!(body["sources"][0]["status"], "ok");
    let listings = up
        .city_faults
        .received()
        .iter()
        .filter(|r| r.path == "/divisions")
        .count();
    assert!(
        listings >= 2,
        "the failed listing was asked again ({listings})"
    );

    // A deadline is not retried: its time is gone.
    up.party_link_faults.set(
        "/api/v1/dy/list",
        Fault {
            hang: true,
            ..Fault::default()
        },
    );
    let before = up.party_link_faults.received().len();
    let (status, _) = gw.get("/v1/members?division=150103001&limit=1").await;
    assert_eq!(status, 504);
    assert_eq!(
        up.party_link_faults.received().len(),
        before + 1,
        "one attempt only"
    );
}
