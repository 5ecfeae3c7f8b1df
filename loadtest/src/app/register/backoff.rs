//! The retry schedule of the registration agent: jittered exponential backoff,
//! pure (the random draw is passed in), so it is tested without a runtime.

use std::time::Duration;

/// First retry delay after a failure.
pub const INITIAL: Duration = Duration::from_millis(200);
/// Longest delay between two attempts (the agent also caps it at its heartbeat).
pub const MAX: Duration = Duration::from_secs(5);

/// Exponential backoff with "equal jitter": the n-th delay is drawn uniformly from
/// `[d/2, d]` where `d = min(cap, initial * 2^n)`, so retries spread out but never
/// come faster than half the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule from `initial`, doubling up to `cap` (at least `initial`).
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap: cap.max(initial),
            failures: 0,
        }
    }

    /// The delay before the next attempt after one more failure; `unit` is a random
    /// draw in `[0, 1)` (clamped), which places it within `[d/2, d]`.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let d = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        d / 2 + d.mul_f64(unit / 2.0)
    }

    /// The upper bound of the next delay, without consuming it.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_cap_within_the_jitter_band() {
        let mut b = Backoff::new(ms(200), ms(1000));
        let ceilings: Vec<Duration> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let lo = b.clone().next_delay(0.0);
                let hi = b.next_delay(1.0);
                assert_eq!((lo, hi), (c / 2, c));
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            vec![ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]
        );
    }

    #[test]
    fn reset_starts_over_and_bad_draws_are_clamped() {
        let mut b = Backoff::new(ms(100), ms(10_000));
        for _ in 0..5 {
            b.next_delay(0.5);
        }
        assert_eq!(b.failures(), 5);
        b.reset();
        assert_eq!(b.ceiling(), ms(100));
        assert_eq!(b.clone().next_delay(f64::NAN), ms(50));
        assert_eq!(b.next_delay(7.0), ms(100));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::new(INITIAL, MAX);
        for _ in 0..1000 {
            assert!(b.next_delay(0.99) <= MAX);
        }
        assert_eq!(b.ceiling(), MAX);
    }

    #[test]
    fn a_cap_below_initial_is_raised_to_initial() {
        let b = Backoff::new(ms(500), ms(10));
        assert_eq!(b.ceiling(), ms(500));
    }
}
