//! The operator console on the admin listener (issue 20, first part):
//! operators sign in for a session cookie; the "who sees what" matrix is
//! the enforcing engine's own answer, cell by cell the same as
//! `/v1/_explain` (what `lianqiao policy explain` prints).

use lianqiao_e2e::{ConfigDir, http_request, token};
use serde_json::Value;

#[tokio::test]
async fn an_operator_signs_in_and_the_matrix_agrees_with_explain_cell_by_cell() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let admin = format!("http://{}", gw.admin);

    // No session: 401 saying how to sign in; not an operator: 403.
    let (status, _, body) = http_request("GET", &format!("{admin}/console/matrix.json"), &[])
        .await
        .expect("GET");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("POST /console/session"), "{body}");
    let street = format!("Bearer {}", token("street", "150103001", &[]));
    let (status, _, body) = http_request(
        "POST",
        &format!("{admin}/console/session"),
        &[("authorization", &street)],
    )
    .await
    .expect("POST");
    assert_eq!(status, 403, "{body}");

    // An operator: a cookie only the console's pages get, script-proof.
    let operator = format!("Bearer {}", token("region", "15", &["policy-admin"]));
    let (status, headers, body) = http_request(
        "POST",
        &format!("{admin}/console/session"),
        &[("authorization", &operator)],
    )
    .await
    .expect("POST");
    assert_eq!(status, 200, "{body}");
    let set = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(attribute), "{set}");
    }
    let cookie = set.split(';').next().unwrap_or("").to_string();
    // The API listener serves no console.
    let (status, _, _) = http_request(
        "GET",
        &format!("http://{}/console/matrix.json", gw.addr),
        &[("cookie", &cookie)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 404);

    let purpose = "case-handling";
    let division = "15010300100101";
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/matrix.json?division={division}&purpose={purpose}"),
        &[("cookie", &cookie)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200, "{body}");
    let matrix: Value = serde_json::from_str(&body).expect("JSON");
    let levels = matrix["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 6);
    let mut cells = 0;
    for level in levels {
        let name = level["level"].as_str().expect("level");
        let at = level["division"].as_str().expect("division");
        for cell in level["resources"].as_array().expect("resources") {
            let resource = cell["resource"].as_str().expect("resource");
            let (status, explained) = gw
                .get_as(
                    &token("region", "15", &["policy-admin"]),
                    purpose,
                    &format!(
                        "/v1/_explain?resource={resource}&division={at}&as_level={name}&as_division={at}&as_purpose={purpose}"
                    ),
                )
                .await;
            assert_eq!(status, 200, "{explained}");
            for key in ["decision", "fields", "policies", "scope"] {
                assert_eq!(
                    cell[key], explained[key],
                    "{name} {resource} {key}: console {} vs explain {}",
                    cell[key], explained[key]
                );
            }
            cells += 1;
        }
    }
    assert_eq!(cells, 6 * lianqiao_gateway::model::ENTITIES.len());

    // The page: a table per resource; streets see members' phones masked.
    let (status, headers, page) = http_request(
        "GET",
        &format!("{admin}/console/matrix?division={division}&purpose={purpose}"),
        &[("cookie", &cookie)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200);
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html")),
        "{headers:?}"
    );
    assert!(page.contains("<table id=\"members\">"), "{page}");
    let street_row = page
        .split("<table id=\"members\">")
        .nth(1)
        .and_then(|t| t.split("<tr><th>street</th>").nth(1))
        .and_then(|r| r.split("</tr>").next())
        .expect("the street's row of members");
    assert!(
        street_row.contains("data-field=\"phone\" title=")
            && street_row
                .split("data-field=\"phone\"")
                .nth(1)
                .is_some_and(|rest| rest
                    .split("</td>")
                    .next()
                    .is_some_and(|c| c.contains(">masked"))),
        "{street_row}"
    );
    // Sources: what /readyz reports, with each plugin's limits, as a page.
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/sources.json"),
        &[("cookie", &cookie)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200, "{body}");
    let sources: Value = serde_json::from_str(&body).expect("JSON");
    let (_, _, ready) = http_request("GET", &format!("http://{}/readyz", gw.addr), &[])
        .await
        .expect("readyz");
    let ready: Value = serde_json::from_str(&ready).expect("JSON");
    let huimin = |v: &Value| {
        v["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "huimin")
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(huimin(&sources)["plugin"], huimin(&ready)["plugin"]);
    assert!(
        huimin(&sources)["limits"]["max_rows"].as_u64().is_some(),
        "{sources}"
    );
    let (status, _, page) = http_request(
        "GET",
        &format!("{admin}/console/sources"),
        &[("cookie", &cookie)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200);
    let sha = huimin(&ready)["plugin"]["sha256"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        page.contains("data-source=\"huimin\"") && page.contains(&sha[..16]),
        "{page}"
    );
    let (status, _, _) = http_request("GET", &format!("{admin}/console/sources"), &[])
        .await
        .expect("GET");
    assert_eq!(status, 401);

    // A bad parameter is a clear 400, not a page of nothing.
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/matrix.json?division=abc"),
        &[("cookie", &cookie)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 400, "{body}");
}
