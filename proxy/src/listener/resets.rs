//! Premature stream resets on one downstream connection (the HTTP/2 "rapid reset"
//! defence), as Envoy's `premature_reset_total_stream_count` /
//! `premature_reset_min_stream_lifetime_seconds`.
//!
//! A stream is *premature* when the client cancelled it (RST_STREAM, or the
//! connection went away) before its response head was sent and within
//! `min_stream_lifetime` of its start. Each cancelled request may already have
//! cost an upstream request and, on HTTP/1.1, an upstream connection, so a client
//! that opens and cancels streams in a loop makes the proxy work without limit
//! while its own concurrent streams stay low. With `N = total_stream_count`, the
//! connection is abusive when
//!
//! - fewer than `N` streams ended and at least `N / 2` of them were premature, or
//! - at least `N` streams ended and at least half of them were premature.
//!
//! Unlike Envoy, which counts over the connection's whole life, the counts are
//! halved whenever `2 × N` streams have ended, so the ratio is over roughly the
//! last `N` to `2 × N` streams: a long, well-behaved history does not buy a burst
//! of resets later (the price: a client cancelling close to half of its streams in
//! long runs may be caught where Envoy would not; 40 % in runs of 40 is not).
//! Pure logic, no clock of its own: the caller passes lifetimes.

use std::time::Duration;

/// The rule's two parameters (from `listeners[].limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetPolicy {
    /// `N`: streams looked at before the ratio rule applies (Envoy's default 500).
    pub total_stream_count: u32,
    /// A cancel later than this after the stream started is not premature (1 s).
    pub min_stream_lifetime: Duration,
}

/// How one stream ended, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// A response head was sent (whatever happened to its body).
    Answered,
    /// The client cancelled before the response head, this long after the start.
    Cancelled(Duration),
}

/// The counts of one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResetTally {
    /// Streams ended (in the current window).
    ended: u64,
    /// Of those, premature ones.
    premature: u64,
}

impl ResetTally {
    /// Records one ended stream; `true` when the connection is now abusive.
    pub fn record(&mut self, policy: &ResetPolicy, end: StreamEnd) -> bool {
        let n = u64::from(policy.total_stream_count.max(1));
        if self.ended >= 2 * n {
            self.ended /= 2;
            self.premature /= 2;
        }
        self.ended += 1;
        let premature =
            matches!(end, StreamEnd::Cancelled(lived) if lived < policy.min_stream_lifetime);
        if premature {
            self.premature += 1;
        }
        premature && self.is_abusive(n)
    }

    /// The rule itself, for `n = total_stream_count`.
    fn is_abusive(&self, n: u64) -> bool {
        if self.ended < n {
            self.premature * 2 >= n
        } else {
            self.premature * 2 >= self.ended
        }
    }

    /// Streams ended and premature ones, in the current window.
    #[cfg(test)]
    pub fn counts(&self) -> (u64, u64) {
        (self.ended, self.premature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ResetPolicy = ResetPolicy {
        total_stream_count: 500,
        min_stream_lifetime: Duration::from_secs(1),
    };
    const FAST: StreamEnd = StreamEnd::Cancelled(Duration::from_millis(5));

    /// Streams recorded until the tally first says abusive (`None`: never within `max`).
    fn until_abusive(
        t: &mut ResetTally,
        max: usize,
        mut next: impl FnMut(usize) -> StreamEnd,
    ) -> Option<usize> {
        (1..=max).find(|&i| t.record(&POLICY, next(i)))
    }

    #[test]
    fn only_resets_are_abusive_at_half_of_n() {
        let mut t = ResetTally::default();
        assert_eq!(until_abusive(&mut t, 5_000, |_| FAST), Some(250));
    }

    #[test]
    fn answered_streams_are_never_abusive() {
        let mut t = ResetTally::default();
        assert_eq!(until_abusive(&mut t, 10_000, |_| StreamEnd::Answered), None);
    }

    #[test]
    fn late_cancels_are_not_premature() {
        let mut t = ResetTally::default();
        let slow = StreamEnd::Cancelled(Duration::from_secs(2));
        assert_eq!(until_abusive(&mut t, 10_000, |_| slow), None);
        assert_eq!(t.counts().1, 0);
        // Exactly the lifetime is no longer premature either.
        assert!(!t.record(&POLICY, StreamEnd::Cancelled(POLICY.min_stream_lifetime)));
    }

    #[test]
    fn occasional_cancels_are_tolerated() {
        // One cancel in ten, forever: well under half.
        let mut t = ResetTally::default();
        let every_tenth = |i: usize| {
            if i % 10 == 0 {
                FAST
            } else {
                StreamEnd::Answered
            }
        };
        assert_eq!(until_abusive(&mut t, 100_000, every_tenth), None);
        // Even 40 %, in runs of 40 cancels in a row.
        let mut t = ResetTally::default();
        let most = |i: usize| {
            if i % 100 < 40 {
                FAST
            } else {
                StreamEnd::Answered
            }
        };
        assert_eq!(until_abusive(&mut t, 100_000, most), None);
    }

    #[test]
    fn alternating_resets_reach_half_after_n() {
        // Every other stream cancelled: half of N only after N streams, then the ratio rule.
        let mut t = ResetTally::default();
        let alternate = |i: usize| {
            if i % 2 == 0 {
                FAST
            } else {
                StreamEnd::Answered
            }
        };
        assert_eq!(until_abusive(&mut t, 5_000, alternate), Some(500));
    }

    #[test]
    fn a_good_history_does_not_buy_a_burst_of_resets() {
        // A million answered streams, then resets only: the window is at most 2 N
        // streams, so the resets are found within a few N, not after a million.
        let mut t = ResetTally::default();
        for _ in 0..1_000_000 {
            assert!(!t.record(&POLICY, StreamEnd::Answered));
        }
        let found = until_abusive(&mut t, 1_000_000, |_| FAST).unwrap();
        assert!(found <= 1_000, "abusive after {found} resets");
        let (ended, _) = t.counts();
        assert!(ended <= 1_000, "window of {ended} streams");
    }

    #[test]
    fn a_tiny_n_still_works() {
        let policy = ResetPolicy {
            total_stream_count: 1,
            min_stream_lifetime: Duration::from_secs(1),
        };
        let mut t = ResetTally::default();
        assert!(!t.record(&policy, StreamEnd::Answered));
        assert!(t.record(&policy, FAST));
    }
}
