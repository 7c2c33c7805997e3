//! A circuit breaker per source: after consecutive failures the source is
//! not called at all for a cool-down (its answer is `circuit_open` at once,
//! instead of every request waiting out its deadline); then one probe is let
//! through, and its outcome closes or re-opens the circuit.
//!
//! Admission is a [`Permit`] that records the call's verdict. A probe's
//! permit dropped without one (the caller went away, a deadline cancelled
//! the call) counts as a failure, so the circuit can never stay half-open
//! waiting for a verdict that will not come.

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

/// Leave to call the source once; give it the call's verdict.
#[must_use = "a permit records the call's outcome"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// The one call let through a half-open circuit.
    probe: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// Record the call's outcome.
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        self.breaker.record(success);
    }

    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe that never returned says nothing good about the source.
        if self.probe && !self.recorded {
            self.breaker.record(false);
        }
    }
}

impl Breaker {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Breaker {
            failures_to_open: failures_to_open.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// A permit to call now, or how long until the circuit may let a
    /// probe through.
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        let permit = |probe| Permit {
            breaker: self,
            probe,
            recorded: false,
        };
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        match *state {
            State::Closed { .. } => Ok(permit(false)),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Ok(permit(true))
                } else {
                    Err(until - now)
                }
            }
            State::HalfOpen => Err(Duration::ZERO),
        }
    }

    /// Record a call's outcome (only calls that were admitted).
    fn record(&self, success: bool) {
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

    fn call(b: &Breaker, success: bool) {
        b.admit().expect("admitted").record(success);
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            call(&b, false);
        }
        assert_eq!(b.state(), "closed");
        call(&b, false);
        assert_eq!(b.state(), "open");
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.admit().expect("one probe after the cool-down");
        assert!(probe.is_probe());
        assert!(b.admit().is_err(), "only one");
        probe.record(false);
        assert_eq!(b.state(), "open", "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(40));
        call(&b, true);
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        call(&b, false);
        call(&b, true);
        call(&b, false);
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn a_cancelled_probe_reopens_the_circuit_instead_of_leaving_it_half_open() {
        let b = Breaker::new(1, Duration::from_millis(20));
        call(&b, false);
        std::thread::sleep(Duration::from_millis(30));
        let probe = b.admit().expect("probe");
        assert_eq!(b.state(), "half_open");
        drop(probe); // the caller went away before the source answered
        assert_eq!(b.state(), "open", "counted as a failure");
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            b.admit().is_ok(),
            "and a new probe comes after the cool-down"
        );
    }

    #[test]
    fn an_ordinary_call_dropped_without_a_verdict_counts_nothing() {
        let b = Breaker::new(1, Duration::from_secs(60));
        drop(b.admit().expect("closed"));
        assert_eq!(b.state(), "closed");
    }
}
