//! Ingress TLS: HTTPS with a local CA, TLS 1.1 refused, client
//! certificates verified and mapped to principals, certificates reloaded.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use lianqiao_e2e::{ConfigDir, default_auth};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn roots(ca: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A client trusting `ca`, presenting `client` (cert, key) if given.
fn client(ca: &Path, client: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca));
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// GET over TLS; the status and body, or the TLS/IO error.
async fn get(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    request(connector, addr, "GET", path, headers, "").await
}

/// One request over TLS with `body`; the status and body.
async fn request(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let length = if method == "GET" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    tls.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{length}Connection: close\r\n\r\n{body}")
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text}")))?;
    Ok((
        status,
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string()),
    ))
}

fn token_headers() -> String {
    format!(
        "Authorization: {}\r\nX-Purpose: case-handling\r\n",
        default_auth()
    )
}

#[tokio::test]
async fn https_serves_with_a_token_and_a_mapped_client_certificate_stands_for_its_principal() {
    let gw = ConfigDir::new().with_huimin().start_tls(false).await;
    let tls = gw.dir.dir.path().join("tls");
    let plain = client(&tls.join("ca.pem"), None);
    let (status, body) = get(
        &plain,
        gw.addr,
        "/v1/grids?division=150103&limit=1",
        &token_headers(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    // No token, no client certificate: 401.
    let (status, _) = get(
        &plain,
        gw.addr,
        "/v1/grids?division=150103&limit=1",
        "X-Purpose: statistics\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    // The city platform's certificate: a city principal, statistics only.
    let city = client(
        &tls.join("ca.pem"),
        Some((
            &tls.join("city-platform.pem"),
            &tls.join("city-platform.key"),
        )),
    );
    let (status, body) = get(
        &city,
        gw.addr,
        "/v1/stats?metric=grids.count&division=1501",
        "X-Purpose: statistics\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"scope\":[\"1501\"]"), "{body}");
    let (status, body) = get(
        &city,
        gw.addr,
        "/v1/members?division=150103",
        "X-Purpose: case-handling\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "a city principal sees no members: {body}");
}

#[tokio::test]
async fn an_untrusted_client_certificate_is_refused() {
    let gw = ConfigDir::new().with_huimin().start_tls(false).await;
    let tls = gw.dir.dir.path().join("tls");
    let other = gw.dir.dir.path().join("other");
    lianqiao_gateway::tls::certs::write_demo(&other).unwrap();
    let mallory = client(
        &tls.join("ca.pem"),
        Some((
            &other.join("city-platform.pem"),
            &other.join("city-platform.key"),
        )),
    );
    let result = get(
        &mallory,
        gw.addr,
        "/v1/stats?metric=grids.count&division=1501",
        "X-Purpose: statistics\r\n",
    )
    .await;
    assert!(
        result.is_err(),
        "a certificate from another CA must not get through: {result:?}"
    );
    // With client certificates required, no certificate is refused too.
    let strict = ConfigDir::new().with_huimin().start_tls(true).await;
    let tls = strict.dir.dir.path().join("tls");
    let anonymous = client(&tls.join("ca.pem"), None);
    let result = get(&anonymous, strict.addr, "/healthz", "").await;
    assert!(result.is_err(), "no certificate, required: {result:?}");
}

#[tokio::test]
async fn tls_1_1_is_refused() {
    let gw = ConfigDir::new().with_huimin().start_tls(false).await;
    // A TLS 1.1 ClientHello: legacy_version 3.2, no supported_versions.
    let mut hello = vec![0x03, 0x02];
    hello.extend([7u8; 32]); // random
    hello.push(0); // session id
    hello.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    hello.extend([0x01, 0x00]); // no compression
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend(&handshake);
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(!answer.is_empty(), "the server answers with an alert");
    assert_eq!(
        answer[0], 0x15,
        "an alert record, not a ServerHello: {answer:02x?}"
    );
    // A fatal alert: rustls says handshake_failure (no version in common).
    assert_eq!(answer.get(5), Some(&2), "fatal: {answer:02x?}");
    assert!(
        matches!(answer.get(6), Some(40 | 70)),
        "handshake_failure or protocol_version: {answer:02x?}"
    );
}

#[tokio::test]
async fn a_new_certificate_is_picked_up_and_a_broken_one_is_refused() {
    let gw = ConfigDir::new().with_huimin().start_tls(false).await;
    let tls = gw.dir.dir.path().join("tls");
    // A broken key: refused, the old certificate keeps serving.
    std::fs::write(tls.join("gateway.key"), "not a key").unwrap();
    assert!(matches!(gw.state.reload_if_changed(), Some(Err(_))));
    let old = client(&tls.join("ca.pem"), None);
    assert_eq!(get(&old, gw.addr, "/healthz", "").await.unwrap().0, 200);
    // A certificate from a new CA: clients of the new CA get through.
    let fresh = gw.dir.dir.path().join("fresh");
    lianqiao_gateway::tls::certs::write_demo(&fresh).unwrap();
    for f in ["gateway.pem", "gateway.key"] {
        std::fs::copy(fresh.join(f), tls.join(f)).unwrap();
    }
    assert!(matches!(gw.state.reload_if_changed(), Some(Ok(()))));
    let new = client(&fresh.join("ca.pem"), None);
    assert_eq!(get(&new, gw.addr, "/healthz", "").await.unwrap().0, 200);
    assert!(
        get(&old, gw.addr, "/healthz", "").await.is_err(),
        "the old CA no longer verifies"
    );
}

/// Terminate TLS for `backend` (a simulator serving plain HTTP) on a
/// loopback port: the upstream as the gateway meets it, over https.
async fn tls_front(backend: SocketAddr, dir: &Path) -> SocketAddr {
    let config = lianqiao_gateway::tls::server_config(&lianqiao_gateway::tls::TlsFiles {
        cert: dir.join("upstream.pem"),
        key: dir.join("upstream.key"),
        client_ca: None,
        require_client_cert: false,
        clients: vec![],
    })
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_https_upstream_is_verified_against_the_sources_ca() {
    let up = lianqiao_e2e::Upstreams::start().await;
    let certs = tempfile::tempdir().unwrap();
    lianqiao_gateway::tls::certs::write_demo(certs.path()).unwrap();
    let front = tls_front(up.party_link, certs.path()).await;
    let other = tempfile::tempdir().unwrap();
    lianqiao_gateway::tls::certs::write_demo(other.path()).unwrap();

    let with_ca = |ca: &Path| {
        let dir = ConfigDir::new().with_huimin().with_upstreams(&up);
        let file = dir.dir.path().join("sources/party-link.toml");
        let text = std::fs::read_to_string(&file).unwrap();
        let text = text
            .replace(
                &format!("http://{}", up.party_link),
                &format!("https://{front}"),
            )
            .replace(
                "timeout_ms = 3000",
                &format!(
                    "timeout_ms = 3000\nca_file = {:?}",
                    ca.display().to_string()
                ),
            );
        assert!(
            text.contains("https://") && text.contains("ca_file"),
            "{text}"
        );
        std::fs::write(&file, text).unwrap();
        dir
    };
    // The right CA: members come from party-link over TLS.
    let gw = with_ca(&certs.path().join("ca.pem")).start().await;
    let (status, body) = gw.get("/v1/members?division=150103001&limit=2").await;
    assert_eq!(status, 200, "{body}");
    let party_link = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "party-link")
        .unwrap();
    assert_eq!(party_link["status"], "ok", "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    // Another CA: the upstream's certificate does not verify; the source
    // fails, nothing is called unverified.
    let gw = with_ca(&other.path().join("ca.pem")).start().await;
    let (status, body) = gw.get("/v1/members?division=150103001&limit=2").await;
    assert!(status.as_u16() >= 500, "{status}: {body}");
    assert_eq!(body["error"]["code"], "source_unavailable", "{body}");
    assert_eq!(body["error"]["source"], "party-link", "{body}");
}

#[tokio::test]
async fn an_https_allowlist_without_a_ca_is_refused_at_load() {
    let up = lianqiao_e2e::Upstreams::start().await;
    let dir = ConfigDir::new().with_upstreams(&up);
    let file = dir.dir.path().join("sources/party-link.toml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(&format!("http://{}", up.party_link), "https://127.0.0.1:1");
    std::fs::write(&file, text).unwrap();
    let errors = dir.build().await.expect_err("refused").to_string();
    assert!(errors.contains("http.ca_file"), "{errors}");
}

#[tokio::test]
async fn the_admin_listener_speaks_tls_when_asked_and_takes_an_operators_certificate() {
    let gw = ConfigDir::new()
        .with_huimin()
        .edit_main("[telemetry]\n", "[telemetry]\nadmin_tls = true\n")
        .start_tls(false)
        .await;
    let tls = gw.dir.dir.path().join("tls");
    // Plain HTTP to it fails: it only speaks TLS.
    assert!(
        lianqiao_e2e::http_get_text(&format!("http://{}/metrics", gw.admin))
            .await
            .is_err(),
        "the admin listener answered plain HTTP"
    );
    // Scraping needs no credential, over TLS.
    let plain = client(&tls.join("ca.pem"), None);
    let (status, body) = get(&plain, gw.admin, "/metrics", "").await.unwrap();
    assert_eq!(status, 200, "{body}");
    // Changing a source: refused without a credential, done with the
    // certificate of a principal holding the source-admin role.
    // Huimin's own file: replacing a source with itself reloads it.
    let file = std::fs::read_to_string(gw.dir.dir.path().join("sources/huimin.toml"))
        .expect("huimin's file");
    let (status, body) = request(&plain, gw.admin, "PUT", "/admin/sources/huimin", "", &file)
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    let operator = client(
        &tls.join("ca.pem"),
        Some((
            &tls.join("city-platform.pem"),
            &tls.join("city-platform.key"),
        )),
    );
    let (status, body) = request(
        &operator,
        gw.admin,
        "PUT",
        "/admin/sources/huimin",
        "",
        &file,
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"source\":\"huimin\""), "{body}");
}

#[test]
fn admin_tls_without_server_tls_is_refused() {
    let dir = ConfigDir::new()
        .with_huimin()
        .edit_main("[telemetry]\n", "[telemetry]\nadmin_tls = true\n");
    let errors = match lianqiao_gateway::config::load(&dir.main_file()) {
        Ok(_) => panic!("admin_tls without [server.tls] loaded"),
        Err(e) => e.to_string(),
    };
    assert!(errors.contains("telemetry.admin_tls"), "{errors}");
}
