//! Retries of idempotent reads, with a budget: each first attempt deposits
//! a fifth of a token (up to 10), each retry spends one, so retries add at
//! most ~20 % load to a struggling source instead of multiplying it.

use std::sync::Mutex;

use lianqiao_host::PluginError;
use lianqiao_host::contract::SourceError;

const DEPOSIT: f64 = 0.2;
const MAX_TOKENS: f64 = 10.0;

#[derive(Debug)]
pub struct RetryBudget(Mutex<f64>);

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget(Mutex::new(MAX_TOKENS))
    }
}

impl RetryBudget {
    /// A first attempt was made.
    pub fn deposit(&self) {
        if let Ok(mut t) = self.0.lock() {
            *t = (*t + DEPOSIT).min(MAX_TOKENS);
        }
    }

    /// May we retry? Spends a token when yes.
    pub fn withdraw(&self) -> bool {
        match self.0.lock() {
            Ok(mut t) if *t >= 1.0 => {
                *t -= 1.0;
                true
            }
            _ => false,
        }
    }
}

/// Failures worth one more try: the upstream was unreachable or answered
/// an error. Not deadlines or a share that stayed busy for one (the time
/// is gone), traps, limits, contract breaks, refusals or an open circuit.
pub fn is_transient(error: &PluginError) -> bool {
    matches!(
        error,
        PluginError::Source(SourceError::UpstreamUnavailable(_) | SourceError::UpstreamError(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refills_a_fifth_per_call() {
        let b = RetryBudget::default();
        for _ in 0..10 {
            assert!(b.withdraw());
        }
        assert!(!b.withdraw(), "spent");
        for _ in 0..4 {
            b.deposit();
        }
        assert!(!b.withdraw(), "0.8 of a token is not enough");
        b.deposit();
        assert!(b.withdraw());
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(is_transient(&PluginError::Source(
            SourceError::UpstreamUnavailable("x".into())
        )));
        assert!(!is_transient(&PluginError::Deadline { deadline_ms: 1 }));
        assert!(!is_transient(&PluginError::Trap("x".into())));
        assert!(!is_transient(&PluginError::Source(SourceError::Denied(
            "x".into()
        ))));
    }
}
