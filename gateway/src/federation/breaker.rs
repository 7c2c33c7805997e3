//! A circuit breaker per source: after consecutive failures the source is
//! not called at all for a cool-down (its answer is `circuit_open` at once,
//! instead of every request waiting out its deadline); then one probe is let
//! through, and its outcome closes or re-opens the circuit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else waits for its outcome.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

/// What the breaker says about calling the source now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Call,
    /// Rejected; the circuit may let a probe through after this long.
    Rejected {
        retry_in: Duration,
    },
}

impl Breaker {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn admit(&self) -> Admission {
        let Ok(mut state) = self.state.lock() else {
            return Admission::Call;
        };
        match *state {
            State::Closed { .. } => Admission::Call,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Admission::Call
                } else {
                    Admission::Rejected {
                        retry_in: until - now,
                    }
                }
            }
            State::HalfOpen => Admission::Rejected {
                retry_in: Duration::ZERO,
            },
        }
    }

    /// Record a call's outcome (only calls that were admitted).
    pub fn record(&self, success: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures_to_open => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    /// `closed`, `open` or `half_open`, for `/readyz`.
    pub fn state(&self) -> &'static str {
        match self.state.lock().map(|s| *s) {
            Ok(State::Closed { .. }) | Err(_) => "closed",
            Ok(State::Open { until }) if Instant::now() >= until => "half_open",
            Ok(State::Open { .. }) => "open",
            Ok(State::HalfOpen) => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            assert_eq!(b.admit(), Admission::Call);
            b.record(false);
        }
        assert_eq!(b.state(), "closed");
        b.record(false);
        assert_eq!(b.state(), "open");
        assert!(matches!(b.admit(), Admission::Rejected { .. }));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Call, "one probe after the cool-down");
        assert!(matches!(b.admit(), Admission::Rejected { .. }), "only one");
        b.record(false);
        assert_eq!(b.state(), "open", "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Call);
        b.record(true);
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.record(false);
        b.record(true);
        b.record(false);
        assert_eq!(b.state(), "closed");
    }
}
