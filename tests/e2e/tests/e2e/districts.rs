//! Three districts with three schemas, served by one plugin through
//! configuration alone: SQLite copies always, PostgreSQL (Saihan) and
//! MariaDB (Jining) when their URLs are set (`.ci/run` sets them).

use std::collections::HashSet;

use lianqiao_e2e::{
    ConfigDir, TestGateway, database_url, huimin, jining_into, saihan_and_jining, saihan_into,
    saihan_jining_sqlite, sqlite_url, walk_pages,
};
use lianqiao_sim::generate::GridTier;

/// Every grid of a district, with its tier mapped to the unified names.
async fn assert_all_grids(
    gw: &TestGateway,
    division: &str,
    district: &lianqiao_sim::generate::District,
) {
    let rows = walk_pages(
        gw,
        &format!("/v1/grids?division={division}&limit=1000&fields=tier,households"),
    )
    .await;
    assert_eq!(rows.len(), district.grids.len());
    for tier in GridTier::ALL {
        let served = rows.iter().filter(|r| r["tier"] == tier.as_str()).count();
        assert_eq!(served, district.count_grids(tier), "{division}: {tier:?}");
    }
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "{division}: pages in order");
}

/// A city's table by district, and by district and tier, counted by a
/// district's database: its scope lies inside one group, so its SQL names
/// the group as a parameter instead of grouping per row
/// (`sql_page::aggregate_statement`); the counts must still be its rows'.
async fn assert_counts_by_district(
    gw: &TestGateway,
    city: &str,
    code: &str,
    district: &lianqiao_sim::generate::District,
) {
    let token = lianqiao_e2e::token("city", city, &[]);
    let cells = |body: &serde_json::Value| -> Vec<serde_json::Value> {
        body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|c| c["division"] == code)
            .cloned()
            .collect()
    };
    let base = format!("/v1/stats?metric=grids.count&division={city}&group_by=district");
    let (status, body) = gw.get_as(&token, "statistics", &base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["policy"]["counts"], "exact", "{body}");
    let total = cells(&body);
    assert_eq!(total.len(), 1, "{body}");
    assert_eq!(total[0]["value"], district.grids.len() as i64, "{body}");
    let (status, body) = gw
        .get_as(&token, "statistics", &format!("{base}&by=tier"))
        .await;
    assert_eq!(status, 200, "{body}");
    for tier in GridTier::ALL {
        let n = cells(&body)
            .iter()
            .filter(|c| c["key"] == tier.as_str())
            .map(|c| c["value"].as_i64().expect("exact"))
            .sum::<i64>();
        assert_eq!(n, district.count_grids(tier) as i64, "{tier:?}: {body}");
    }
    // Nothing matches: the one group is empty. (Without a city registry
    // the gateway does not know 150105 is one of 1501's districts, so it
    // lists no zero for it; with one, contract.rs checks the zeros.)
    let (status, body) = gw
        .get_as(
            &token,
            "statistics",
            &format!("{base}&households[gte]=100000000"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(cells(&body).iter().all(|c| c["value"] == 0), "{body}");
}

#[tokio::test]
async fn three_schemas_one_plugin_sqlite_copies() {
    let (saihan_db, jining_db) = saihan_jining_sqlite();
    let gw = ConfigDir::new()
        .with_huimin()
        .with_demo_source("saihan", &sqlite_url(saihan_db))
        .with_demo_source("jining", &sqlite_url(jining_db))
        .start()
        .await;
    let ((saihan, _), (jining, _)) = saihan_and_jining();
    assert_all_grids(&gw, "150105", saihan).await;
    assert_all_grids(&gw, "150902", jining).await;

    // Levels come back unified whatever the district calls them.
    let (_, body) = gw
        .get("/v1/divisions?parent=150902&fields=name,level")
        .await;
    let levels: HashSet<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, HashSet::from(["street"]));
    let (_, body) = gw.get("/v1/divisions?parent=150105002").await;
    let xingkang = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "兴康社区")
        .cloned();
    assert_eq!(xingkang.expect("兴康社区")["households"], 2758);

    // A filter on a mapped field is applied by the gateway and still fills pages.
    let (status, body) = gw
        .get("/v1/grids?division=150902&tier=micro&limit=50&fields=tier")
        .await;
    assert_eq!(status, 200);
    let rows = body["data"].as_array().unwrap();
    assert_eq!(rows.len(), 50, "{body}");
    assert!(rows.iter().all(|r| r["tier"] == "micro"));

    // The four heads, from two schemas, counted at the source and mapped.
    let (status, body) = gw
        .get("/v1/stats?metric=workers.count&division=150902&by=role")
        .await;
    assert_eq!(status, 200, "{body}");
    let by_role: std::collections::HashMap<String, i64> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["value"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_role.get("grid_head"), Some(&426));
    assert_eq!(by_role.get("unit_head"), Some(&10464));
    let (status, body) = gw
        .get("/v1/workers?division=150105002001&limit=5&fields=name,gender,role,is_party_member")
        .await;
    assert_eq!(status, 200, "{body}");
    let first = &body["data"][0];
    assert!(
        first["gender"] == "male" || first["gender"] == "female",
        "{first}"
    );
    assert!(first["is_party_member"].is_boolean(), "{first}");
    let walked = walk_pages(&gw, "/v1/workers?division=150902&limit=1000&fields=role").await;
    let (_, (_, jining_people)) = saihan_and_jining();
    assert_eq!(walked.len(), jining_people.heads.len());

    // Hohhot (1501) fans out to Huimin and Saihan, not Jining — and asks
    // each only when its rows come next: Huimin's codes (150103) sort
    // before Saihan's (150105), so a short first page is Huimin's alone.
    let names = |body: &serde_json::Value| -> HashSet<String> {
        body["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, body) = gw.get("/v1/grids?division=1501&limit=5").await;
    assert_eq!(
        names(&body),
        HashSet::from(["huimin".to_string()]),
        "{body}"
    );
    let mut seen = HashSet::new();
    let mut path = "/v1/grids?division=1501&limit=1000&fields=tier".to_string();
    let mut all = 0;
    loop {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{body}");
        all += body["data"].as_array().unwrap().len();
        seen.extend(names(&body));
        match body["page"]["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/grids?division=1501&limit=1000&fields=tier&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        HashSet::from(["huimin".to_string(), "saihan".to_string()])
    );
    assert_eq!(all, huimin().0.grids.len() + saihan.grids.len());
}

#[tokio::test]
async fn saihan_on_postgresql() {
    let Some(url) = database_url("LIANQIAO_TEST_POSTGRES_URL", "saihan_on_postgresql") else {
        return;
    };
    saihan_into(&url)
        .await
        .expect("write Saihan into PostgreSQL");
    let gw = ConfigDir::new()
        .with_demo_source("saihan", &url)
        .start()
        .await;
    let ((saihan, _), _) = saihan_and_jining();
    assert_all_grids(&gw, "150105", saihan).await;
    assert_counts_by_district(&gw, "1501", "150105", saihan).await;
    let (status, body) = gw.get("/v1/divisions/150105002").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["name"], "大学东路街道");
    assert_eq!(body["data"]["level"], "street");
    // Pushed-down filters reach PostgreSQL with its own placeholders.
    let (status, body) = gw
        .get("/v1/grids?division=150105&households[gte]=800&limit=1000&fields=households")
        .await;
    assert_eq!(status, 200, "{body}");
    let expected = saihan.grids.iter().filter(|g| g.households >= 800).count();
    assert_eq!(body["data"].as_array().unwrap().len(), expected);
}

#[tokio::test]
async fn jining_on_mariadb() {
    let Some(url) = database_url("LIANQIAO_TEST_MYSQL_URL", "jining_on_mariadb") else {
        return;
    };
    jining_into(&url).await.expect("write Jining into MariaDB");
    let gw = ConfigDir::new()
        .with_demo_source("jining", &url)
        .start()
        .await;
    let (_, (jining, _)) = saihan_and_jining();
    assert_all_grids(&gw, "150902", jining).await;
    assert_counts_by_district(&gw, "1509", "150902", jining).await;
    let (status, body) = gw
        .get("/v1/grids?division=150902001&limit=3&fields=name,tier,head")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"][0]["tier"], "big");
    let (status, body) = gw
        .get("/v1/grids?division=150902&code[prefix]=150902001001&limit=1000&fields=code")
        .await;
    assert_eq!(status, 200, "{body}");
    let expected = jining
        .grids
        .iter()
        .filter(|g| g.code.starts_with("150902001001"))
        .count();
    assert_eq!(body["data"].as_array().unwrap().len(), expected);
}
