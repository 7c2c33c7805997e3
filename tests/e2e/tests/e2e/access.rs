//! The access policy through the real gateway: who gets in, what each
//! level sees, what is refused and why, and that the policy reloads safely.

use lianqiao_e2e::{ConfigDir, TEST_API_KEY, TestGateway, huimin_with_members, token, token_with};
use serde_json::Value;

const GRID_COMMUNITY: &str = "150103001001";

/// A big grid of 坝口子村社区 that has party members living in it.
async fn a_grid_with_members(gw: &TestGateway) -> String {
    let (status, body) = gw
        .get(&format!(
            "/v1/members?division={GRID_COMMUNITY}&limit=50&fields=grid"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let grid = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["grid"].as_str())
        .find(|g| g.len() >= 14)
        .expect("a member with a grid");
    grid[..14].to_string()
}

fn rows(body: &Value) -> &Vec<Value> {
    body["data"].as_array().expect("data")
}

#[tokio::test]
async fn every_request_needs_a_valid_credential_and_a_purpose() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let path = "/v1/grids?division=150103&limit=1";
    // (headers, status, code, reason)
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("authorization", String::new())],
            401,
            "unauthenticated",
            "credential_missing",
        ),
        (
            vec![("authorization", "Basic abc".into())],
            401,
            "unauthenticated",
            "credential_malformed",
        ),
        (
            vec![(
                "authorization",
                format!("Bearer {}", token_with("district", "150103", &[], -600)),
            )],
            401,
            "unauthenticated",
            "token_expired",
        ),
        (
            vec![("authorization", format!("Bearer {}", forged_token()))],
            401,
            "unauthenticated",
            "token_signature_invalid",
        ),
        (
            vec![("authorization", "Bearer not.a.token".into())],
            401,
            "unauthenticated",
            "token_claims_invalid",
        ),
        (
            vec![("x-api-key", "wrong-key".into())],
            401,
            "unauthenticated",
            "api_key_unknown",
        ),
        (
            vec![(
                "authorization",
                format!("Bearer {}", token("district", "1501", &[])),
            )],
            401,
            "unauthenticated",
            "token_claims_invalid",
        ),
    ];
    for (headers, status, code, reason) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (got, hdrs, body) = gw.get_full(path, &headers).await;
        assert_eq!(got.as_u16(), status, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["reason"], reason, "{body}");
        assert!(hdrs.get("www-authenticate").is_some());
    }
    // An API key stands for its configured principal (a city system).
    let (status, body) = gw
        .get_with(path, &[("authorization", ""), ("x-api-key", TEST_API_KEY)])
        .await;
    assert_eq!(status, 200, "{body}");
    // No purpose: 400 purpose_required; one not declared in config: 400
    // unknown_purpose (a client can tell "forgot it" from "wrong one").
    for (purpose, code) in [("", "purpose_required"), ("curiosity", "unknown_purpose")] {
        let (status, body) = gw.get_with(path, &[("x-purpose", purpose)]).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["retryable"], false, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("case-handling")
        );
    }
}

/// A token signed by a key the gateway does not trust, naming its issuer.
fn forged_token() -> String {
    let (private, _) = lianqiao_policy::authn::generate_ed25519().unwrap();
    lianqiao_policy::authn::issue_ed25519(
        &private,
        &lianqiao_policy::authn::Claims {
            sub: "mallory".into(),
            iss: lianqiao_e2e::TEST_ISSUER.into(),
            aud: "lianqiao".into(),
            exp: lianqiao_policy::authn::now() + 600,
            nbf: None,
            level: "region".into(),
            division: "15".into(),
            roles: vec!["e2e-all".into()],
        },
    )
    .unwrap()
}

#[tokio::test]
async fn each_level_sees_its_own_subtree_with_fields_masked_by_level() {
    let (gw, _up) = huimin_with_members().await;
    let grid = a_grid_with_members(&gw).await;
    let fields = "fields=name,phone,id_number,ethnicity,grid,address";

    // The grid worker: its grid only; names and phones clear, ID masked,
    // ethnicity withheld — even when it asks for the whole district.
    let t = token("grid", &grid, &[]);
    let (status, body) = gw
        .get_as(
            &t,
            "case-handling",
            &format!("/v1/members?division=150103&limit=100&{fields}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!rows(&body).is_empty(), "members in {grid}");
    assert_eq!(body["policy"]["scope"][0], grid.as_str());
    for r in rows(&body) {
        assert!(r["grid"].as_str().unwrap().starts_with(&grid), "{r}");
        assert!(!r["name"].as_str().unwrap().contains('*'), "{r}");
        let phone = r["phone"].as_str().unwrap();
        assert!(phone.len() == 11 && !phone.contains('*'), "{r}");
        let id = r["id_number"].as_str().unwrap();
        assert!(id.len() == 18 && &id[6..14] == "********", "{r}");
        assert!(r.get("ethnicity").is_none(), "{r}");
    }
    assert!(
        body["policy"]["withheld"]
            .as_array()
            .unwrap()
            .contains(&"ethnicity".into())
    );

    // The street: names and phones masked, no ID numbers at all.
    let t = token("street", "150103001", &[]);
    let (status, body) = gw
        .get_as(
            &t,
            "case-handling",
            &format!("/v1/members?division=150103001&limit=50&{fields}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for r in rows(&body) {
        assert!(r["name"].as_str().unwrap().contains('*'), "{r}");
        assert!(r["phone"].as_str().unwrap().contains("****"), "{r}");
        assert!(
            r.get("id_number").is_none() && r.get("ethnicity").is_none(),
            "{r}"
        );
    }

    // Declaring `statistics`, even the grid worker sees no personal field.
    let t = token("grid", &grid, &[]);
    let (status, body) = gw
        .get_as(
            &t,
            "statistics",
            &format!("/v1/members?division={grid}&{fields}"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for r in rows(&body) {
        for f in ["name", "phone", "id_number", "ethnicity", "address"] {
            assert!(r.get(f).is_none(), "{f} in {r}");
        }
    }
}

#[tokio::test]
async fn refusals_name_the_reason_and_the_policy() {
    let (gw, _up) = huimin_with_members().await;
    // Another district's people: never.
    let t = token("district", "150105", &[]);
    let (status, body) = gw
        .get_as(&t, "case-handling", "/v1/members?division=150103&limit=1")
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside your jurisdiction")
    );

    // The city: no member details.
    let t = token("city", "1501", &[]);
    let (status, body) = gw
        .get_as(&t, "case-handling", "/v1/members?division=150103&limit=1")
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no policy permits")
    );

    // Filtering on a field one sees only masked would reveal it.
    let t = token("street", "150103001", &[]);
    let (status, body) = gw
        .get_as(
            &t,
            "case-handling",
            "/v1/members?division=150103001&name=张伟",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("masked"),
        "{body}"
    );
}

#[tokio::test]
async fn statistics_only_levels_get_small_cells_suppressed() {
    let (gw, _up) = huimin_with_members().await;
    let t = token("city", "1501", &[]);
    let path = "/v1/stats?metric=members.count&division=150103&group_by=community&by=ethnicity";
    let (status, body) = gw.get_as(&t, "statistics", path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["statistics_only"], true);
    assert_eq!(body["policy"]["counts"], "protected");
    assert_eq!(body["policy"]["protection"]["method"], "cell-key");
    let cells = rows(&body);
    let suppressed = cells.iter().filter(|c| c["suppressed"] == true).count();
    assert!(
        suppressed > 0,
        "some community has fewer than 5 members of one ethnicity"
    );
    for c in cells {
        match c["value"].as_i64() {
            Some(n) => assert!(n >= 5, "{c}"),
            None => assert_eq!(c["suppressed"], true, "{c}"),
        }
    }
    // The district may list members but never sees their ethnicity:
    // counting by it is protected for the district too …
    let t = token("district", "150103", &[]);
    let (status, body) = gw.get_as(&t, "statistics", path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["statistics_only"], false);
    assert_eq!(body["policy"]["counts"], "protected", "{}", body["policy"]);
    // … while by gender, which its lists show, it gets exact counts.
    let (status, body) = gw
        .get_as(
            &t,
            "statistics",
            "/v1/stats?metric=members.count&division=150103&group_by=community&by=gender",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "exact");
    assert!(rows(&body).iter().all(|c| c["value"].is_i64()));
}

#[tokio::test]
async fn explain_names_the_deciding_policies() {
    let gw = ConfigDir::new().with_huimin().start().await;
    let street = token("street", "150103001", &[]);
    let (status, body) = gw
        .get_as(&street, "case-handling", "/v1/_explain?resource=members")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(
        body["policies"][0]["id"],
        "staff-list-records-of-their-jurisdiction"
    );
    let phone = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "phone")
        .unwrap();
    assert_eq!(phone["as"], "masked");
    assert_eq!(
        phone["policies"][0]["id"],
        "staff-see-personal-fields-masked"
    );

    // Explaining someone else needs the policy-admin role.
    let path = "/v1/_explain?resource=members&division=150103&as_level=city&as_division=1501";
    let (status, _) = gw.get_as(&street, "case-handling", path).await;
    assert_eq!(status, 403);
    let admin = token("region", "15", &["policy-admin"]);
    let (status, body) = gw.get_as(&admin, "case-handling", path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "deny");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no policy permits")
    );

    // A forbid is named when it decides.
    let (_, body) = gw
        .get_as(&street, "statistics", "/v1/_explain?resource=members")
        .await;
    let name = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "name")
        .unwrap();
    assert_eq!(name["as"], "withheld");
    assert_eq!(
        name["policies"][0]["id"], "statistics-purpose-sees-no-person",
        "{name}"
    );
}

#[tokio::test]
async fn a_broken_policy_is_refused_on_reload_and_the_old_one_keeps_serving() {
    let dir = ConfigDir::new().with_huimin();
    let policy = dir.dir.path().join("policy/default.cedar");
    let gw = dir.start().await;
    let street = token("street", "150103001", &[]);
    let path = "/v1/grids?division=150103001&limit=1";
    let (status, before) = gw.get_as(&street, "case-handling", path).await;
    assert_eq!(status, 200, "{before}");
    let version = before["policy"]["version"].clone();

    let good = std::fs::read_to_string(&policy).unwrap();
    // A policy that does not match the schema (no such attribute).
    std::fs::write(
        &policy,
        format!("{good}\n@id(\"typo\")\npermit (principal, action, resource) when {{ principal.levle == \"grid\" }};\n"),
    )
    .unwrap();
    let errors = gw
        .live
        .reload()
        .await
        .expect_err("an invalid policy is refused");
    let text = errors.to_string();
    assert!(
        text.contains("default.cedar") && text.contains("typo"),
        "{text}"
    );
    let (status, body) = gw.get_as(&street, "case-handling", path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["policy"]["version"], version,
        "the old policy keeps serving"
    );

    // A valid change takes effect: without the registry permit the street
    // still lists grids through the staff permit, but a city no longer can.
    let city = token("city", "1501", &[]);
    assert_eq!(gw.get_as(&city, "case-handling", path).await.0, 200);
    let without_registry = good.replace(
        "[\"divisions\", \"grids\", \"party-orgs\", \"service-centers\"].contains(resource.kind)",
        "[\"divisions\"].contains(resource.kind)",
    );
    assert_ne!(without_registry, good);
    std::fs::write(&policy, without_registry).unwrap();
    gw.live.reload().await.expect("a valid policy reloads");
    let (status, body) = gw.get_as(&street, "case-handling", path).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["policy"]["version"], version);
    assert_eq!(gw.get_as(&city, "case-handling", path).await.0, 403);
}

#[tokio::test]
async fn the_division_registry_reaches_the_policy() {
    let dir = ConfigDir::new()
        .with_huimin()
        .edit_main("registry_refresh_s = 0", "registry_refresh_s = 600");
    // A policy that can only match once the registry has named 150103001.
    std::fs::write(
        dir.dir.path().join("policy/names.cedar"),
        "@id(\"no-grids-for-xinhua-west\")\nforbid (principal, action == Lianqiao::Action::\"list\", resource)\nwhen { principal.jurisdiction.name == \"新华西路街道\" && resource.kind == \"grids\" };\n",
    )
    .unwrap();
    let gw = dir.start().await;
    // Huimin: the district, 8 streets, 50 communities and 537 grids.
    gw.wait_for_registry(595).await;
    let street = token("street", "150103001", &[]);
    let (status, body) = gw
        .get_as(
            &street,
            "case-handling",
            "/v1/grids?division=150103001&limit=1",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["policies"][0], "no-grids-for-xinhua-west");
    let other = token("street", "150103002", &[]);
    assert_eq!(
        gw.get_as(
            &other,
            "case-handling",
            "/v1/grids?division=150103002&limit=1"
        )
        .await
        .0,
        200
    );
}
