//! Time for the whole proxy: one clock that tests can pause, pooled deadline timers,
//! and the wall-clock time of an instant without a second clock read ([`unix_millis`]).
//!
//! Every timestamp the proxy keeps (breaker windows, endpoint scores, pool idle
//! times, admission latencies, cache ages, rate-limit cells) is a tokio
//! [`Instant`]. Outside tests it is the monotonic system clock; under
//! `#[tokio::test(start_paused = true)]` it stands still until the test advances it,
//! so time-driven logic is tested exactly and fast. `std::time::Instant` is not
//! used for state (only for a few log durations).
//!
//! On a worker thread [`now`] is read once per event-loop turn ([`cached`]), as
//! nginx reads its clock: a request's reads (admission, balance, pool, breaker, the
//! log) share one clock read instead of taking twenty.

pub mod cached;
pub mod ticker;
pub mod timer_pool;
mod wall;

pub use tokio::time::Instant;
pub use wall::{civil, unix_millis};

/// The current time on the proxy's clock: this loop turn's on a worker thread
/// ([`cached`]), the clock's elsewhere (paused in tests that pause tokio's clock).
#[inline]
pub fn now() -> Instant {
    cached::now()
}
