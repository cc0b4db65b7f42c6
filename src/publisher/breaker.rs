//! A circuit breaker as a pure state machine: time is passed in, never read.
//!
//! ```text
//!   Closed ──(threshold consecutive failures)──▶ Open ──(cool-down elapsed)──▶ HalfOpen
//!     ▲                                           ▲                              │
//!     └──────────────(probe succeeds)─────────────┼──────────────────────────────┤
//!                                                 └───────(probe fails)──────────┘
//! ```
//!
//! While open, [`Breaker::permits`] refuses calls, so a dead broker is not hammered and no
//! request waits on it. After the cool-down one probe is let through (half-open).

use std::time::{Duration, Instant};

pub use crate::delivery::Circuit;

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            opened_at: None,
            probing: false,
        }
    }

    pub fn state(&self, now: Instant) -> Circuit {
        match self.opened_at {
            None => Circuit::Closed,
            Some(_) if self.probing => Circuit::HalfOpen,
            Some(at) if now.duration_since(at) >= self.cooldown => Circuit::HalfOpen,
            Some(_) => Circuit::Open,
        }
    }

    /// May a call go out now? In half-open state this admits the single probe.
    pub fn permits(&mut self, now: Instant) -> bool {
        match self.state(now) {
            Circuit::Closed => true,
            Circuit::Open => false,
            Circuit::HalfOpen if self.probing => false,
            Circuit::HalfOpen => {
                self.probing = true;
                true
            }
        }
    }

    /// When the next probe will be admitted, if the breaker is open.
    pub fn retry_at(&self) -> Option<Instant> {
        self.opened_at.map(|at| at + self.cooldown)
    }

    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.probing = false;
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.probing || self.failures >= self.threshold {
            self.opened_at = Some(now);
            self.probing = false;
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, COOL);
        b.on_failure(t0);
        b.on_failure(t0);
        b.on_success();
        b.on_failure(t0);
        b.on_failure(t0);
        assert_eq!(b.state(t0), Circuit::Closed, "a success resets the count");
        b.on_failure(t0);
        assert_eq!(b.state(t0), Circuit::Open);
        assert!(!b.permits(t0 + COOL / 2));
    }

    #[test]
    fn half_open_admits_one_probe_after_the_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.on_failure(t0);
        assert_eq!(b.retry_at(), Some(t0 + COOL));
        let later = t0 + COOL;
        assert_eq!(b.state(later), Circuit::HalfOpen);
        assert!(b.permits(later), "the probe");
        assert!(!b.permits(later), "only one probe at a time");
        b.on_success();
        assert_eq!(b.state(later), Circuit::Closed);
        assert!(b.permits(later));
    }

    #[test]
    fn failed_probe_reopens_for_a_full_cooldown() {
        let t0 = Instant::now();
        let mut b = Breaker::new(5, COOL);
        for _ in 0..5 {
            b.on_failure(t0);
        }
        let probe_at = t0 + COOL;
        assert!(b.permits(probe_at));
        b.on_failure(probe_at);
        assert_eq!(b.state(probe_at + COOL / 2), Circuit::Open);
        assert_eq!(b.state(probe_at + COOL), Circuit::HalfOpen);
    }
}
