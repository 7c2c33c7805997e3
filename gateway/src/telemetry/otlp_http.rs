//! The one way telemetry leaves the gateway: a protobuf body POSTed to an
//! OTLP/HTTP endpoint (`/v1/traces`, `/v1/metrics`) with a deadline, so a
//! collector that hangs costs the exporter's task, never a request.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;

pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// A client for one exporter (keep-alive to its collector).
pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// POST `body` to `endpoint`; an error says what went wrong in words an
/// operator can act on.
pub async fn post(client: &Client, endpoint: &str, body: Vec<u8>) -> Result<(), String> {
    let request = hyper::Request::post(endpoint)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| format!("{endpoint} did not answer within 10 s"))?
        .map_err(|e| format!("{endpoint}: {e}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "the collector at {endpoint} answered {}",
            response.status()
        ))
    }
}
