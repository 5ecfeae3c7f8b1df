//! Long polls and node bookkeeping: a poll that carries the version its proxy runs
//! is answered at once when the group's version differs (and is not the one the
//! node refused), else when the next version is published or after
//! `long_poll.timeout` ± jitter with "not modified".

use std::time::Duration;

use rand::Rng;

use crate::observe;
use crate::plane::Plane;
use crate::store::{NodeReport, Snapshot, StoreError};

/// What a poll ends with.
#[derive(Debug)]
pub enum PollOutcome {
    /// A snapshot the node does not run yet.
    Snapshot(std::sync::Arc<Snapshot>),
    /// Nothing new within the wait; carries the current version, if any.
    NotModified(Option<u64>),
    /// No such group (no file in the config directory).
    UnknownGroup,
}

/// Decrements the waiting-polls gauge however the poll ends (also when the client leaves).
struct Waiting;

impl Waiting {
    fn start() -> Self {
        metrics::gauge!(observe::POLLS_WAITING).increment(1.0);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!(observe::POLLS_WAITING).decrement(1.0);
    }
}

/// One long poll by `node` of `group`, which runs `running` (None: nothing yet).
pub async fn poll(
    plane: &Plane,
    group: &str,
    node: &str,
    running: Option<u64>,
) -> Result<PollOutcome, StoreError> {
    let Some(mut rx) = plane.subscribe(group) else {
        return Ok(PollOutcome::UnknownGroup);
    };
    plane.store.report(group, node, NodeReport::Poll(running))?;
    // A version the node refused is not sent again: it waits for the next one.
    let refused = plane
        .store
        .node(group, node)?
        .and_then(|n| n.last_nack)
        .map(|n| n.version);
    let wait = jittered(
        plane.config.long_poll.timeout,
        plane.config.long_poll.jitter,
    );
    let deadline = tokio::time::Instant::now() + wait;
    let _waiting = Waiting::start();
    loop {
        let current = rx.borrow_and_update().clone();
        if let Some(s) = &current {
            if Some(s.version) != running && Some(s.version) != refused {
                metrics::counter!(observe::POLLS, "result" => "snapshot").increment(1);
                return Ok(PollOutcome::Snapshot(std::sync::Arc::clone(s)));
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            // The group's sender is gone (cannot happen while the plane lives) or time is up.
            Ok(Err(_)) | Err(_) => {
                metrics::counter!(observe::POLLS, "result" => "not_modified").increment(1);
                return Ok(PollOutcome::NotModified(current.map(|s| s.version)));
            }
        }
    }
}

/// `timeout` ± up to `jitter`, uniformly.
fn jittered(timeout: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return timeout;
    }
    let j = jitter.as_secs_f64();
    let offset = rand::rng().random_range(-j..=j);
    Duration::from_secs_f64((timeout.as_secs_f64() + offset).max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_its_window() {
        let t = Duration::from_secs(30);
        let j = Duration::from_secs(5);
        for _ in 0..1000 {
            let w = jittered(t, j);
            assert!(
                w >= Duration::from_secs(25) && w <= Duration::from_secs(35),
                "{w:?}"
            );
        }
        assert_eq!(jittered(t, Duration::ZERO), t);
    }
}
