//! Counts protected as statistical offices protect tables (the cell-key
//! method): for callers who may not list the records behind a count.
//!
//! - **Small cells are suppressed.** A cell whose true count is below
//!   `suppress_below` is published as `suppressed`, whether it holds one
//!   record or none: a zero is never told apart from a small count. Cells
//!   whose existence is public knowledge (divisions of the registry,
//!   values of the grouped field) are listed as suppressed; others are left
//!   out, which a zero would be too.
//! - **Other cells are perturbed, consistently for their records.** A
//!   published count is the true count plus noise drawn uniformly from
//!   `-max_noise..=max_noise` (and never below `suppress_below`). The noise
//!   is a keyed hash (HMAC with the gateway's statistics key) of the
//!   records the cell counts — their resource, their number and their
//!   record digest (the sum of the records' keys, contract 0.3) — and of
//!   nothing else: not the query's filters, their order or form, not the
//!   cell's label. Any query over the same records gets the same noise,
//!   however it is phrased (padded with empty categories, a tautology, a
//!   permuted list, the cell alone or as one of many), so asking again in
//!   another form buys no fresh draw to average; differencing two
//!   different record sets leaves the difference of independent noises
//!   (the statistical offices' cell-key method: ABS TableBuilder; Asghar &
//!   Kaafar, PETS 2020).
//!
//! Parameters are in `[statistics]` of `lianqiao.toml`; docs/policy.md
//! states the method and what it bounds.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What one cell publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Value(i64),
    Suppressed,
}

/// The counting protection: its parameters and key.
#[derive(Clone)]
pub struct Protection {
    pub suppress_below: u64,
    pub max_noise: u32,
    key: Vec<u8>,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protection")
            .field("suppress_below", &self.suppress_below)
            .field("max_noise", &self.max_noise)
            .finish_non_exhaustive()
    }
}

impl Protection {
    pub fn new(suppress_below: u64, max_noise: u32, key: &[u8]) -> Self {
        Protection {
            suppress_below,
            max_noise,
            key: key.to_vec(),
        }
    }

    /// The noise of the cell with `identity`: uniform in
    /// `-max_noise..=max_noise`, the same every time.
    pub fn noise(&self, identity: &str) -> i64 {
        if self.max_noise == 0 {
            return 0;
        }
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return 0;
        };
        mac.update(identity.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[..8]);
        let span = 2 * u64::from(self.max_noise) + 1;
        // A 64-bit draw modulo a span of a few values: the bias is below 2^-60.
        (u64::from_le_bytes(word) % span) as i64 - i64::from(self.max_noise)
    }

    /// What a cell of `resource` counting `count` records whose keys sum
    /// to `digest` publishes.
    pub fn publish_records(&self, resource: &str, count: i64, digest: u64) -> Published {
        self.publish(count, &format!("{resource}|{count}|{digest:016x}"))
    }

    /// What a cell with `count` true records and `identity` publishes.
    fn publish(&self, count: i64, identity: &str) -> Published {
        if count < self.suppress_below as i64 {
            return Published::Suppressed;
        }
        let floor = self.suppress_below.max(1) as i64;
        Published::Value((count + self.noise(identity)).max(floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_cells_and_zeros_are_suppressed_alike() {
        let p = Protection::new(5, 2, b"k");
        for n in 0..5 {
            assert_eq!(p.publish(n, "c"), Published::Suppressed, "{n}");
        }
        assert!(matches!(p.publish(5, "c"), Published::Value(v) if v >= 5));
    }

    #[test]
    fn the_same_records_publish_the_same_value_other_records_another() {
        let p = Protection::new(5, 3, b"k");
        let v = p.publish_records("members", 263, 0xfeed);
        assert_eq!(v, p.publish_records("members", 263, 0xfeed));
        let others = (0..50)
            .filter(|d| p.publish_records("members", 263, *d) != v)
            .count();
        assert!(others > 30, "another record set is another draw: {others}");
        assert_eq!(
            p.publish_records("members", 4, 0xfeed),
            Published::Suppressed
        );
    }

    #[test]
    fn noise_is_consistent_bounded_and_spread() {
        let p = Protection::new(5, 2, b"k");
        assert_eq!(
            p.noise("members|150103|gender=male"),
            p.noise("members|150103|gender=male")
        );
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..5000 {
            let n = p.noise(&format!("cell {i}"));
            assert!((-2..=2).contains(&n));
            *seen.entry(n).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 5, "every value occurs: {seen:?}");
        assert!(
            seen.values().all(|&c| (850..1150).contains(&c)),
            "uniform: {seen:?}"
        );
        let other = Protection::new(5, 2, b"other key");
        let differ = (0..100)
            .filter(|i| p.noise(&format!("cell {i}")) != other.noise(&format!("cell {i}")))
            .count();
        assert!(differ > 50, "the key decides the noise");
    }
}
