//! The failure-rate breaker's rolling window: ten buckets, each one `AtomicU64`
//! packing the bucket's tick (24 bits), requests and failures (20 bits each),
//! updated by compare-and-swap, so recording an outcome takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::FailureRateConfig;
use crate::time::Instant;

/// Buckets of the rolling failure-rate window.
const BUCKETS: u64 = 10;
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TICK_MASK: u64 = (1 << 24) - 1;

/// A rolling window of request and failure counts: ten buckets, each one
/// `AtomicU64` packing the bucket's tick (24 bits), requests and failures
/// (20 bits each), updated by compare-and-swap.
pub(super) struct Window {
    bucket_nanos: u64,
    buckets: [AtomicU64; BUCKETS as usize],
    threshold_percent: u64,
    min_requests: u64,
}

impl Window {
    pub(super) fn new(config: &FailureRateConfig) -> Self {
        let nanos = u64::try_from(config.window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            bucket_nanos: (nanos / BUCKETS).max(1),
            buckets: Default::default(),
            threshold_percent: u64::from(config.threshold_percent),
            min_requests: u64::from(config.min_requests),
        }
    }

    pub(super) fn tick(&self, epoch: Instant, now: Instant) -> u64 {
        let nanos = u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(0);
        (nanos / self.bucket_nanos) & TICK_MASK
    }

    fn bucket(&self, tick: u64) -> Option<&AtomicU64> {
        self.buckets
            .get(usize::try_from(tick % BUCKETS).unwrap_or(0))
    }

    pub(super) fn record(&self, tick: u64, failed: bool) {
        let Some(slot) = self.bucket(tick) else {
            return;
        };
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (t, requests, failures) = unpack(current);
            let (requests, failures) = if t == tick {
                (requests, failures)
            } else {
                (0, 0)
            };
            if requests >= COUNT_MAX {
                return;
            }
            let next = pack(tick, requests + 1, failures + u64::from(failed));
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Requests and failures over the buckets that belong to the window ending at `tick`.
    pub(super) fn totals(&self, tick: u64) -> (u64, u64) {
        self.buckets.iter().fold((0, 0), |(r, f), b| {
            let (t, requests, failures) = unpack(b.load(Ordering::Relaxed));
            if tick.wrapping_sub(t) & TICK_MASK < BUCKETS {
                (r + requests, f + failures)
            } else {
                (r, f)
            }
        })
    }

    pub(super) fn over_threshold(&self, tick: u64) -> bool {
        let (requests, failures) = self.totals(tick);
        requests >= self.min_requests.max(1) && failures * 100 >= self.threshold_percent * requests
    }

    pub(super) fn reset(&self) {
        for b in &self.buckets {
            // Tick 0 with zero counts: harmless whatever the current tick.
            b.store(0, Ordering::Relaxed);
        }
    }
}

fn pack(tick: u64, requests: u64, failures: u64) -> u64 {
    ((tick & TICK_MASK) << (2 * COUNT_BITS)) | (requests << COUNT_BITS) | failures.min(COUNT_MAX)
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn window_counts_pack_and_saturate() {
        let w = Window::new(&FailureRateConfig {
            threshold_percent: 50,
            window: Duration::from_secs(1),
            min_requests: 1,
        });
        w.record(3, true);
        w.record(3, false);
        w.record(4, false);
        assert_eq!(w.totals(4), (3, 1));
        assert_eq!(w.totals(13), (1, 0), "tick 3 has left the window");
        assert_eq!(w.totals(14), (0, 0));
        w.reset();
        assert_eq!(w.totals(4), (0, 0));
    }
}
