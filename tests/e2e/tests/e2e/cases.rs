//! Cases across the loops: each district database keeps its cases in its
//! own shape; one plugin serves them by configuration.

use std::collections::{BTreeMap, HashSet};

use lianqiao_e2e::{ConfigDir, TestGateway, huimin, saihan_and_jining, saihan_jining_sqlite};
use lianqiao_sim::generate::cases::cases;
use serde_json::Value;

/// Walk every page of `query`; rows in order, each once.
async fn walk(gw: &TestGateway, query: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    let mut path = query.to_string();
    for _ in 0..200 {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for row in body["data"].as_array().unwrap() {
            assert!(seen.insert(row["id"].to_string()), "{row} twice");
            rows.push(row.clone());
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => path = format!("{query}&cursor={c}"),
            None => return rows,
        }
    }
    panic!("{query}: more than 200 pages");
}

fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

#[tokio::test]
async fn every_district_schema_serves_its_cases_and_their_history() {
    let (saihan_db, jining_db) = saihan_jining_sqlite();
    let gw = ConfigDir::new()
        .with_huimin()
        .with_demo_source("saihan", &sqlite_url(saihan_db))
        .with_demo_source("jining", &sqlite_url(jining_db))
        .start()
        .await;
    let ((saihan, _), (jining, _)) = saihan_and_jining();
    for (code, district) in [
        ("150103", &huimin().0),
        ("150105", saihan),
        ("150902", jining),
    ] {
        let expected = cases(district);
        let rows = walk(&gw, &format!("/v1/cases?division={code}&limit=1000")).await;
        assert_eq!(rows.len(), expected.len(), "{code}");
        let served: BTreeMap<&str, &Value> = rows
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r))
            .collect();
        for case in &expected {
            let row = served[case.id.as_str()];
            assert_eq!(row["loop"], case.loop_level, "{code} {}", case.id);
            assert_eq!(row["state"], case.state, "{code} {}", case.id);
            assert_eq!(row["division"], case.division.as_str());
            assert_eq!(row["opened_at"], case.opened_at.as_str());
        }
        let steps = walk(&gw, &format!("/v1/case-steps?division={code}&limit=1000")).await;
        let expected_steps: usize = expected.iter().map(|c| c.steps.len()).sum();
        assert_eq!(steps.len(), expected_steps, "{code}");
        let one = &expected[expected.len() / 2];
        let (status, body) = gw
            .get(&format!(
                "/v1/case-steps?division={code}&case_id={}",
                one.id
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        let states: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        let mut want: Vec<&str> = one.steps.iter().map(|s| s.state).collect();
        want.sort();
        let mut got = states.clone();
        got.sort();
        assert_eq!(got, want, "{code} {}", one.id);
    }
}
