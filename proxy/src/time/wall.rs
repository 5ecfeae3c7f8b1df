//! The wall-clock time of a monotonic instant, without a second clock read per
//! request: each thread keeps an anchor (the Unix time and the `Instant` it was read
//! at) and derives the wall time of later instants from it, re-reading the system
//! clock once the anchor is a second old (so a clock step shows within a second).
//! For access-log timestamps, taken from the request's own arrival `Instant`.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long an anchor is used before the system clock is read again.
const REANCHOR: Duration = Duration::from_secs(1);

thread_local! {
    /// The anchor: an instant and the Unix time at it, in nanoseconds.
    static ANCHOR: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

/// The Unix time now, in nanoseconds (0 before 1970).
fn unix_nanos_now() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

/// The wall-clock time at `at` (an instant of this thread's recent past or
/// present), in milliseconds since the Unix epoch.
pub fn unix_millis(at: Instant) -> u64 {
    let anchored = ANCHOR.try_with(|anchor| {
        if let Some((i, unix)) = anchor.get() {
            if let Some(since) = at.checked_duration_since(i) {
                if since < REANCHOR {
                    // Below a second: the nanoseconds fit any integer here.
                    return unix + since.subsec_nanos() as u64;
                }
            }
        }
        let now = unix_nanos_now();
        // The anchor is the instant asked about: at most a few microseconds old.
        anchor.set(Some((at, now)));
        now
    });
    anchored.unwrap_or_else(|_| unix_nanos_now()) / 1_000_000
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (Howard Hinnant's `civil_from_days`).
pub fn civil(secs: u64) -> [u8; 19] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = [0u8; 19];
    let digits = |out: &mut [u8], mut n: u64| {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(&mut s[0..4], u64::try_from(year).unwrap_or(0));
    s[4] = b'-';
    digits(&mut s[5..7], u64::try_from(month).unwrap_or(0));
    s[7] = b'-';
    digits(&mut s[8..10], u64::try_from(day).unwrap_or(0));
    s[10] = b'T';
    digits(&mut s[11..13], rem / 3600);
    s[13] = b':';
    digits(&mut s[14..16], rem / 60 % 60);
    s[16] = b':';
    digits(&mut s[17..19], rem % 60);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_instants_are_the_anchor_plus_their_distance() {
        let first = Instant::now();
        let w0 = unix_millis(first);
        let later = first + Duration::from_millis(250);
        // The anchor's sub-millisecond part may carry into the next millisecond.
        let w1 = unix_millis(later);
        assert!((w0 + 250..=w0 + 251).contains(&w1), "{w0} {w1}");
    }

    #[test]
    fn an_anchor_a_second_old_or_an_earlier_instant_reads_the_clock_again() {
        let first = Instant::now();
        let w0 = unix_millis(first);
        // Past the re-anchor age: a fresh read becomes the anchor (the system clock
        // now, not the old anchor plus two seconds).
        let later = first + Duration::from_secs(2);
        let w1 = unix_millis(later);
        assert!(w1 < w0 + 2000, "{w0} {w1}");
        let w2 = unix_millis(later + Duration::from_millis(10));
        assert!((w1 + 10..=w1 + 11).contains(&w2), "{w1} {w2}");
        // Before the anchor: read again too, never a time from the anchor backwards.
        let before = unix_millis(first);
        assert!(before >= w0);
    }
}
