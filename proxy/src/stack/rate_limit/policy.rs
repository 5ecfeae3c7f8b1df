//! The GCRA policy as values: which limit a decision is about, where a request
//! stands against it, and governor's quota for a configured rate. No clock is
//! read here: the limiter passes `now` in.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateSnapshot;
use governor::{NotUntil, Quota};

use crate::config::Rate;

/// Which limit a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The limit shared by every request of the route.
    Route,
    /// The limit of the request's key.
    Key,
}

impl Scope {
    /// The `scope` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Key => "key",
        }
    }
}

/// Where a request stands against one limit after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests that could still pass at once (0 when refused).
    pub remaining: u32,
    /// When refused, the earliest time a request can pass; when admitted, the
    /// time until the full burst is available again.
    pub reset: Duration,
}

/// The outcome of checking one request against a route's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The limit that refused the request; `None` when it is admitted.
    pub denied_by: Option<Scope>,
    /// The route limit's standing, when it was checked.
    pub route: Option<Standing>,
    /// The key limit's standing, when it was checked.
    pub key: Option<Standing>,
}

impl Decision {
    /// True when every limit admitted the request.
    pub fn is_allowed(&self) -> bool {
        self.denied_by.is_none()
    }

    /// How long to wait before a retry can pass (zero when admitted).
    pub fn wait(&self) -> Duration {
        let standing = match self.denied_by {
            None => None,
            Some(Scope::Route) => self.route,
            Some(Scope::Key) => self.key,
        };
        standing.map_or(Duration::ZERO, |s| s.reset)
    }
}

/// governor's quota for a rate: `rps` per second, at most `burst` at once.
pub(super) fn quota(rate: Rate) -> Quota {
    let rps = NonZeroU32::new(rate.rps).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rps).allow_burst(burst)
}

/// Standing and refusal from one limiter outcome: an admitted request's `reset`
/// is the time until the full burst is back (`rps` per second), a refused one's
/// the wait from `clock`'s now (read only then) until the next request can pass.
pub(super) fn standing<C: Clock>(
    rate: Rate,
    outcome: Result<StateSnapshot, NotUntil<C::Instant>>,
    clock: &C,
) -> (Standing, bool) {
    match outcome {
        Ok(state) => {
            let remaining = state.remaining_burst_capacity();
            let missing = u64::from(rate.burst.saturating_sub(remaining));
            let reset = Duration::from_nanos(
                missing.saturating_mul(1_000_000_000) / u64::from(rate.rps.max(1)),
            );
            (Standing { remaining, reset }, false)
        }
        Err(not_until) => {
            let reset = not_until.wait_time_from(clock.now());
            (
                Standing {
                    remaining: 0,
                    reset,
                },
                true,
            )
        }
    }
}
