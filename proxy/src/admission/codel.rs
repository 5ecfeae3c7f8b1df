//! When is the admission queue *standing*? CoDel's test, applied to a queue of
//! requests: pure state over explicit instants, no runtime.
//!
//! The **queueing delay** is the age of the oldest live waiter (the wait a FIFO
//! queue imposes on its head now; 0 when the queue is empty). Following CoDel
//! (Nichols & Jacobson, 2012) the queue is *standing* once that delay has stayed
//! at or above `target` for a whole `interval`, i.e. its minimum over the
//! interval exceeded the target: a burst the app absorbs within an interval is
//! queued, a backlog that does not drain is not. It stops standing once the queue
//! has been empty for a whole `interval` (Fail at Scale's "the queue was last
//! empty more than N ms ago"). Not at the first empty moment: a standing queue is
//! kept short (see `mod.rs`), so under overload it empties now and then between
//! two arrivals, and ending the episode there would make every arrival wait
//! FIFO for another interval before the queue stood again. A threshold on the
//! delay would flap the same way: under LIFO and shedding the oldest waiter's
//! age stays below the target. A queue emptied by shedding is still standing:
//! nothing was served.
//!
//! The controller may also declare the queue standing at once, when the queue is
//! already longer than the app can serve within one interval ([`Codel::stand`]):
//! such a queue cannot drain within the interval by definition, and waiting the
//! interval out only makes its waiters older.
//!
//! While standing, the controller keeps the queue to what the limit serves in
//! about a millisecond, refuses arrivals beyond it at once, and sheds waiters
//! that waited longer than `target` (see `mod.rs`).
//!
//! The target itself can follow the latency the proxy measures:
//! [`MinLatency`] keeps a windowed minimum of admitted requests' latencies, and
//! [`auto_target`] turns it into a target.

use std::time::Duration;

use crate::time::Instant;

/// The smallest target: scheduler noise on a busy host is a few milliseconds, and
/// 5 ms is CoDel's and Fail at Scale's value.
pub const MIN_TARGET: Duration = Duration::from_millis(5);

/// The CoDel state of one queue.
#[derive(Debug, Clone)]
pub struct Codel {
    target: Duration,
    interval: Duration,
    /// Since when the delay has been at or above `target` without a dip.
    above_since: Option<Instant>,
    standing: bool,
    /// The last time the queue was seen holding a waiter while standing.
    busy_at: Option<Instant>,
    /// The last delay seen, for reporting.
    delay: Duration,
    /// While set, the queue does not begin to stand (see [`Codel::hold`]).
    held: bool,
}

impl Codel {
    /// A queue that is not standing, with the given `target` and `interval`.
    pub fn new(target: Duration, interval: Duration) -> Self {
        Self {
            target,
            interval,
            above_since: None,
            standing: false,
            busy_at: None,
            delay: Duration::ZERO,
            held: false,
        }
    }

    /// Holds the queue from beginning to stand (`true`) or lets it (`false`).
    /// While the limit is lowered on purpose (the adaptive limit's probe, its
    /// first measurement) a queue is the proxy's own making, not the app's
    /// overload: it is kept, not shed. A queue that already stands goes on
    /// standing, and the delay is still followed, so a queue that stayed above
    /// the target for an interval stands as soon as the hold ends.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    /// The delay above which a standing queue sheds.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// Changes the target (e.g. when the measured latency moved).
    pub fn set_target(&mut self, target: Duration) {
        self.target = target;
    }

    /// True while the queue is standing.
    pub fn is_standing(&self) -> bool {
        self.standing
    }

    /// The queueing delay seen at the last observation.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Observes the queue at `now`, its oldest live waiter queued at `oldest`
    /// (`None`: empty); returns whether it is standing.
    pub fn observe(&mut self, now: Instant, oldest: Option<Instant>) -> bool {
        let Some(oldest) = oldest else {
            self.delay = Duration::ZERO;
            self.above_since = None;
            // Empty: the episode ends once the queue has stayed empty an interval.
            if self.standing {
                let busy = *self.busy_at.get_or_insert(now);
                if now.saturating_duration_since(busy) >= self.interval {
                    self.standing = false;
                    self.busy_at = None;
                }
            }
            return self.standing;
        };
        if self.standing {
            self.busy_at = Some(now);
        }
        self.delay = now.saturating_duration_since(oldest);
        if self.delay < self.target {
            // A dip below the target: the minimum over this interval is below it.
            self.above_since = None;
            return self.standing;
        }
        // The delay crossed the target when the oldest waiter turned `target` old
        // (unless a dip was seen since, which reset `above_since` later than that).
        let crossed = oldest + self.target;
        let since = *self.above_since.get_or_insert(crossed);
        if now.saturating_duration_since(since) >= self.interval && !self.held {
            self.standing = true;
            self.busy_at = Some(now);
        }
        self.standing
    }

    /// Declares the queue standing at `now` without waiting for the interval: the
    /// caller predicts it cannot drain within one (see `mod.rs`); not while held.
    pub fn stand(&mut self, now: Instant) {
        if !self.standing && !self.held {
            self.standing = true;
            self.busy_at = Some(now);
        }
    }

    /// How long the delay must stay above the target before the queue stands.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Notes that shedding emptied the queue at `now`: the delay is 0 again, but
    /// the queue stays standing (nothing was served; the overload goes on), and
    /// the interval it must stay empty for starts now.
    pub fn emptied_by_shedding(&mut self, now: Instant) {
        self.delay = Duration::ZERO;
        self.above_since = None;
        if self.standing {
            self.busy_at = Some(now);
        }
    }

    /// While standing, the instant before which a waiter has waited longer than
    /// the target at `now` and must be shed; `None` when nothing is to be shed.
    pub fn cutoff(&self, now: Instant) -> Option<Instant> {
        if !self.standing {
            return None;
        }
        now.checked_sub(self.target)
    }
}

/// A windowed minimum of latency samples: the smallest sample of the current and
/// the previous window, so it forgets a minimum after one to two windows (a
/// slower app raises it again) and never jumps to a single new sample's value.
#[derive(Debug, Clone)]
pub struct MinLatency {
    window: Duration,
    started: Instant,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl MinLatency {
    /// An empty minimum over windows of `window`, the first starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            started: now,
            current: None,
            previous: None,
        }
    }

    /// Records one latency sample seen at `now`.
    pub fn record(&mut self, now: Instant, sample: Duration) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= self.window {
            // One window over: the current becomes the previous; two or more: both are stale.
            self.previous = if elapsed >= self.window * 2 {
                None
            } else {
                self.current
            };
            self.current = None;
            self.started = now;
        }
        self.current = Some(self.current.map_or(sample, |c| c.min(sample)));
    }

    /// The minimum over the last one to two windows, if any sample was seen.
    pub fn get(&self) -> Option<Duration> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The target derived from the measured minimum latency: one unloaded service
/// time (a waiter in a standing queue may at most double its latency), at least
/// [`MIN_TARGET`], at most half of `cap` (the queue timeout), so that the delay
/// rule acts before the hard cap does. Before any latency is measured (a fresh
/// proxy) it is that half: a slow app's first answers must not find their
/// waiters shed after 5 ms.
pub fn auto_target(min_latency: Option<Duration>, cap: Duration) -> Duration {
    let most = (cap / 2).max(MIN_TARGET);
    min_latency.unwrap_or(most).clamp(MIN_TARGET, most)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn standing_only_after_a_whole_interval_above_target() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        // A waiter queued at t0: 5 ms old at t0+5ms, the interval ends at t0+105ms.
        assert!(!c.observe(t0 + 4 * MS, Some(t0)));
        assert!(!c.observe(t0 + 50 * MS, Some(t0)));
        assert!(!c.observe(t0 + 104 * MS, Some(t0)));
        assert!(c.observe(t0 + 105 * MS, Some(t0)));
        assert_eq!(c.delay(), 105 * MS);
        // Waiters queued before t0+100ms have waited longer than the target.
        assert_eq!(c.cutoff(t0 + 105 * MS), Some(t0 + 100 * MS));
    }

    #[test]
    fn a_dip_below_target_restarts_the_interval() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        assert!(!c.observe(t0 + 60 * MS, Some(t0)));
        // The oldest left; the next one is only 2 ms old: a dip.
        assert!(!c.observe(t0 + 61 * MS, Some(t0 + 59 * MS)));
        // It crosses 5 ms at t0+64ms; standing 100 ms later, not at t0+105ms.
        assert!(!c.observe(t0 + 110 * MS, Some(t0 + 59 * MS)));
        assert!(c.observe(t0 + 164 * MS, Some(t0 + 59 * MS)));
    }

    #[test]
    fn standing_holds_while_waiters_are_young_and_ends_after_an_empty_interval() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        assert!(c.observe(t0 + 200 * MS, Some(t0)));
        // Old waiters shed, young ones remain: still standing (no flapping).
        assert!(c.observe(t0 + 201 * MS, Some(t0 + 198 * MS)));
        c.emptied_by_shedding(t0 + 201 * MS);
        assert!(c.is_standing(), "emptied by shedding: still standing");
        assert_eq!(c.cutoff(t0 + 202 * MS), Some(t0 + 197 * MS));
        // Empty for a moment, then a waiter again: the episode goes on.
        assert!(c.observe(t0 + 202 * MS, None));
        assert!(c.observe(t0 + 250 * MS, Some(t0 + 249 * MS)));
        assert!(c.observe(t0 + 251 * MS, None));
        assert!(c.observe(t0 + 349 * MS, None), "empty for 99 ms only");
        assert_eq!(c.delay(), Duration::ZERO);
        // Empty for a whole interval since the last waiter: over.
        assert!(!c.observe(t0 + 350 * MS, None));
        assert_eq!(
            c.cutoff(t0 + 400 * MS),
            None,
            "not standing: nothing is shed"
        );
        // A new episode needs a whole interval above the target again.
        assert!(!c.observe(t0 + 460 * MS, Some(t0 + 400 * MS)));
        assert!(c.observe(t0 + 505 * MS, Some(t0 + 400 * MS)));
    }

    #[test]
    fn a_held_queue_does_not_begin_to_stand_until_released() {
        let t0 = Instant::now();
        let mut c = Codel::new(5 * MS, 100 * MS);
        c.hold(true);
        assert!(!c.observe(t0 + 200 * MS, Some(t0)), "held: not standing");
        c.stand(t0 + 200 * MS);
        assert!(!c.is_standing(), "held: not declared standing either");
        assert_eq!(c.cutoff(t0 + 200 * MS), None, "held: nothing is shed");
        // Released with the delay still above the target for an interval: at once.
        c.hold(false);
        assert!(c.observe(t0 + 201 * MS, Some(t0)));
        // A queue that stands keeps standing when held.
        c.hold(true);
        assert!(c.observe(t0 + 202 * MS, Some(t0 + 150 * MS)));
        assert!(c.cutoff(t0 + 202 * MS).is_some());
    }

    #[test]
    fn min_latency_is_windowed() {
        let t0 = Instant::now();
        let mut m = MinLatency::new(Duration::from_secs(10), t0);
        assert_eq!(m.get(), None);
        m.record(t0, 20 * MS);
        m.record(t0 + Duration::from_secs(1), 10 * MS);
        m.record(t0 + Duration::from_secs(2), 30 * MS);
        assert_eq!(m.get(), Some(10 * MS));
        // Next window: the previous minimum still counts.
        m.record(t0 + Duration::from_secs(11), 40 * MS);
        assert_eq!(m.get(), Some(10 * MS));
        // One more: only the last two windows count.
        m.record(t0 + Duration::from_secs(21), 50 * MS);
        assert_eq!(m.get(), Some(40 * MS));
        // After a long silence both windows are stale.
        m.record(t0 + Duration::from_secs(60), 70 * MS);
        assert_eq!(m.get(), Some(70 * MS));
    }

    #[test]
    fn auto_target_is_one_service_time_within_bounds() {
        let cap = Duration::from_millis(500);
        assert_eq!(auto_target(None, cap), 250 * MS);
        assert_eq!(auto_target(Some(MS), cap), 5 * MS);
        assert_eq!(auto_target(Some(12 * MS), cap), 12 * MS);
        assert_eq!(auto_target(Some(Duration::from_secs(2)), cap), 250 * MS);
        assert_eq!(auto_target(Some(12 * MS), MS), 5 * MS);
    }
}
