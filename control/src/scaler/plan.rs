//! The process scaler's decisions, pure over the replicas it runs, the target and
//! the clock: which to start, which became ready, which to drain, terminate or
//! kill. The task in `process.rs` carries them out; this file has no I/O.
//!
//! A replica's life: `Starting` (spawned) → `Ready` (registered) → `Draining`
//! (fenced and deregistered, for `drain`) → `Stopping` (SIGTERM, for
//! `stop_timeout`) → `Killed` (SIGKILL) → reaped. A replica that never registers
//! within `start_timeout` is given up (SIGTERM at once; a failure). Scale-down
//! takes the newest replicas first; draining and stopping ones are not counted.

use std::time::Duration;

use tokio::time::Instant;

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Spawned at `since`, not registered yet.
    Starting {
        /// When it was spawned.
        since: Instant,
    },
    /// Registered: serving.
    Ready,
    /// Fenced and deregistered; SIGTERM at `until`.
    Draining {
        /// When the drain ends.
        until: Instant,
    },
    /// SIGTERM sent; SIGKILL at `kill_at` if it is still running.
    Stopping {
        /// When to SIGKILL.
        kill_at: Instant,
    },
    /// SIGKILL sent; waiting to reap it.
    Killed,
}

impl Phase {
    /// The name `/v1/scalers` shows.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting { .. } => "starting",
            Phase::Ready => "ready",
            Phase::Draining { .. } => "draining",
            Phase::Stopping { .. } => "stopping",
            Phase::Killed => "killed",
        }
    }
}

/// What the plan needs to know of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Its number: higher is newer.
    pub id: u64,
    /// Its phase.
    pub phase: Phase,
    /// Whether the registry holds its address now.
    pub registered: bool,
}

/// The timeouts of `process:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Spawn to registration.
    pub start_timeout: Duration,
    /// SIGTERM to SIGKILL.
    pub stop_timeout: Duration,
    /// Deregistration to SIGTERM.
    pub drain: Duration,
}

/// One thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start this many new replicas.
    Start(u32),
    /// The starting replica registered: it is ready.
    Ready(u64),
    /// The starting replica did not register within `start_timeout`: fence it and
    /// SIGTERM it (a failure: the next start waits for the backoff).
    GiveUp(u64),
    /// Scale-down of a registered replica: fence, deregister, drain.
    Drain(u64),
    /// Fence it (if not yet) and SIGTERM it: a drain ended, or an unregistered
    /// replica is scaled down.
    Terminate(u64),
    /// SIGKILL it: `stop_timeout` ran out.
    Kill(u64),
}

/// The number of replicas to run: `desired` (`min` before the first decision)
/// clamped to `min..=max`.
pub fn target(desired: Option<u32>, min: u32, max: u32) -> u32 {
    desired.unwrap_or(min).clamp(min, max.max(min))
}

/// The actions due at `now`. `may_start` is false while the restart backoff runs.
pub fn step(
    now: Instant,
    replicas: &[View],
    target: u32,
    may_start: bool,
    timing: &Timing,
) -> Vec<Action> {
    let mut actions = Vec::new();
    // Starting (in time) and ready replicas, with whether each is registered.
    let mut active: Vec<(u64, bool)> = Vec::new();
    let mut gave_up = false;
    for r in replicas {
        match r.phase {
            Phase::Starting { since } => {
                if r.registered {
                    actions.push(Action::Ready(r.id));
                    active.push((r.id, true));
                } else if now.saturating_duration_since(since) >= timing.start_timeout {
                    actions.push(Action::GiveUp(r.id));
                    gave_up = true;
                } else {
                    active.push((r.id, false));
                }
            }
            Phase::Ready => active.push((r.id, r.registered)),
            Phase::Draining { until } => {
                if now >= until {
                    actions.push(Action::Terminate(r.id));
                }
            }
            Phase::Stopping { kill_at } => {
                if now >= kill_at {
                    actions.push(Action::Kill(r.id));
                }
            }
            Phase::Killed => {}
        }
    }
    active.sort_unstable();
    let running = u32::try_from(active.len()).unwrap_or(u32::MAX);
    if running > target {
        let excess = (running - target) as usize;
        for &(id, registered) in active.iter().rev().take(excess) {
            actions.push(if registered {
                Action::Drain(id)
            } else {
                Action::Terminate(id)
            });
        }
    } else if running < target && may_start && !gave_up {
        actions.push(Action::Start(target - running));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        start_timeout: Duration::from_secs(30),
        stop_timeout: Duration::from_secs(10),
        drain: Duration::from_secs(5),
    };

    fn ready(id: u64) -> View {
        View {
            id,
            phase: Phase::Ready,
            registered: true,
        }
    }

    #[test]
    fn target_is_desired_clamped_and_min_before_any_decision() {
        assert_eq!(target(None, 1, 4), 1);
        assert_eq!(target(Some(3), 1, 4), 3);
        assert_eq!(target(Some(0), 1, 4), 1);
        assert_eq!(target(Some(100), 1, 4), 4);
        assert_eq!(target(Some(5), 2, 1), 2, "min wins over a smaller max");
    }

    #[test]
    fn starts_what_is_missing_unless_backing_off() {
        let now = Instant::now();
        assert_eq!(step(now, &[], 3, true, &T), vec![Action::Start(3)]);
        assert_eq!(step(now, &[ready(1)], 3, true, &T), vec![Action::Start(2)]);
        assert_eq!(step(now, &[ready(1)], 3, false, &T), vec![]);
        assert_eq!(step(now, &[ready(1)], 1, true, &T), vec![]);
    }

    #[test]
    fn a_starting_replica_becomes_ready_when_registered_or_is_given_up() {
        let now = Instant::now();
        let starting = |registered| View {
            id: 1,
            phase: Phase::Starting { since: now },
            registered,
        };
        assert_eq!(step(now, &[starting(false)], 1, true, &T), vec![]);
        assert_eq!(
            step(now, &[starting(true)], 1, true, &T),
            vec![Action::Ready(1)]
        );
        let late = now + T.start_timeout;
        assert_eq!(
            step(late, &[starting(false)], 1, true, &T),
            vec![Action::GiveUp(1)],
            "no replacement in the same step: the failure's backoff comes first"
        );
    }

    #[test]
    fn scale_down_takes_the_newest_first_and_skips_draining_ones() {
        let now = Instant::now();
        let replicas = [ready(1), ready(2), ready(3)];
        assert_eq!(
            step(now, &replicas, 1, true, &T),
            vec![Action::Drain(3), Action::Drain(2)]
        );
        // The newest is still starting (not registered): terminated, nothing to drain.
        let replicas = [
            ready(1),
            View {
                id: 2,
                phase: Phase::Starting { since: now },
                registered: false,
            },
        ];
        assert_eq!(
            step(now, &replicas, 1, true, &T),
            vec![Action::Terminate(2)]
        );
        // A draining replica does not count: one more is started for a target of 2.
        let replicas = [
            ready(1),
            View {
                id: 2,
                phase: Phase::Draining {
                    until: now + T.drain,
                },
                registered: false,
            },
        ];
        assert_eq!(step(now, &replicas, 2, true, &T), vec![Action::Start(1)]);
    }

    #[test]
    fn drain_then_sigterm_then_sigkill_on_time() {
        let now = Instant::now();
        let draining = [View {
            id: 1,
            phase: Phase::Draining {
                until: now + T.drain,
            },
            registered: false,
        }];
        assert_eq!(step(now, &draining, 0, true, &T), vec![]);
        assert_eq!(
            step(now + T.drain, &draining, 0, true, &T),
            vec![Action::Terminate(1)]
        );
        let stopping = [View {
            id: 1,
            phase: Phase::Stopping {
                kill_at: now + T.stop_timeout,
            },
            registered: false,
        }];
        assert_eq!(step(now, &stopping, 0, true, &T), vec![]);
        assert_eq!(
            step(now + T.stop_timeout, &stopping, 0, true, &T),
            vec![Action::Kill(1)]
        );
        let killed = [View {
            id: 1,
            phase: Phase::Killed,
            registered: false,
        }];
        assert_eq!(step(now, &killed, 0, true, &T), vec![]);
    }
}
