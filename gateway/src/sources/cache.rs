//! A source's response cache (`cache.response_ttl_ms`; off at 0), one for
//! pages and one for counts: answers kept by the whole call (entity, scope,
//! filters, projection, limit, cursor — or the counting query), so an
//! answer is never served to a call with another scope.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Answers kept per source at most; the oldest go first.
const ENTRIES: usize = 1024;

#[derive(Debug)]
pub(super) struct ResponseCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (T, Instant)>>,
}

impl<T: Clone> ResponseCache<T> {
    pub(super) fn new(ttl: Duration) -> Self {
        ResponseCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The key for `call`; `None` when caching is off.
    pub(super) fn key(&self, call: &impl std::fmt::Debug) -> Option<String> {
        (!self.ttl.is_zero()).then(|| format!("{call:?}"))
    }

    /// A fresh answer for `key`.
    pub(super) fn get(&self, key: &str) -> Option<T> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(answer, _)| answer.clone())
    }

    /// Keep `answer` for `key`, dropping stale entries and, when full, the oldest.
    pub(super) fn put(&self, key: String, answer: &T) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let ttl = self.ttl;
        entries.retain(|_, (_, at)| at.elapsed() < ttl);
        if entries.len() >= ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (answer.clone(), Instant::now()));
    }
}
