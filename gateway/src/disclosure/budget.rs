//! Statistics budgets per principal: a token bucket of `burst` queries
//! refilled at `queries_per_hour`, charged for what a caller learns.
//!
//! Differencing needs many *distinct* record sets (margins, cells,
//! neighbouring divisions, overlapping filters); a budget bounds how many
//! one caller can gather, and a spent one answers 429 `rate_limited` with
//! `Retry-After`. A query whose answer the caller already has — the same
//! cells over the same record sets, however the query was phrased
//! (protected values are drawn from the records, `protect.rs`) — teaches
//! it nothing and takes nothing from the budget. A spent budget still
//! refuses every query before it runs, repeats included: answering
//! repeats only would tell a spent caller which reformulations count the
//! same records as an earlier answer (e.g. that a category it padded a
//! filter with is empty there). The gateway remembers answers it released
//! (their fingerprints, up to `REMEMBERED_ANSWERS` across callers); a
//! forgotten one costs again, which only ever errs against the caller.
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

/// Answers remembered across callers (a fingerprint each, ~100 bytes with
/// the cache's own bookkeeping: ~20 MiB at most).
const REMEMBERED_ANSWERS: u64 = 200_000;

/// What a charge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// A new answer: one query taken from the budget.
    Spent,
    /// An answer this caller already has: free.
    Repeat,
}

pub struct Budgets {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// (principal, answer fingerprint) of answers released.
    answered: moka::sync::Cache<(String, u64), ()>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("burst", &self.burst)
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

impl Budgets {
    pub fn new(burst: u32, per_hour: u32) -> Self {
        Budgets {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_hour) / 3600.0,
            buckets: Mutex::new(HashMap::new()),
            answered: moka::sync::Cache::new(REMEMBERED_ANSWERS),
        }
    }

    /// Whether `principal` has a query left (or how long until it has),
    /// without taking it: checked before a query runs.
    pub fn available(&self, principal: &str) -> Result<(), Duration> {
        self.take(principal, Instant::now(), 0.0)
    }

    /// Charge `principal` for an answer with this fingerprint: free when
    /// it has had this answer before, else one query from its budget (or
    /// how long until one is back).
    pub fn charge(&self, principal: &str, answer: u64) -> Result<Charge, Duration> {
        let key = (principal.to_string(), answer);
        if self.answered.contains_key(&key) {
            return Ok(Charge::Repeat);
        }
        self.spend_at(principal, Instant::now())?;
        self.answered.insert(key, ());
        Ok(Charge::Spent)
    }

    fn spend_at(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        self.take(principal, now, 1.0)
    }

    /// Refill `principal`'s bucket to `now`; with at least one query in it,
    /// take `cost` (0 or 1) and answer Ok.
    fn take(&self, principal: &str, now: Instant, cost: f64) -> Result<(), Duration> {
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
            bucket.tokens -= cost;
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

    #[test]
    fn an_answer_the_caller_has_costs_nothing_a_new_one_costs_one() {
        let b = Budgets::new(2, 0);
        assert_eq!(b.charge("city", 1), Ok(Charge::Spent));
        for _ in 0..10 {
            assert_eq!(b.charge("city", 1), Ok(Charge::Repeat));
        }
        assert_eq!(b.charge("city", 2), Ok(Charge::Spent));
        assert!(
            b.available("city").is_err(),
            "a spent budget is refused up front"
        );
        assert!(
            b.charge("city", 3).is_err(),
            "the budget bounds new answers"
        );
        assert_eq!(
            b.charge("city", 2),
            Ok(Charge::Repeat),
            "a repeat costs nothing"
        );
        // Another caller's answers are not this one's.
        assert_eq!(b.charge("region", 1), Ok(Charge::Spent));
    }
}
