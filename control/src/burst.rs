//! Burst mode: while a cluster's autoscaler is in panic, every group that defines
//! the cluster is published with `burst_mode: true` on it
//! ([`crate::snapshot::merge_with_burst`]), and its proxies apply the `burst:`
//! overrides of the routes to it (tighter limits, a longer cache TTL, sheddable
//! first: `docs/config.md`). Leaving panic publishes the normal config again.
//!
//! This task watches the autoscaler's decisions and republishes the affected
//! groups when the set of panicking clusters changes; the merge itself reads the
//! current decisions, so a registry change during a burst keeps the flag.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::plane::{panicking, Plane};

/// Gauge: 1 while the cluster is in burst mode (its autoscaler in panic), by cluster.
pub const BURST_MODE: &str = "floodgate_control_burst_mode";

/// Watches the scale board until it closes (or the task is aborted).
pub fn spawn(plane: Arc<Plane>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut board = plane.scale_watch();
        let mut current = BTreeSet::new();
        loop {
            let next = panicking(&board.borrow_and_update());
            let changed: BTreeSet<String> = current.symmetric_difference(&next).cloned().collect();
            if !changed.is_empty() {
                for cluster in &changed {
                    let on = next.contains(cluster);
                    if on {
                        tracing::warn!(%cluster, "burst mode on: the autoscaler is in panic");
                    } else {
                        tracing::info!(%cluster, "burst mode off");
                    }
                    metrics::gauge!(BURST_MODE, "cluster" => cluster.clone()).set(if on {
                        1.0
                    } else {
                        0.0
                    });
                }
                if let Err(e) = plane.burst_changed(&changed) {
                    tracing::error!(error = %e, "cannot publish the burst-mode change");
                }
                current = next;
            }
            if board.changed().await.is_err() {
                return;
            }
        }
    })
}
