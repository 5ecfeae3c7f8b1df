//! How much room the admission queue has while it is standing, and how long it
//! takes to drain: pure arithmetic over the limit and the smoothed latency.
//!
//! Slots free at `limit / rtt` per second. A standing queue holds what the limit
//! serves in [`STANDING_HORIZON`], and the queue's drain time (the standing test
//! that needs no interval, and `Retry-After`) is its depth at that rate.

use std::time::Duration;

/// How much work a standing queue holds: what the limit serves in this long.
const STANDING_HORIZON: f64 = 0.001;

/// The shortest and the longest `Retry-After` a shed request is given, in seconds.
const RETRY_AFTER_BOUNDS: (f64, f64) = (1.0, 10.0);

/// The most waiters a standing queue holds: as many as the limit serves within
/// [`STANDING_HORIZON`] (slots free at `limit / rtt` per second), at least 1;
/// 1 before any latency is measured (`rtt` 0). Enough that a freed slot finds a
/// waiter (and the limit's headroom keeps the app busy when, for a moment, it
/// does not); few enough that every waiter is served within about a
/// millisecond, so that an arrival the queue has no room for can be refused at
/// once instead of waiting to be superseded. (Under the README's burst the room
/// of an eighth of the limit, with drop-oldest, had 28% of the rejections wait
/// 1–2 ms in the queue before they were answered: arrivals come in clumps, and a
/// waiter was superseded only by the next clump.)
pub fn standing_room(limit: usize, rtt: f64) -> usize {
    if rtt <= 0.0 {
        return 1;
    }
    let room = (limit as f64 * STANDING_HORIZON / rtt).ceil();
    // Bounded by the limit itself: the cast cannot overflow.
    (room.min(limit as f64) as usize).max(1)
}

/// How long a queue of `depth` waiters takes to drain at `limit` and a smoothed
/// latency of `rtt` seconds, in seconds (0 before any latency is measured):
/// depth × RTT ÷ limit.
pub fn drain_time(depth: usize, limit: usize, rtt: f64) -> f64 {
    depth as f64 * rtt / limit.max(1) as f64
}

/// How long a shed client should wait before trying again: the time to drain the
/// queue and serve one more, `(depth + 1) × RTT ÷ limit`, at least 1 s, at most 10 s.
pub fn retry_after(depth: usize, limit: usize, rtt: f64) -> Duration {
    let (lo, hi) = RETRY_AFTER_BOUNDS;
    Duration::from_secs_f64(drain_time(depth.saturating_add(1), limit, rtt).clamp(lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_queue_holds_what_the_limit_serves_in_a_millisecond() {
        // 32 slots of 8 ms free 4 per millisecond.
        assert_eq!(standing_room(32, 0.008), 4);
        assert_eq!(standing_room(20, 0.012), 2, "1.7 rounds up");
        // A slow app or a small limit: one waiter; no latency measured yet: one.
        assert_eq!(standing_room(4, 0.2), 1);
        assert_eq!(standing_room(32, 0.0), 1);
        // A very fast app: never more than the limit.
        assert_eq!(standing_room(8, 0.000_01), 8);
    }

    #[test]
    fn the_drain_time_is_the_depth_at_the_rate_slots_free() {
        // 16 slots of 10 ms free 1.6 per millisecond: 160 waiters take 100 ms.
        assert!((drain_time(160, 16, 0.010) - 0.1).abs() < 1e-12);
        assert_eq!(drain_time(0, 16, 0.010), 0.0);
        // No latency measured yet: nothing to drain by.
        assert_eq!(drain_time(500, 16, 0.0), 0.0);
        // A limit of 0 is read as 1.
        assert!((drain_time(3, 0, 0.5) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn retry_after_is_the_drain_time_within_one_and_ten_seconds() {
        assert_eq!(retry_after(0, 16, 0.010), Duration::from_secs(1));
        // 399 waiters + 1 at 2 per second: 200 s, capped at 10.
        assert_eq!(retry_after(399, 1, 0.5), Duration::from_secs(10));
        // 5 + 1 waiters of 1 s on 2 slots: 3 s.
        assert_eq!(retry_after(5, 2, 1.0), Duration::from_secs(3));
    }
}
