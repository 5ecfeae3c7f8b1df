//! The autoscaler's output: one [`ScaleState`] per cluster (desired and ready
//! replicas, the demand behind them, the panic flag, why), published on a
//! [`ScaleBoard`] — a `tokio::sync::watch` channel that every consumer (the
//! `/v1/scale` API, the metrics, the scalers in `crate::scaler`) subscribes to.
//!
//! The decision itself is pure (`decision.rs`); the ticking task lives apart, so
//! this module stays a leaf that `crate::plane` can hold.

pub mod decision;
pub mod run;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

/// Every cluster's scale state, by cluster name.
pub type ScaleMap = Arc<BTreeMap<String, ScaleState>>;

/// What the autoscaler decided for one cluster at one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleState {
    /// The cluster (a cluster name in the group configs, and in `autoscale:`).
    pub cluster: String,
    /// Replicas the cluster should run now (within `min_replicas..=max_replicas`).
    pub desired: u32,
    /// Replicas ready now: the cluster's registered endpoints, or the count of its
    /// static endpoints when none is registered.
    pub ready: u32,
    /// The demand `desired` was computed from, in the policy's unit: concurrency
    /// (requests in the system) for `target_concurrency_per_replica`, requests per
    /// second for `target_rps_per_replica`.
    pub observed_demand: f64,
    /// Requests per second arriving at the proxies' admission for this cluster
    /// (shed ones included), summed over the reporting proxies, over the panic window.
    pub offered_rps: f64,
    /// Proxies whose reports count (not stale).
    pub nodes: u32,
    /// True while the cluster is in panic mode (no scale-down).
    pub panic: bool,
    /// Why `desired` has its value, one short sentence.
    pub reason: String,
    /// When the autoscaler reached this state (its last change), Unix milliseconds.
    pub at_unix_ms: u64,
}

impl ScaleState {
    /// A state without demand (before any report): `desired` = `ready`.
    pub fn idle(cluster: &str, desired: u32, ready: u32, at_unix_ms: u64) -> Self {
        ScaleState {
            cluster: cluster.to_owned(),
            desired,
            ready,
            observed_demand: 0.0,
            offered_rps: 0.0,
            nodes: 0,
            panic: false,
            reason: "no load reports yet".to_owned(),
            at_unix_ms,
        }
    }
}

/// The published scale states: one writer (the autoscaler's tick), any number of
/// subscribers. A new map is sent on each tick in which any cluster's state
/// changed in a field other than `at_unix_ms`; consumers that act only on a change
/// of `desired` compare it themselves.
#[derive(Debug)]
pub struct ScaleBoard {
    tx: watch::Sender<ScaleMap>,
}

impl Default for ScaleBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl ScaleBoard {
    /// An empty board.
    pub fn new() -> Self {
        ScaleBoard {
            tx: watch::Sender::new(Arc::new(BTreeMap::new())),
        }
    }

    /// A receiver of every published map (it sees the current one at once).
    pub fn subscribe(&self) -> watch::Receiver<ScaleMap> {
        self.tx.subscribe()
    }

    /// The current map.
    pub fn current(&self) -> ScaleMap {
        Arc::clone(&self.tx.borrow())
    }

    /// Publishes `next` if it differs from the current map in anything but the
    /// decision times; returns whether it was sent.
    pub fn publish(&self, next: BTreeMap<String, ScaleState>) -> bool {
        self.tx.send_if_modified(|current| {
            if same_but_time(current, &next) {
                return false;
            }
            *current = Arc::new(next);
            true
        })
    }
}

fn same_but_time(a: &BTreeMap<String, ScaleState>, b: &BTreeMap<String, ScaleState>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((ka, sa), (kb, sb))| {
            ka == kb
                && ScaleState {
                    at_unix_ms: 0,
                    ..sa.clone()
                } == ScaleState {
                    at_unix_ms: 0,
                    ..sb.clone()
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_only_changes() {
        let board = ScaleBoard::new();
        let mut rx = board.subscribe();
        rx.mark_unchanged();
        let s = ScaleState::idle("app", 1, 1, 10);
        assert!(board.publish(BTreeMap::from([("app".to_owned(), s.clone())])));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let later = ScaleState {
            at_unix_ms: 20,
            ..s.clone()
        };
        assert!(!board.publish(BTreeMap::from([("app".to_owned(), later)])));
        assert!(!rx.has_changed().unwrap());
        let up = ScaleState { desired: 3, ..s };
        assert!(board.publish(BTreeMap::from([("app".to_owned(), up)])));
        assert_eq!(board.current()["app"].desired, 3);
    }
}
