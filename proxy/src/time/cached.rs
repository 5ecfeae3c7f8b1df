//! A worker's clock read once per event-loop turn, as nginx does: the first read
//! after the worker's runtime wakes up takes the time, the reads after it get the
//! same instant back, until the runtime parks and wakes again or [`READS_PER_REFRESH`]
//! reads have used it (a worker that never parks still reads the clock anew).
//!
//! Only threads that [`enable`] it (the worker threads) cache; every other thread,
//! and every test on a paused tokio clock, reads the clock each time.

use std::cell::Cell;

use tokio::time::Instant;

/// How many reads one clock read serves before the next read takes the time again.
///
/// The request path reads the clock about 20 times per request, a request costs
/// 20–40 µs of CPU here, so 32 reads are one to two requests' work: a busy worker's
/// cached instant is at most about 50–100 µs old when it is replaced, within the
/// 0.1 ms the admission gradient needs on a 1–10 ms round trip. An idle worker
/// refreshes on every wake-up anyway.
pub const READS_PER_REFRESH: u32 = 32;

/// One thread's cached instant.
struct Cache {
    /// Whether this thread caches at all.
    on: Cell<bool>,
    /// The instant handed out, if one was taken since the last wake-up.
    at: Cell<Option<Instant>>,
    /// Reads the cached instant may still serve.
    left: Cell<u32>,
}

impl Cache {
    const fn new() -> Self {
        Self {
            on: Cell::new(false),
            at: Cell::new(None),
            left: Cell::new(0),
        }
    }

    /// The cached instant, or a fresh one from `clock` when there is none or it
    /// has served its reads.
    fn read(&self, clock: impl FnOnce() -> Instant) -> Instant {
        if let Some(at) = self.at.get() {
            let left = self.left.get();
            if left > 0 {
                self.left.set(left - 1);
                return at;
            }
        }
        let at = clock();
        self.at.set(Some(at));
        self.left.set(READS_PER_REFRESH - 1);
        at
    }

    /// Drops the cached instant: the next read takes the time.
    fn expire(&self) {
        self.at.set(None);
    }
}

thread_local! {
    static CACHE: Cache = const { Cache::new() };
}

/// Makes the calling thread cache its clock reads (for a worker thread, whose
/// runtime calls [`expire`] each time it wakes up).
pub fn enable() {
    let _ = CACHE.try_with(|c| {
        c.on.set(true);
        c.expire();
    });
}

/// Drops the calling thread's cached instant: called when a worker's runtime
/// wakes up, so the first read of a loop turn takes the time.
pub fn expire() {
    let _ = CACHE.try_with(Cache::expire);
}

/// The current instant: the thread's cached one where caching is on, the clock's
/// (paused in tests that pause tokio's clock) everywhere else.
#[inline]
pub fn now() -> Instant {
    CACHE
        .try_with(|c| {
            if c.on.get() {
                c.read(Instant::now)
            } else {
                Instant::now()
            }
        })
        .unwrap_or_else(|_| Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_read_serves_a_bounded_number_of_reads() {
        let cache = Cache::new();
        let t0 = Instant::now();
        let mut taken = 0;
        let mut clock = |at: Instant| {
            taken += 1;
            at
        };
        assert_eq!(cache.read(|| clock(t0)), t0);
        for _ in 1..READS_PER_REFRESH {
            let later = t0 + Duration::from_millis(1);
            assert_eq!(cache.read(|| clock(later)), t0, "served from the cache");
        }
        let later = t0 + Duration::from_millis(2);
        assert_eq!(
            cache.read(|| clock(later)),
            later,
            "the bound takes the time anew"
        );
        assert_eq!(taken, 2);
    }

    #[test]
    fn a_wake_up_takes_the_time_anew() {
        let cache = Cache::new();
        let t0 = Instant::now();
        assert_eq!(cache.read(|| t0), t0);
        let later = t0 + Duration::from_micros(10);
        assert_eq!(cache.read(|| later), t0);
        cache.expire();
        assert_eq!(cache.read(|| later), later);
    }

    #[test]
    fn a_thread_that_did_not_enable_it_reads_the_clock() {
        let (a, b) = std::thread::spawn(|| {
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            (a, now())
        })
        .join()
        .unwrap();
        assert!(b > a, "two reads, two instants");
    }

    #[test]
    fn an_enabled_thread_serves_its_cached_instant_until_it_expires() {
        let (a, b, c) = std::thread::spawn(|| {
            enable();
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            let b = now();
            expire();
            (a, b, now())
        })
        .join()
        .unwrap();
        assert_eq!(a, b, "the same loop turn");
        assert!(c > a, "a wake-up reads the clock");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_is_read_as_it_is() {
        let a = now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(now() - a, Duration::from_secs(3));
    }
}
