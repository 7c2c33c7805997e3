//! `http`: outbound requests to the URLs a source's config allows, with
//! credentials the host adds and the plugin never sees.
//!
//! The allowlist check is plain code (`is_allowed`), unit-tested without
//! wasmtime. A plugin names a credential; the host signs (HMAC) or obtains
//! and refreshes an OAuth2 token for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::bindings::v1::lianqiao::source::http::{Host, HttpError, Request, Response};
use crate::state::HostState;

/// A secret from the operator's environment or files. Never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the host authenticates a request for the plugin.
#[derive(Debug)]
pub enum Credential {
    /// Headers `appKey`, `timestamp` (ms), `nonce` and `sign` = hex
    /// HMAC-SHA256 of "METHOD\npath\nsorted query\nhex sha256(body)\n
    /// timestamp\nnonce" — the convention of the region's systems.
    Hmac { app_key: String, secret: Secret },
    /// OAuth2 client credentials: a bearer token fetched from `token_url`,
    /// cached until shortly before it expires, refreshed on a 401.
    OAuth2 {
        token_url: String,
        client_id: String,
        secret: Secret,
        token: Mutex<Option<(String, Instant)>>,
    },
}

/// A source's `[http]` grant.
#[derive(Debug)]
pub struct HttpGrant {
    /// URL prefixes the plugin may call.
    pub allow: Vec<String>,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    pub credentials: HashMap<String, Arc<Credential>>,
    /// Whether `https` URLs may be called: only with a CA configured for
    /// the source (verification is never disabled).
    pub https: bool,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpGrant {
    pub fn new(
        allow: Vec<String>,
        timeout: Duration,
        max_response_bytes: usize,
        credentials: HashMap<String, Arc<Credential>>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let https = tls.is_some();
        // Without a CA for the source, an empty trust store: an https call
        // could never verify (and is refused before it is tried).
        let config = match tls {
            Some(config) => (*config).clone(),
            None => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let client = Client::builder(TokioExecutor::new()).build(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http),
        );
        HttpGrant {
            allow,
            timeout,
            max_response_bytes,
            credentials,
            https,
            client,
        }
    }
}

/// May a plugin call `url` under `allow`? `http` or `https` (https only
/// for sources with a CA, checked when sending), no user-info, no dot
/// segments, and the URL must extend an allowed prefix at a path boundary.
pub fn is_allowed(url: &str, allow: &[String]) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("`{url}`: only http and https URLs may be called")),
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{url}`: a host without user-info is required"));
    }
    let path = uri.path().to_ascii_lowercase();
    if path.split('/').any(|seg| seg == ".." || seg == ".")
        || path.contains("%2e")
        || path.contains("%2f")
    {
        return Err(format!(
            "`{url}`: dot segments and encoded slashes are not allowed"
        ));
    }
    let allowed = allow.iter().any(|prefix| {
        url.starts_with(prefix.as_str())
            && (prefix.ends_with('/')
                || matches!(
                    url.as_bytes().get(prefix.len()),
                    None | Some(b'/') | Some(b'?')
                ))
    });
    if allowed {
        Ok(uri)
    } else {
        Err(format!(
            "`{url}` is not in the source's allowlist ({})",
            allow.join(", ")
        ))
    }
}

/// An error with its causes: "client error (Connect): invalid peer
/// certificate: UnknownIssuer" says what to fix, "client error" alone not.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// The canonical string an HMAC credential signs.
pub fn canonical(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> String {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    format!(
        "{method}\n{path}\n{}\n{}\n{timestamp}\n{nonce}",
        pairs.join("&"),
        hex::encode(Sha256::digest(body))
    )
}

fn hmac_hex(secret: &str, text: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

impl HttpGrant {
    async fn oauth_token(&self, credential: &Credential, force: bool) -> Result<String, HttpError> {
        let Credential::OAuth2 {
            token_url,
            client_id,
            secret,
            token,
        } = credential
        else {
            return Err(HttpError::Denied("not an OAuth2 credential".into()));
        };
        if !force
            && let Ok(cached) = token.lock()
            && let Some((value, expires)) = cached.as_ref()
            && *expires > Instant::now() + Duration::from_secs(30)
        {
            return Ok(value.clone());
        }
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.0.as_str()),
        ])
        .map_err(|e| HttpError::Unavailable(e.to_string()))?;
        let request = hyper::Request::post(token_url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| HttpError::Unavailable(format!("token request: {}", with_causes(&e))))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| HttpError::Unavailable(format!("token endpoint: {e}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), 64 << 10)
            .collect()
            .await
            .map_err(|e| HttpError::Unavailable(format!("token endpoint: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(HttpError::Denied(format!(
                "the token endpoint refused the credential ({status})"
            )));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| HttpError::Unavailable("the token endpoint answered no JSON".into()))?;
        let value = parsed["access_token"]
            .as_str()
            .ok_or_else(|| HttpError::Unavailable("no access_token in the token response".into()))?
            .to_string();
        let ttl = parsed["expires_in"].as_u64().unwrap_or(60);
        if let Ok(mut cached) = token.lock() {
            *cached = Some((value.clone(), Instant::now() + Duration::from_secs(ttl)));
        }
        Ok(value)
    }

    async fn send_once(
        &self,
        uri: &hyper::Uri,
        request: &Request,
        credential: Option<&Credential>,
        force_token: bool,
        trace: Option<&crate::trace::TraceContext>,
    ) -> Result<Response, HttpError> {
        let body = Bytes::from(request.body.clone().unwrap_or_default());
        let method = hyper::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                HttpError::Denied(format!("`{}` is not an HTTP method", request.method))
            })?;
        let mut builder = hyper::Request::builder()
            .method(method.clone())
            .uri(uri.clone());
        for (name, value) in &request.headers {
            let lower = name.to_ascii_lowercase();
            // The host owns routing and authentication headers.
            if matches!(
                lower.as_str(),
                "host" | "authorization" | "connection" | "transfer-encoding"
            ) {
                continue;
            }
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(lower.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(HttpError::Denied(format!("invalid header `{name}`")));
            };
            builder = builder.header(n, v);
        }
        if let Some(trace) = trace {
            builder = builder.header("traceparent", trace.outgoing_header());
        }
        match credential {
            Some(Credential::Hmac { app_key, secret }) => {
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
                    .to_string();
                let mut nonce = [0u8; 16];
                rand::rng().fill_bytes(&mut nonce);
                let nonce = hex::encode(nonce);
                let text = canonical(
                    method.as_str(),
                    uri.path(),
                    uri.query().unwrap_or(""),
                    &body,
                    &timestamp,
                    &nonce,
                );
                builder = builder
                    .header("appKey", app_key.as_str())
                    .header("timestamp", timestamp)
                    .header("nonce", nonce)
                    .header("sign", hmac_hex(&secret.0, &text));
            }
            Some(oauth @ Credential::OAuth2 { .. }) => {
                let token = self.oauth_token(oauth, force_token).await?;
                builder = builder.header("authorization", format!("Bearer {token}"));
            }
            None => {}
        }
        let outbound = builder
            .body(Full::new(body))
            .map_err(|e| HttpError::Denied(format!("cannot build the request: {e}")))?;
        let response = self
            .client
            .request(outbound)
            .await
            .map_err(|e| HttpError::Unavailable(format!("{uri}: {}", with_causes(&e))))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| HttpError::Unavailable(format!("{uri}: reading the body: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// The kind of a failed host call, for its span.
fn http_error_kind(e: &HttpError) -> &'static str {
    match e {
        HttpError::Denied(_) => "denied",
        HttpError::Timeout(_) => "timeout",
        HttpError::Unavailable(_) => "unavailable",
    }
}

impl Host for HostState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let Some(grant) = self.grants.http.clone() else {
            return Ok(Err(HttpError::Denied(format!(
                "source `{}` is granted no http capability (request to {})",
                self.grants.source, request.url
            ))));
        };
        let uri = match is_allowed(&request.url, &grant.allow) {
            Ok(uri) => uri,
            Err(why) => return Ok(Err(HttpError::Denied(why))),
        };
        if uri.scheme_str() == Some("https") && !grant.https {
            return Ok(Err(HttpError::Denied(format!(
                "source `{}` has no CA for https (`[http] ca_file`); {} is refused rather than called unverified",
                self.grants.source, request.url
            ))));
        }
        let credential = match &request.credential {
            None => None,
            Some(name) => match grant.credentials.get(name) {
                Some(c) => Some(c.clone()),
                None => {
                    return Ok(Err(HttpError::Denied(format!(
                        "source `{}` has no credential named `{name}`",
                        self.grants.source
                    ))));
                }
            },
        };
        let budget = self.remaining().min(grant.timeout);
        let trace = self.trace.clone();
        // The guest's fiber is suspended while this awaits; the budget
        // bounds the wait (epochs do not interrupt host code).
        // One span per host call: what operators filter on, never the
        // query string (filters may carry personal data).
        let span = tracing::info_span!(
            "host.http",
            otel.kind = "client",
            source = %self.grants.source,
            http.request.method = %request.method.to_ascii_uppercase(),
            server.address = uri.host().unwrap_or(""),
            url.path = uri.path(),
            http.response.status_code = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(
            async {
                tokio::time::timeout(budget, async {
                    let first = grant
                        .send_once(&uri, &request, credential.as_deref(), false, trace.as_ref())
                        .await?;
                    // An expired or revoked token: fetch a new one, once.
                    if first.status == 401
                        && matches!(credential.as_deref(), Some(Credential::OAuth2 { .. }))
                    {
                        return grant
                            .send_once(&uri, &request, credential.as_deref(), true, trace.as_ref())
                            .await;
                    }
                    Ok(first)
                })
                .await
            },
            span.clone(),
        )
        .await;
        match &outcome {
            Ok(Ok(response)) => {
                span.record("http.response.status_code", response.status);
            }
            Ok(Err(e)) => {
                span.record("error", http_error_kind(e));
            }
            Err(_) => {
                span.record("error", "timeout");
            }
        }
        Ok(match outcome {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout(format!(
                "{} did not answer within {} ms",
                request.url,
                budget.as_millis()
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Vec<String> {
        vec![
            "http://127.0.0.1:8091/api/v1/".into(),
            "http://10.1.2.3:80".into(),
        ]
    }

    #[test]
    fn address_outside_the_allowlist_is_not_permitted() {
        assert!(is_allowed("http://127.0.0.1:8091/api/v1/dy/list", &allow()).is_ok());
        let denied = is_allowed("http://127.0.0.1:5432/", &allow()).unwrap_err();
        assert!(denied.contains("not in the source's allowlist"), "{denied}");
        assert!(is_allowed("http://127.0.0.1:8091/admin", &allow()).is_err());
        // A prefix without a trailing slash still ends at a boundary.
        assert!(is_allowed("http://10.1.2.3:80/x", &allow()).is_ok());
        assert!(is_allowed("http://10.1.2.3:8080/x", &allow()).is_err());
    }

    #[test]
    fn tricks_around_the_allowlist_are_refused() {
        for url in [
            "http://127.0.0.1:8091/api/v1/../../__admin/faults",
            "http://127.0.0.1:8091/api/v1/%2e%2e/__admin",
            "http://evil@127.0.0.1:8091/api/v1/dy/list",
            "https://127.0.0.1:8091/api/v1/dy/list",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(is_allowed(url, &allow()).is_err(), "{url} must be refused");
        }
    }

    #[test]
    fn canonical_string_sorts_the_query_and_hashes_the_body() {
        let c = canonical(
            "POST",
            "/api/v1/dy/list",
            "b=2&a=1",
            b"{}",
            "1700000000000",
            "n1",
        );
        assert_eq!(
            c,
            format!(
                "POST\n/api/v1/dy/list\na=1&b=2\n{}\n1700000000000\nn1",
                hex::encode(Sha256::digest(b"{}"))
            )
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("demo-secret".into())), "Secret(***)");
    }
}
