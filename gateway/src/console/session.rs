//! Signing in: an operator's token (or client certificate) is exchanged
//! once for a short-lived session cookie (`HttpOnly`, `SameSite=Strict`,
//! scoped to `/console`), so the browser never holds the token and no
//! other site can ride the session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use lianqiao_policy::Principal;

/// The role a principal needs for the console.
pub const CONSOLE_ROLE: &str = "policy-admin";
/// The cookie's name.
pub const COOKIE: &str = "lianqiao_console";
/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(30 * 60);

/// Sessions of this process (a restart signs everyone out).
static SESSIONS: Mutex<Option<HashMap<String, (Principal, Instant)>>> = Mutex::new(None);

/// A new session for `principal`; the cookie header to set.
pub fn open(principal: Principal) -> String {
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let id = hex::encode(raw);
    if let Ok(mut sessions) = SESSIONS.lock() {
        let map = sessions.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        map.retain(|_, (_, expires)| *expires > now);
        map.insert(id.clone(), (principal, now + TTL));
    }
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
        TTL.as_secs()
    )
}

/// The principal of the request's session cookie, if it is live.
pub fn current(headers: &HeaderMap) -> Option<Principal> {
    let id = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())?;
    let sessions = SESSIONS.lock().ok()?;
    let (principal, expires) = sessions.as_ref()?.get(&id)?;
    (*expires > Instant::now()).then(|| principal.clone())
}
