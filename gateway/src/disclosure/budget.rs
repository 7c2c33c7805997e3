//! Statistics budgets per principal: a token bucket of `burst` queries
//! refilled at `queries_per_hour`. Differencing needs many distinct
//! queries (margins, cells, neighbouring divisions, overlapping filters);
//! a budget bounds what one caller can gather, and a spent one answers 429
//! `rate_limited` with `Retry-After`.
//!
//! Kept in memory per process: replicas each grant a budget of their own
//! (N replicas behind one balancer allow N times the rate).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept at most; past this, the full ones (idle callers) go.
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug)]
pub struct Budgets {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Budgets {
    pub fn new(burst: u32, per_hour: u32) -> Self {
        Budgets {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_hour) / 3600.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one query from `principal`'s budget, or say how long until one
    /// is back.
    pub fn spend(&self, principal: &str) -> Result<(), Duration> {
        self.spend_at(principal, Instant::now())
    }

    fn spend_at(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(principal) {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(principal.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        } else {
            Err(Duration::from_secs(3600))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let b = Budgets::new(3, 3600); // one a second
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.spend_at("a", t0).is_ok());
        }
        let wait = b.spend_at("a", t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        assert!(b.spend_at("b", t0).is_ok(), "budgets are per principal");
        assert!(b.spend_at("a", t0 + Duration::from_millis(1100)).is_ok());
        assert!(b.spend_at("a", t0 + Duration::from_millis(1200)).is_err());
    }
}
