//! Capped exponential backoff with full jitter.
//!
//! Delay `n` (0-based) is drawn uniformly from `[initial/2, min(max, initial * 2^n)]`: exponential
//! so a dead broker is not hammered, capped so recovery is noticed soon, jittered so that many
//! gateways do not retry in lockstep. The random source is injected (a seeded RNG in tests).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Backoff state: the next delay grows until [`Backoff::reset`].
#[derive(Debug)]
pub struct Backoff<R = SmallRng> {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: R,
}

impl Backoff<SmallRng> {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff::with_rng(initial, max, SmallRng::from_os_rng())
    }
}

impl<R: Rng> Backoff<R> {
    pub fn with_rng(initial: Duration, max: Duration, rng: R) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.initial / 2).min(ceiling);
        let span = (ceiling - floor).as_micros() as u64;
        floor + Duration::from_micros(self.rng.random_range(0..=span))
    }

    /// After a success: start again from the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(seed: u64) -> Backoff<SmallRng> {
        Backoff::with_rng(
            Duration::from_millis(100),
            Duration::from_secs(5),
            SmallRng::seed_from_u64(seed),
        )
    }

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_stay_capped() {
        let mut b = backoff(7);
        for n in 0..40u32 {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
                .min(Duration::from_secs(5));
            assert!(
                d >= Duration::from_millis(50) && d <= ceiling,
                "attempt {n}: {d:?}"
            );
        }
    }

    #[test]
    fn reset_starts_over_and_same_seed_gives_same_delays() {
        let (mut a, mut b) = (backoff(1), backoff(1));
        let xs: Vec<_> = (0..10).map(|_| a.next_delay()).collect();
        let ys: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert_eq!(xs, ys);
        a.reset();
        assert!(a.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut b = backoff(seed);
            b.next_delay();
            b.next_delay();
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 10, "{seen:?}");
    }
}
