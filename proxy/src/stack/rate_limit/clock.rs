//! governor's clock on the proxy's one clock ([`crate::time`]), so rate-limit
//! cells age with tokio's time and tests can pause and advance it.

use governor::clock::Clock;
use governor::nanos::Nanos;

use crate::time::{self, Instant};

/// A governor [`Clock`] reading [`crate::time::now`]; its instants are
/// nanoseconds since the clock was made ([`Nanos`] is governor's own `Reference`).
#[derive(Debug, Clone, Copy)]
pub struct ProxyClock {
    start: Instant,
}

impl ProxyClock {
    /// A clock counting from now.
    pub fn new() -> Self {
        Self { start: time::now() }
    }
}

impl Default for ProxyClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ProxyClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(time::now().saturating_duration_since(self.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = ProxyClock::new();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(
            Duration::from(clock.now()) - Duration::from(t0),
            Duration::from_millis(250)
        );
    }
}
