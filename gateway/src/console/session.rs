//! Signing in: an operator's token (or client certificate) is exchanged
//! once for a short-lived session cookie (`HttpOnly`, `SameSite=Strict`,
//! scoped to `/console`), so the browser never holds the token and no
//! other site can ride the session. Each session also carries a token its
//! forms send back with every change (the synchronizer-token defence
//! against cross-site request forgery: `SameSite` does not separate two
//! ports of one host, which are the same *site*) and the operator's draft
//! of a policy change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use lianqiao_policy::Principal;

use super::change::Draft;

/// The role a principal needs for the policy pages.
pub const CONSOLE_ROLE: &str = "policy-admin";
/// The role a principal needs to search and export the audit trail.
pub const AUDITOR_ROLE: &str = "auditor";
/// The cookie's name.
pub const COOKIE: &str = "lianqiao_console";
/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(30 * 60);
/// Live sessions at most (each may hold a draft); a sign-in beyond it
/// ends the session closest to expiring.
const MAX_SESSIONS: usize = 256;

/// One signed-in operator.
#[derive(Clone)]
pub struct Session {
    pub principal: Principal,
    /// Sent back by every form that changes something.
    pub csrf: String,
    /// The policy change being prepared (empty when none).
    pub draft: Draft,
    expires: Instant,
}

impl Session {
    pub fn has_role(&self, role: &str) -> bool {
        self.principal.roles.iter().any(|r| r == role)
    }
}

/// Sessions of this process (a restart signs everyone out).
static SESSIONS: Mutex<Option<HashMap<String, Session>>> = Mutex::new(None);

fn random_hex() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// A new session for `principal`: the cookie header to set, and the
/// session's form token. `secure`: the admin listener serves HTTPS, so the
/// cookie is never sent over plain HTTP.
pub fn open(principal: Principal, secure: bool) -> (String, String) {
    let id = random_hex();
    let csrf = random_hex();
    if let Ok(mut sessions) = SESSIONS.lock() {
        let map = sessions.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Session {
                principal,
                csrf: csrf.clone(),
                draft: Draft::default(),
                expires: now + TTL,
            },
        );
    }
    (
        format!(
            "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}{}",
            TTL.as_secs(),
            if secure { "; Secure" } else { "" }
        ),
        csrf,
    )
}

/// The cookie that ends the session in the browser.
pub fn closed_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0")
}

fn id_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The request's session, if its cookie names a live one.
pub fn current(headers: &HeaderMap) -> Option<Session> {
    let id = id_of(headers)?;
    let sessions = SESSIONS.lock().ok()?;
    let session = sessions.as_ref()?.get(&id)?;
    (session.expires > Instant::now()).then(|| session.clone())
}

/// Change the draft of the request's session under the sessions' lock;
/// the draft as it is after, or `None` without a live session.
pub fn edit_draft(
    headers: &HeaderMap,
    edit: impl FnOnce(&mut Draft) -> Result<(), String>,
) -> Option<Result<Draft, String>> {
    let id = id_of(headers)?;
    let mut sessions = SESSIONS.lock().ok()?;
    let session = sessions.as_mut()?.get_mut(&id)?;
    if session.expires <= Instant::now() {
        return None;
    }
    Some(edit(&mut session.draft).map(|()| session.draft.clone()))
}

/// Replace the draft of the request's session.
pub fn set_draft(headers: &HeaderMap, draft: Draft) {
    let Some(id) = id_of(headers) else { return };
    if let Ok(mut sessions) = SESSIONS.lock()
        && let Some(session) = sessions.as_mut().and_then(|m| m.get_mut(&id))
    {
        session.draft = draft;
    }
}

/// End the request's session.
pub fn close(headers: &HeaderMap) {
    let Some(id) = id_of(headers) else { return };
    if let Ok(mut sessions) = SESSIONS.lock()
        && let Some(map) = sessions.as_mut()
    {
        map.remove(&id);
    }
}

/// Whether a request that changes something came from the console's own
/// pages: its token matches the session's, and the browser does not say
/// it came from another origin. Returns what is wrong, if anything.
pub fn same_origin_with_token(
    headers: &HeaderMap,
    session: &Session,
    token: Option<&str>,
) -> Result<(), &'static str> {
    same_origin(headers)?;
    let sent = token
        .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if sent.is_empty() {
        return Err("the form's token is missing");
    }
    if !constant_time_eq(sent.as_bytes(), session.csrf.as_bytes()) {
        return Err("the form's token does not belong to this session");
    }
    Ok(())
}

/// Whether the browser says the request came from the console's own
/// origin (`Sec-Fetch-Site`, `Origin` against `Host`). Scripts send
/// neither and pass; they must hold the token or the session anyway.
pub fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    // Browsers send Sec-Fetch-Site on every request; scripts may not.
    if let Some(site) = header("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err("the request came from another site's page");
    }
    if let (Some(origin), Some(host)) = (header("origin"), header("host")) {
        if origin == "null" {
            return Err("the request came from an opaque origin");
        }
        let origin_host = origin.split("://").nth(1).unwrap_or(origin);
        if origin_host != host {
            return Err("the request came from another origin");
        }
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
