//! Fault injection per endpoint, for resilience tests: added latency, an
//! error rate with a chosen 5xx, malformed JSON, a truncated body, or a
//! hang. Set from the command line (`--fault PATH:KEY=VALUE,…`) or at run
//! time through `POST /__admin/faults` (`DELETE` clears them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What to do to one endpoint's responses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// Added before answering, in ms.
    pub latency_ms: u64,
    /// Share of requests answered with `status` instead (0–1).
    pub error_rate: f64,
    /// The status of injected errors (default 503).
    pub status: Option<u16>,
    /// Share of responses whose JSON is malformed (0–1).
    pub malformed_rate: f64,
    /// Share of responses cut in half (0–1).
    pub truncated_rate: f64,
    /// Never answer.
    pub hang: bool,
    /// Answer the first this-many requests with `status`, then behave.
    pub fail_first: u32,
    /// Apply the first this-many requests, then answer 504 instead of
    /// their result (a proxy whose upstream went quiet after the write):
    /// the answer is lost, the write is not.
    pub lose_first: u32,
}

impl Fault {
    /// `latency_ms=200,error_rate=0.5,status=500,malformed_rate=1,truncated_rate=1,hang=true`
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let mut fault = Fault::default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{key}: {e}");
            match key {
                "latency_ms" => fault.latency_ms = value.parse().map_err(|e| bad(&e))?,
                "error_rate" => fault.error_rate = value.parse().map_err(|e| bad(&e))?,
                "status" => fault.status = Some(value.parse().map_err(|e| bad(&e))?),
                "malformed_rate" => fault.malformed_rate = value.parse().map_err(|e| bad(&e))?,
                "truncated_rate" => fault.truncated_rate = value.parse().map_err(|e| bad(&e))?,
                "hang" => fault.hang = value.parse().map_err(|e| bad(&e))?,
                "fail_first" => fault.fail_first = value.parse().map_err(|e| bad(&e))?,
                "lose_first" => fault.lose_first = value.parse().map_err(|e| bad(&e))?,
                other => return Err(format!("unknown fault `{other}`")),
            }
        }
        Ok(fault)
    }
}

/// A request as the simulator received it, for tests asserting what a
/// plugin actually sent (`GET /__admin/requests` lists the last ones).
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The faults in force, by request path (`*` for every path), and the
/// requests received.
#[derive(Clone)]
pub struct Faults {
    by_path: Arc<Mutex<HashMap<String, Fault>>>,
    rng: Arc<Mutex<ChaCha8Rng>>,
    received: Arc<Mutex<std::collections::VecDeque<Received>>>,
    /// Requests failed so far under `fail_first`, by path.
    failed: Arc<Mutex<HashMap<String, u32>>>,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            by_path: Arc::default(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
            received: Arc::default(),
            failed: Arc::default(),
        }
    }

    /// From `--fault PATH:SPEC` arguments.
    pub fn from_args(seed: u64, args: &[String]) -> Result<Self, String> {
        let faults = Faults::new(seed);
        for arg in args {
            let (path, spec) = arg
                .split_once(':')
                .ok_or_else(|| format!("--fault {arg}: use PATH:KEY=VALUE,…"))?;
            faults.set(path, Fault::parse(spec)?);
        }
        Ok(faults)
    }

    /// No faults, and every `fail_first`/`lose_first` count back at zero.
    pub fn clear(&self) {
        if let Ok(mut map) = self.by_path.lock() {
            map.clear();
        }
        if let Ok(mut failed) = self.failed.lock() {
            failed.clear();
        }
    }

    pub fn set(&self, path: &str, fault: Fault) {
        if let Ok(mut map) = self.by_path.lock() {
            map.insert(path.to_string(), fault);
        }
        if let Ok(mut failed) = self.failed.lock() {
            failed.remove(path);
        }
    }

    /// True while `path` still owes one of its `fail_first` failures.
    fn owes_failure(&self, path: &str, fail_first: u32) -> bool {
        let Ok(mut failed) = self.failed.lock() else {
            return false;
        };
        let n = failed.entry(path.to_string()).or_insert(0);
        if *n < fail_first {
            *n += 1;
            true
        } else {
            false
        }
    }

    /// The fault for a request, and the key it was set under: `METHOD
    /// path` (one method only), else `path`, else `*`.
    fn for_request(&self, method: &str, path: &str) -> Option<(String, Fault)> {
        let map = self.by_path.lock().ok()?;
        [
            format!("{method} {path}"),
            path.to_string(),
            "*".to_string(),
        ]
        .into_iter()
        .find_map(|key| map.get(&key).cloned().map(|f| (key, f)))
    }

    /// The last requests received (oldest first, at most 256).
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn record(&self, received: Received) {
        if let Ok(mut log) = self.received.lock() {
            if log.len() == 256 {
                log.pop_front();
            }
            log.push_back(received);
        }
    }

    fn roll(&self, rate: f64) -> bool {
        rate > 0.0
            && self
                .rng
                .lock()
                .map(|mut r| r.random_bool(rate.min(1.0)))
                .unwrap_or(false)
    }
}

/// Middleware: apply the path's fault, if any.
pub async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/__admin") {
        return next.run(request).await;
    }
    // Record what arrived (the body is buffered and handed on unchanged).
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 16 << 20).await.unwrap_or_default();
    faults.record(Received {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    let request = Request::from_parts(parts, Body::from(bytes));
    let Some((key, fault)) = faults.for_request(request.method().as_str(), &path) else {
        return next.run(request).await;
    };
    if fault.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
    }
    if fault.hang {
        std::future::pending::<()>().await;
    }
    if faults.owes_failure(&key, fault.fail_first) || faults.roll(fault.error_rate) {
        let status = fault
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return (
            status,
            "<html><body><h1>upstream error (injected)</h1></body></html>",
        )
            .into_response();
    }
    let response = next.run(request).await;
    if faults.owes_failure(&format!("{key}#lost"), fault.lose_first) {
        return (
            StatusCode::GATEWAY_TIMEOUT,
            "<html><body><h1>504 Gateway Time-out (injected after the write)</h1></body></html>",
        )
            .into_response();
    }
    let malformed = faults.roll(fault.malformed_rate);
    let truncated = faults.roll(fault.truncated_rate);
    if !malformed && !truncated {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, 64 << 20).await.unwrap_or_default();
    let body = if malformed {
        Body::from(format!(
            "{{\"code\":0,\"msg\":\"success\",\"data\":{{\"list\":[{{\"oops\" {}",
            bytes.len()
        ))
    } else {
        Body::from(bytes.slice(..bytes.len() / 2))
    };
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

/// `POST /__admin/faults {"PATH": {fault}, …}` adds; `DELETE` clears;
/// `GET` lists.
pub async fn admin_set(
    State(faults): State<Faults>,
    Json(set): Json<HashMap<String, Fault>>,
) -> StatusCode {
    for (path, fault) in set {
        faults.set(&path, fault);
    }
    StatusCode::NO_CONTENT
}

pub async fn admin_clear(State(faults): State<Faults>) -> StatusCode {
    if let Ok(mut map) = faults.by_path.lock() {
        map.clear();
    }
    StatusCode::NO_CONTENT
}

pub async fn admin_received(State(faults): State<Faults>) -> Json<Vec<Received>> {
    Json(faults.received())
}

pub async fn admin_list(State(faults): State<Faults>) -> Json<HashMap<String, Fault>> {
    Json(faults.by_path.lock().map(|m| m.clone()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_refuse_typos() {
        let f = Fault::parse("latency_ms=20,error_rate=0.5,status=500,hang=false").unwrap();
        assert_eq!(
            (f.latency_ms, f.error_rate, f.status, f.hang),
            (20, 0.5, Some(500), false)
        );
        assert!(Fault::parse("latency=20").is_err());
        assert!(Fault::parse("latency_ms=soon").is_err());
    }
}
