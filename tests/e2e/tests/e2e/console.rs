//! The operator console on the admin listener (issue 20, first part):
//! operators sign in for a session cookie; the "who sees what" matrix is
//! the enforcing engine's own answer, cell by cell the same as
//! `/v1/_explain` (what `lianqiao policy explain` prints).

use lianqiao_e2e::{ConfigDir, console_sign_in, http_request, http_send, token};
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
    // The registry's size and last refresh (off in the tests' config).
    assert!(
        page.contains("divisions in the registry, not fetched since the start"),
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

/// POST a JSON body to the console: status and JSON answer.
async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, text) = http_send("POST", url, &all, &body.to_string())
        .await
        .expect("POST");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const STREETS_SEE_NO_PHONES: &str = "@id(\"streets-see-no-phones\")\n@description(\"Streets no longer see phone numbers, not even masked.\")\nforbid (principal, action == Lianqiao::Action::\"read_personal_masked\", resource)\nwhen { principal.level == \"street\" && context.field == \"phone\" };\n";

#[tokio::test]
async fn a_policy_change_is_previewed_as_a_diff_refused_while_a_test_fails_and_applied_through_the_reload()
 {
    let (gw, _up) = lianqiao_e2e::huimin_with_members().await;
    let admin = format!("http://{}", gw.admin);
    let (cookie, csrf) = console_sign_in(&admin, &token("region", "15", &["policy-admin"])).await;
    let with = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        let mut h = vec![("cookie", cookie.clone()), ("x-csrf-token", csrf.clone())];
        h.extend_from_slice(extra);
        h
    };
    let refs = |h: &[(&'static str, String)]| -> Vec<(&'static str, String)> { h.to_vec() };
    let _ = refs;
    let call = |url: String, headers: Vec<(&'static str, String)>, body: Value| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        post(&url, &h, body).await
    };

    // Today a street sees members' phones masked.
    let street = token("street", "150103001", &[]);
    let phones = |body: &Value| -> Vec<Value> {
        body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r.get("phone").cloned().unwrap_or(Value::Null))
            .collect()
    };
    let members = "/v1/members?division=150103001&limit=5&fields=name,phone";
    let (status, before) = gw.get_as(&street, "case-handling", members).await;
    assert_eq!(status, 200, "{before}");
    assert!(
        !phones(&before).is_empty()
            && phones(&before)
                .iter()
                .all(|p| p.as_str().is_some_and(|p| p.contains('*'))),
        "{before}"
    );

    // What each purpose's street row shows for `phone` now: exactly those
    // cells must change, masked → withheld, and nothing else.
    let mut expected = std::collections::BTreeSet::new();
    for purpose in [
        "case-handling",
        "statistics",
        "party-affairs",
        "grid-service",
    ] {
        let (_, _, body) = http_request(
            "GET",
            &format!("{admin}/console/matrix.json?purpose={purpose}"),
            &[("cookie", &cookie)],
        )
        .await
        .expect("GET");
        let m: Value = serde_json::from_str(&body).expect("JSON");
        let street_row = m["levels"]
            .as_array()
            .expect("levels")
            .iter()
            .find(|l| l["level"] == "street")
            .expect("street")
            .clone();
        for cell in street_row["resources"].as_array().expect("resources") {
            for f in cell["fields"].as_array().into_iter().flatten() {
                if f["field"] == "phone" && f["as"] == "masked" {
                    expected.insert((
                        purpose.to_string(),
                        cell["resource"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
    }
    assert!(
        expected.contains(&("case-handling".to_string(), "members".to_string())),
        "{expected:?}"
    );

    let (status, preview) = call(
        format!("{admin}/console/change/draft"),
        with(&[]),
        serde_json::json!({ "file": "policy/street-phones.cedar", "text": STREETS_SEE_NO_PHONES }),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["valid"], true, "{preview}");
    let changed: std::collections::BTreeSet<(String, String)> = preview["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            assert_eq!(c["level"], "street", "{c}");
            assert_eq!(c["field"], "phone", "{c}");
            assert_eq!(c["before"], "masked (phone)", "{c}");
            assert_eq!(c["after"], "withheld", "{c}");
            (
                c["purpose"].as_str().unwrap_or("").to_string(),
                c["resource"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(changed, expected, "{preview}");
    // The shipped test table says streets see phones masked: it fails now,
    // and a change whose tests fail is not applied.
    let failed = preview["tests"]["failed"].as_array().expect("failed");
    assert_eq!(failed.len(), 1, "{preview}");
    assert!(
        failed[0]["name"]
            .as_str()
            .unwrap_or("")
            .contains("a street sees personal fields masked"),
        "{preview}"
    );
    assert_eq!(preview["applicable"], false);
    let (status, refused) = call(
        format!("{admin}/console/change/apply"),
        with(&[]),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_policy", "{refused}");

    // Bad drafts get clear answers and change nothing: a path outside the
    // policy files, a field class naming no field, a policy that does not
    // parse. Each is then taken back out of the draft.
    for (file, text, status) in [
        ("policy/../lianqiao.toml", "x", 400),
        ("../../etc/passwd.cedar", "x", 400),
        ("policy/tests/../../fields.toml", "x", 400),
        ("fields.toml", "", 400),
    ] {
        let (got, body) = call(
            format!("{admin}/console/change/draft"),
            with(&[]),
            serde_json::json!({ "file": file, "text": text }),
        )
        .await;
        assert_eq!(got, status, "{file}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(file)
                || file == "fields.toml",
            "the message names what to fix: {body}"
        );
    }
    let fields_path = gw.gateway.config.fields_file.clone();
    let fields = std::fs::read_to_string(&fields_path).expect("fields.toml");
    for (file, text, names) in [
        (
            "fields.toml",
            format!("{fields}\n[members.shoe_size]\nclass = \"public\"\n"),
            "members.shoe_size",
        ),
        (
            "policy/broken.cedar",
            "permit (principal, action, resource) when { principal.nonsense };".to_string(),
            "broken.cedar",
        ),
    ] {
        let (status, preview) = call(
            format!("{admin}/console/change/draft"),
            with(&[]),
            serde_json::json!({ "file": file, "text": text }),
        )
        .await;
        assert_eq!(status, 200, "{preview}");
        assert_eq!(preview["valid"], false, "{file}: {preview}");
        assert!(
            preview["problems"].to_string().contains(names),
            "{file}: the problem names {names}: {preview}"
        );
        let (status, refused) = call(
            format!("{admin}/console/change/apply"),
            with(&[]),
            serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 422, "{refused}");
        // Taken back: the shipped text again (or no file at all).
        let original = if file == "fields.toml" {
            fields.clone()
        } else {
            String::new()
        };
        let (status, _) = call(
            format!("{admin}/console/change/draft"),
            with(&[]),
            serde_json::json!({ "file": file, "text": original }),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        std::fs::read_to_string(&fields_path).expect("fields.toml"),
        fields,
        "nothing was written"
    );
    assert!(!gw.gateway.config.policy_dir.join("broken.cedar").exists());

    // The operator updates the test table in the same draft.
    let tests_file = gw.gateway.config.policy_dir.join("tests/default.toml");
    let table = std::fs::read_to_string(&tests_file).expect("test table");
    let street_case = "fields = { name = \"masked\", phone = \"masked\", id_number = \"withheld\"";
    assert!(table.contains(street_case), "the street's case as shipped");
    let (status, preview) = call(
        format!("{admin}/console/change/draft"),
        with(&[]),
        serde_json::json!({
            "file": "policy/tests/default.toml",
            "text": table.replace(street_case, "fields = { name = \"masked\", phone = \"withheld\", id_number = \"withheld\""),
        }),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview["tests"]["failed"],
        serde_json::json!([]),
        "{preview}"
    );
    assert!(
        preview["tests"]["run"].as_u64().unwrap_or(0) >= 16,
        "{preview}"
    );
    assert_eq!(preview["applicable"], true, "{preview}");
    let version_before = preview["policy_version"]["before"].clone();
    let version_after = preview["policy_version"]["after"].clone();
    assert_ne!(version_before, version_after);

    // Forged applies: no token, a token of no session, another origin,
    // another site's page. Each refused, nothing changes.
    for (what, headers) in [
        ("no token", vec![("cookie", cookie.clone())]),
        (
            "a wrong token",
            vec![("cookie", cookie.clone()), ("x-csrf-token", "0".repeat(64))],
        ),
        (
            "another origin",
            with(&[("origin", "http://evil.example".to_string())]),
        ),
        (
            "another site",
            with(&[("sec-fetch-site", "cross-site".to_string())]),
        ),
        (
            "a sibling port",
            with(&[("sec-fetch-site", "same-site".to_string())]),
        ),
    ] {
        let (status, refused) = call(
            format!("{admin}/console/change/apply"),
            headers,
            serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 403, "{what}: {refused}");
        assert_eq!(
            refused["error"]["reason"], "cross_site",
            "{what}: {refused}"
        );
    }
    let ready = |gw_addr: std::net::SocketAddr| async move {
        let (_, _, body) = http_request("GET", &format!("http://{gw_addr}/readyz"), &[])
            .await
            .expect("readyz");
        serde_json::from_str::<Value>(&body).expect("JSON")["policy"]["version"].clone()
    };
    assert_eq!(ready(gw.addr).await, version_before);

    // Applied: the files are written, the reload swaps the policy in, and
    // the live API answers differently.
    let (status, applied) = call(
        format!("{admin}/console/change/apply"),
        with(&[]),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["policy_version"], version_after, "{applied}");
    assert_eq!(ready(gw.addr).await, version_after);
    assert!(
        gw.gateway
            .config
            .policy_dir
            .join("street-phones.cedar")
            .is_file()
    );
    let (status, after) = gw.get_as(&street, "case-handling", members).await;
    assert_eq!(status, 200, "{after}");
    assert!(
        phones(&after).iter().all(Value::is_null),
        "phones withheld from streets now: {after}"
    );
    // A grid still sees its people's phones in clear.
    let grid = token("grid", "15010300100101", &[]);
    let (status, grid_view) = gw
        .get_as(
            &grid,
            "case-handling",
            "/v1/members?division=15010300100101&limit=5&fields=phone",
        )
        .await;
    assert_eq!(status, 200, "{grid_view}");
    assert!(
        phones(&grid_view)
            .iter()
            .any(|p| p.as_str().is_some_and(|p| !p.contains('*'))),
        "{grid_view}"
    );

    // A draft made against files that changed since is refused (409).
    let (status, _) = call(
        format!("{admin}/console/change/draft"),
        with(&[]),
        serde_json::json!({ "file": "policy/street-phones.cedar", "text": "" }),
    )
    .await;
    assert_eq!(status, 200);
    std::fs::write(
        gw.gateway.config.policy_dir.join("street-phones.cedar"),
        format!("{STREETS_SEE_NO_PHONES}\n// edited by hand meanwhile\n"),
    )
    .expect("edit by hand");
    let (status, refused) = call(
        format!("{admin}/console/change/apply"),
        with(&[]),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "policy_changed", "{refused}");
    // Drafting the file again takes the file as it is now: the apply goes
    // through.
    let kept = format!("{STREETS_SEE_NO_PHONES}// kept, with the hand edit\n");
    let (status, preview) = call(
        format!("{admin}/console/change/draft"),
        with(&[]),
        serde_json::json!({ "file": "policy/street-phones.cedar", "text": kept }),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["conflicts"], serde_json::json!([]), "{preview}");
    let (status, applied) = call(
        format!("{admin}/console/change/apply"),
        with(&[]),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        std::fs::read_to_string(gw.gateway.config.policy_dir.join("street-phones.cedar"))
            .expect("the policy file"),
        kept
    );

    // Every apply, refused or not, is in the audit trail, by whom.
    let store = lianqiao_gateway::audit::AuditStore::open(&gw.gateway.config.audit_url)
        .await
        .expect("audit store");
    let records = store
        .query(&lianqiao_gateway::audit::Query {
            principal: Some("test-region-15".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("query");
    let applies: Vec<(String, i64)> = records
        .iter()
        .filter_map(|r| r.record().ok().map(|rec| (rec, r.status)))
        .filter(|(rec, _)| rec.route == "/console/change/apply")
        .map(|(rec, status)| (rec.decision, status))
        .collect();
    assert!(applies.contains(&("allow".to_string(), 200)), "{applies:?}");
    assert_eq!(
        applies.iter().filter(|(d, _)| d == "deny").count(),
        5,
        "the five forged applies: {applies:?}"
    );
    assert!(
        applies.contains(&("invalid".to_string(), 422)),
        "{applies:?}"
    );
    assert!(
        applies.contains(&("invalid".to_string(), 409)),
        "{applies:?}"
    );
    assert!(
        records.iter().any(|r| r
            .record()
            .is_ok_and(|rec| rec.route == "/console/session" && rec.decision == "allow")),
        "the sign-in is audited too"
    );
}

#[tokio::test]
async fn auditors_search_and_export_the_trail_and_their_searches_are_audited() {
    let (gw, _up) = lianqiao_e2e::huimin_with_members().await;
    let admin = format!("http://{}", gw.admin);
    let street = token("street", "150103001", &[]);
    for _ in 0..3 {
        let (status, body) = gw
            .get_as(
                &street,
                "case-handling",
                "/v1/members?division=150103001&limit=2",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = gw
        .get_as(
            &street,
            "case-handling",
            "/v1/grids?division=150103001&limit=2",
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // An operator without the auditor role may not read the trail.
    let (operator, _) = console_sign_in(&admin, &token("region", "15", &["policy-admin"])).await;
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/audit.json"),
        &[("cookie", &operator)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("auditor"), "{body}");

    let (auditor, auditor_csrf) =
        console_sign_in(&admin, &token("region", "15", &["auditor"])).await;
    // An auditor does not see the policy pages.
    let (status, _, _) = http_request(
        "GET",
        &format!("{admin}/console/matrix.json"),
        &[("cookie", &auditor)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 403);
    let search = "principal=test-street-150103001&resource=members&since=2020-01-01";
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/audit.json?{search}"),
        &[("cookie", &auditor)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200, "{body}");
    let found: Value = serde_json::from_str(&body).expect("JSON");
    let records = found["records"].as_array().expect("records");
    assert_eq!(
        records.len(),
        3,
        "the three member lists, not the grids: {found}"
    );
    for r in records {
        assert_eq!(r["principal"], "test-street-150103001");
        assert_eq!(r["resource"], "members");
        assert_eq!(r["route"], "/v1/{resource}");
    }
    assert_eq!(found["verification"]["ok"], true, "{found}");

    // The same search as CSV: a header and a line per record.
    let (status, headers, csv) = http_request(
        "GET",
        &format!("{admin}/console/audit.csv?{search}"),
        &[("cookie", &auditor)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200, "{csv}");
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/csv")),
        "{headers:?}"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("seq,at,request_id,principal"), "{csv}");
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(",/v1/{resource},members,")),
        "{csv}"
    );

    // The auditor's own searches and the export are in the trail.
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/audit.json?principal=test-region-15"),
        &[("cookie", &auditor)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200, "{body}");
    let own: Value = serde_json::from_str(&body).expect("JSON");
    let routes: Vec<&str> = own["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["route"].as_str())
        .collect();
    for route in [
        "/console/audit.json",
        "/console/audit.csv",
        "/console/session",
    ] {
        assert!(routes.contains(&route), "{route} in {routes:?}");
    }

    // A bad filter is a clear 400.
    let (status, _, body) = http_request(
        "GET",
        &format!("{admin}/console/audit.json?since=yesterday"),
        &[("cookie", &auditor)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 400, "{body}");

    // A record edited after the last look is caught on the next page view
    // (records since the last verified one are verified as they are read).
    let store = lianqiao_gateway::audit::AuditStore::open(&gw.gateway.config.audit_url)
        .await
        .expect("audit store");
    let newest = store
        .query(&lianqiao_gateway::audit::Query {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("query")[0]
        .seq;
    store
        .execute(&format!(
            "UPDATE lianqiao_audit SET body = replace(body, '\"rows\":', '\"rows\":1') WHERE seq = {newest}"
        ))
        .await
        .expect("tamper with the newest record");
    let (status, _, page) = http_request(
        "GET",
        &format!("{admin}/console/audit"),
        &[("cookie", &auditor)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 200);
    assert!(
        page.contains("class=\"bad\"") && page.contains(&format!("broken at record {newest}")),
        "{newest}: {page}"
    );
    // An older record edited: the whole chain, verified again on request,
    // names the first broken record.
    store
        .execute("UPDATE lianqiao_audit SET body = replace(body, '\"rows\":2', '\"rows\":1') WHERE seq = 2")
        .await
        .expect("tamper");
    let (status, verified) = post(
        &format!("{admin}/console/audit/verify"),
        &[("cookie", &auditor), ("x-csrf-token", &auditor_csrf)],
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], false, "{verified}");
    assert_eq!(verified["first_broken"], 2, "{verified}");
}

/// Every console route refuses who may not use it: no session → 401; the
/// other role's session → 403; a change without the session's form token
/// → 403 `cross_site`; and the API listener serves none of them.
#[tokio::test]
async fn every_console_route_refuses_the_wrong_caller() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let admin = format!("http://{}", gw.admin);
    let (operator, operator_csrf) =
        console_sign_in(&admin, &token("region", "15", &["policy-admin"])).await;
    let (auditor, _) = console_sign_in(&admin, &token("region", "15", &["auditor"])).await;
    let policy_pages = [
        "/console",
        "/console/matrix",
        "/console/matrix.json",
        "/console/sources",
        "/console/sources.json",
        "/console/change",
        "/console/change.json",
        "/console/outbox",
        "/console/outbox.json",
    ];
    let audit_pages = [
        "/console/audit",
        "/console/audit.json",
        "/console/audit.csv",
    ];
    let changes = [
        "/console/change/draft",
        "/console/change/discard",
        "/console/change/apply",
        "/console/audit/verify",
        "/console/session/end",
    ];
    for path in policy_pages.iter().chain(&audit_pages) {
        let url = format!("{admin}{path}");
        let (status, _, body) = http_request("GET", &url, &[]).await.expect("GET");
        assert_eq!(status, 401, "{path} without a session: {body}");
        let (status, _, _) = http_request("GET", &format!("http://{}{path}", gw.addr), &[])
            .await
            .expect("GET");
        assert_eq!(status, 404, "{path} on the API listener");
        let (wrong, right) = if audit_pages.contains(path) {
            (&operator, &auditor)
        } else {
            (&auditor, &operator)
        };
        let (status, _, body) = http_request("GET", &url, &[("cookie", wrong)])
            .await
            .expect("GET");
        assert_eq!(status, 403, "{path} with the other role: {body}");
        assert!(body.contains("role"), "{path}: {body}");
        let (status, headers, body) = http_request("GET", &url, &[("cookie", right)])
            .await
            .expect("GET");
        assert_eq!(status, 200, "{path} with its role: {body}");
        // Never framed, never cached.
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(
            header("content-security-policy").contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(header("cache-control"), "no-store", "{path}");
        // A search is audited in the auditor's name: another site's page
        // (an <img> on a sibling port) may not make one.
        if audit_pages.contains(path) {
            let (status, _, body) = http_request(
                "GET",
                &url,
                &[("cookie", right), ("sec-fetch-site", "same-site")],
            )
            .await
            .expect("GET");
            assert_eq!(status, 403, "{path} from another site: {body}");
        }
    }
    for path in changes {
        let url = format!("{admin}{path}");
        let (status, body) = post(&url, &[], serde_json::json!({})).await;
        assert_eq!(status, 401, "{path} without a session: {body}");
        // The role that may use it, but no form token.
        let own = if path == "/console/audit/verify" {
            &auditor
        } else {
            &operator
        };
        let (status, body) = post(&url, &[("cookie", own)], serde_json::json!({})).await;
        assert_eq!(status, 403, "{path} without the form token: {body}");
        assert_eq!(body["error"]["reason"], "cross_site", "{path}: {body}");
        if path == "/console/audit/verify" {
            let (status, body) = post(
                &url,
                &[("cookie", &operator), ("x-csrf-token", &operator_csrf)],
                serde_json::json!({}),
            )
            .await;
            assert_eq!(status, 403, "{path} as an operator: {body}");
        } else if path != "/console/session/end" {
            let (status, body) = post(
                &url,
                &[("cookie", &auditor), ("x-csrf-token", &operator_csrf)],
                serde_json::json!({}),
            )
            .await;
            assert_eq!(status, 403, "{path} as an auditor: {body}");
        }
    }
    // Signing out ends the session: its cookie opens nothing any more.
    let (status, body) = post(
        &format!("{admin}/console/session/end"),
        &[("cookie", &operator), ("x-csrf-token", &operator_csrf)],
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = http_request(
        "GET",
        &format!("{admin}/console/matrix.json"),
        &[("cookie", &operator)],
    )
    .await
    .expect("GET");
    assert_eq!(status, 401);
}
