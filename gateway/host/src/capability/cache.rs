//! `cache`: a bounded key-value store per source, kept by the host.
//!
//! Instances are fresh on every call, so a plugin keeps nothing between
//! calls by itself; this is where it may (a sorted snapshot of an upstream
//! that cannot sort, a token it may not see is not one of them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bindings::v1::lianqiao::source::cache::Host;
use crate::state::HostState;

/// One source's cache, capped in bytes; expired entries go first, then the
/// entries closest to expiry.
#[derive(Debug)]
pub struct SourceCache {
    max_bytes: usize,
    entries: Mutex<HashMap<String, (Vec<u8>, Instant)>>,
}

impl SourceCache {
    pub fn new(max_bytes: usize) -> Self {
        SourceCache {
            max_bytes,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(v, _)| v.clone())
    }

    pub fn set(&self, key: String, value: Vec<u8>, ttl: Duration) {
        if value.len() > self.max_bytes {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        entries.remove(&key);
        let mut used: usize = entries.values().map(|(v, _)| v.len()).sum();
        while used + value.len() > self.max_bytes {
            let Some(victim) = entries
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((v, _)) = entries.remove(&victim) {
                used -= v.len();
            }
        }
        entries.insert(key, (value, now + ttl));
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.grants.cache.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) -> wasmtime::Result<()> {
        self.grants
            .cache
            .set(key, value, Duration::from_millis(u64::from(ttl_ms)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_stays_within_its_cap() {
        let cache = SourceCache::new(10);
        cache.set("a".into(), vec![1; 6], Duration::from_secs(60));
        assert_eq!(cache.get("a"), Some(vec![1; 6]));
        cache.set("b".into(), vec![2; 6], Duration::from_secs(120));
        assert_eq!(cache.get("a"), None, "evicted to make room");
        assert_eq!(cache.get("b"), Some(vec![2; 6]));
        cache.set("big".into(), vec![0; 11], Duration::from_secs(60));
        assert_eq!(cache.get("big"), None, "larger than the cap: not kept");
        cache.set("c".into(), vec![3], Duration::from_millis(0));
        assert_eq!(cache.get("c"), None, "expired");
    }
}
