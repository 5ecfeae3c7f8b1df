//! The wall-clock time of a monotonic instant, without a second clock read per
//! request: each thread keeps an anchor (a `SystemTime` and the `Instant` it was read
//! at) and derives the wall time of later instants from it, re-reading the system
//! clock once the anchor is a second old (so a clock step shows within a second).
//! For access-log timestamps, taken from the request's own arrival `Instant`.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

/// How long an anchor is used before the system clock is read again.
const REANCHOR: Duration = Duration::from_secs(1);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// The wall-clock time at `at` (an instant of this thread's recent past or present).
pub fn wall_clock(at: Instant) -> SystemTime {
    let anchored = ANCHOR.try_with(|anchor| {
        if let Some((i, w)) = anchor.get() {
            if let Some(since) = at.checked_duration_since(i) {
                if since < REANCHOR {
                    return w + since;
                }
            }
        }
        let now = SystemTime::now();
        // The anchor is the instant asked about: at most a few microseconds old.
        anchor.set(Some((at, now)));
        now
    });
    anchored.unwrap_or_else(|_| SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_instants_are_the_anchor_plus_their_distance() {
        let first = Instant::now();
        let w0 = wall_clock(first);
        let later = first + Duration::from_millis(250);
        assert_eq!(wall_clock(later), w0 + Duration::from_millis(250));
    }

    #[test]
    fn an_anchor_a_second_old_or_an_earlier_instant_reads_the_clock_again() {
        let first = Instant::now();
        let w0 = wall_clock(first);
        // Past the re-anchor age: a fresh read becomes the anchor (the system clock
        // now, not the old anchor plus two seconds).
        let later = first + Duration::from_secs(2);
        let w1 = wall_clock(later);
        assert_ne!(w1, w0 + Duration::from_secs(2));
        assert_eq!(
            wall_clock(later + Duration::from_millis(1)),
            w1 + Duration::from_millis(1)
        );
        // Before the anchor: read again too, never a time from the anchor backwards.
        let before = wall_clock(first);
        assert!(before >= w0);
    }
}
