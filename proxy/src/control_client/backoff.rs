//! The retry schedule after a failed poll: exponential growth with equal jitter.
//!
//! The `n`-th consecutive failure (from 0) has a ceiling of
//! `min(max, initial × multiplier^n)`, and the delay is drawn uniformly from
//! `[ceiling / 2, ceiling]`: never a hammering zero (as full jitter may draw), and
//! a fleet of proxies that lost the control plane at once spreads its retries. With
//! the defaults (250ms, ×2, 30s) the delays are 125–250ms, 250–500ms, … up to
//! 15–30s. Pure: the random draw is passed in, so the schedule is tested without
//! a clock or a runtime.

use std::time::Duration;

use crate::config::BackoffConfig;

/// A backoff schedule's position: how many failures in a row so far.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    /// A schedule at its start.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            failures: 0,
        }
    }

    /// Back to the start, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The ceiling of the delay after `failures` earlier failures in a row.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let initial = self.config.initial.as_secs_f64();
        let max = self.config.max.as_secs_f64();
        // Capped before `powi` can overflow to infinity (f64 handles 2^1000 anyway).
        let grown = initial * self.config.multiplier.powi(failures.min(1000) as i32);
        Duration::from_secs_f64(grown.min(max).max(0.0))
    }

    /// Records one more failure and returns the delay before the next try;
    /// `unit` is a uniform random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling(self.failures);
        self.failures = self.failures.saturating_add(1);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling.mul_f64(0.5 + 0.5 * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Backoff {
        Backoff::new(BackoffConfig {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        })
    }

    #[test]
    fn grows_by_the_multiplier_up_to_the_max() {
        let b = defaults();
        let ceilings: Vec<u64> = (0..10).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn equal_jitter_stays_within_half_and_whole_ceiling() {
        let mut b = defaults();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(125));
        assert_eq!(b.next_delay(1.0), Duration::from_millis(500));
        assert_eq!(b.next_delay(0.5), Duration::from_millis(750));
        assert_eq!(b.failures(), 3);
        // Out-of-range draws are clamped, never a zero or a negative delay.
        assert_eq!(b.next_delay(f64::NAN), Duration::from_millis(1000));
        assert_eq!(b.next_delay(-3.0), Duration::from_millis(2000));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = defaults();
        for _ in 0..20 {
            b.next_delay(0.99);
        }
        assert!(b.next_delay(1.0) <= Duration::from_secs(30));
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(1.0), Duration::from_millis(250));
    }

    #[test]
    fn multiplier_one_is_a_constant_delay() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(1),
            multiplier: 1.0,
        });
        for _ in 0..5 {
            assert_eq!(b.next_delay(1.0), Duration::from_secs(1));
        }
    }
}
