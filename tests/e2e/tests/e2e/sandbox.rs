//! The plugin sandbox: a plugin reaches nothing its source was not granted.

use lianqiao_e2e::ConfigDir;

async fn escape_report() -> String {
    // A source granted nothing: no sql, no http, no credentials.
    report_of(ConfigDir::new().with_misbehaving("escapee", "escape", "159907", "")).await
}

async fn report_of(dir: ConfigDir) -> String {
    let gw = dir.start().await;
    let (status, body) = gw.get("/v1/grids?division=159907&fields=name").await;
    assert_eq!(status, 200, "{body}");
    body["data"][0]["name"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_plugin_cannot_read_the_host_file_system() {
    let report = escape_report().await;
    assert!(
        report.contains("fs:false") && report.contains("dir:false"),
        "{report}"
    );
}

#[tokio::test]
async fn a_plugin_sees_no_environment_or_arguments() {
    let report = escape_report().await;
    assert!(
        report.contains("env:0") && report.contains("args:0"),
        "{report}"
    );
}

#[tokio::test]
async fn a_plugin_has_no_clock() {
    // Wall clock at the epoch, monotonic clock standing still across a
    // loop: nothing to time with, nothing to schedule by.
    let report = escape_report().await;
    assert!(report.contains("clock:0:0"), "{report}");
}

#[tokio::test]
async fn a_plugin_cannot_open_sockets() {
    let report = escape_report().await;
    assert!(report.contains("tcp:false"), "{report}");
}

#[tokio::test]
async fn a_plugin_without_a_database_grant_cannot_query_one() {
    let report = escape_report().await;
    assert!(
        report.contains("sql:SqlError::Denied(") && report.contains("granted no sql capability"),
        "{report}"
    );
}

#[tokio::test]
async fn a_plugin_without_an_http_grant_cannot_call_out() {
    let report = escape_report().await;
    assert!(
        report.contains("http:HttpError::Denied(") && report.contains("granted no http capability"),
        "{report}"
    );
}

#[tokio::test]
async fn a_plugin_cannot_use_another_sources_credential() {
    // Allowed the URL, with a credential of its own — but it names the
    // party-link source's credential, which this source does not have.
    let dir = ConfigDir::new();
    let secret = dir.dir.path().join("own-secret");
    std::fs::write(&secret, "x").unwrap();
    let extra = format!(
        "[http]\nallow = [\"http://127.0.0.1:8091/api/v1/\"]\n[http.credentials.own]\nkind = \"hmac-sha256\"\napp_key = \"own\"\nsecret_file = {:?}\n",
        secret.display().to_string()
    );
    let report = report_of(dir.with_misbehaving("escapee", "escape", "159907", &extra)).await;
    assert!(
        report.contains("has no credential named `party-link`"),
        "{report}"
    );
}

#[tokio::test]
async fn a_plugin_cannot_call_a_url_outside_its_allowlist() {
    let dir = ConfigDir::new();
    let report = report_of(dir.with_misbehaving(
        "escapee",
        "escape",
        "159907",
        "[http]\nallow = [\"http://127.0.0.1:8092/divisions\"]\n",
    ))
    .await;
    assert!(report.contains("not in the source's allowlist"), "{report}");
}
