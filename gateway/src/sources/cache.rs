//! A source's response cache (`cache.response_ttl_ms`; off at 0), one for
//! pages and one for counts: answers kept by the whole call (entity, scope,
//! filters, projection, limit, cursor — or the counting query), so an
//! answer is never served to a call with another scope.
//!
//! Whether or not answers are kept, identical calls **in flight** share one
//! plugin call (request coalescing): the first leads, the others wait for
//! its outcome. Sixteen clients asking the same count of a source whose
//! snapshot is cold then cost one upstream fetch, not sixteen racing each
//! other past the deadline into an open breaker. A leader that gives up
//! (its request cancelled) releases the followers to call for themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lianqiao_host::PluginError;
use tokio::sync::watch;

type Outcome<T> = Option<Result<T, PluginError>>;

/// Answers kept per source at most; the oldest go first.
const ENTRIES: usize = 1024;

#[derive(Debug)]
pub(super) struct ResponseCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (T, Instant)>>,
    in_flight: Mutex<HashMap<String, watch::Receiver<Outcome<T>>>>,
}

/// A call's place among identical calls in flight.
pub(super) enum Flight<'a, T> {
    /// No identical call is in flight: make it, then [`Lead::land`].
    Lead(Lead<'a, T>),
    /// One is: wait for its outcome with [`follow`].
    Follow(watch::Receiver<Outcome<T>>),
}

/// The call the identical ones wait for; dropping it (landed or not) lets
/// the next identical call lead.
pub(super) struct Lead<'a, T> {
    cache: &'a ResponseCache<T>,
    key: String,
    outcome: watch::Sender<Outcome<T>>,
}

impl<T> Lead<'_, T> {
    /// Hand the outcome to every follower.
    pub(super) fn land(self, outcome: &Result<T, PluginError>)
    where
        T: Clone,
    {
        self.outcome.send_replace(Some(outcome.clone()));
    }
}

impl<T> Drop for Lead<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.cache.in_flight.lock() {
            in_flight.remove(&self.key);
        }
    }
}

/// The leader's outcome; `None` if it gave up without one.
pub(super) async fn follow<T: Clone>(
    mut leader: watch::Receiver<Outcome<T>>,
) -> Option<Result<T, PluginError>> {
    loop {
        if let Some(outcome) = leader.borrow_and_update().clone() {
            return Some(outcome);
        }
        if leader.changed().await.is_err() {
            return leader.borrow().clone();
        }
    }
}

impl<T: Clone> ResponseCache<T> {
    pub(super) fn new(ttl: Duration) -> Self {
        ResponseCache {
            ttl,
            entries: Mutex::default(),
            in_flight: Mutex::default(),
        }
    }

    /// The key for `call`: every field of it, scope included.
    pub(super) fn key(&self, call: &impl std::fmt::Debug) -> String {
        format!("{call:?}")
    }

    /// Lead the call `key`, or follow the identical one in flight.
    pub(super) fn join(&self, key: &str) -> Option<Flight<'_, T>> {
        let mut in_flight = self.in_flight.lock().ok()?;
        if let Some(leader) = in_flight.get(key) {
            return Some(Flight::Follow(leader.clone()));
        }
        let (outcome, leader) = watch::channel(None);
        in_flight.insert(key.to_string(), leader);
        Some(Flight::Lead(Lead {
            cache: self,
            key: key.to_string(),
            outcome,
        }))
    }

    /// A fresh answer for `key` (none when caching is off).
    pub(super) fn get(&self, key: &str) -> Option<T> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(answer, _)| answer.clone())
    }

    /// Keep `answer` for `key`, dropping stale entries and, when full, the oldest.
    pub(super) fn put(&self, key: String, answer: &T) {
        if self.ttl.is_zero() {
            return;
        }
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
