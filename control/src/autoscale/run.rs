//! The autoscaler's task: every tick and whenever a load report arrives (at most
//! every [`MIN_GAP`]), for each cluster named in `autoscale:`,
//! reads its ready replicas and its load over the three windows, asks its
//! [`Decider`], and publishes every cluster's [`ScaleState`] on the plane's
//! [`super::ScaleBoard`] and as gauges. Also prunes the load store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::decision::{observe, Decider, FAST_WINDOW};
use super::ScaleState;
use crate::config::autoscale::DEFAULT_TICK;
use crate::observe as names;
use crate::plane::Plane;

/// Shortest time between two decisions woken by reports (ticks come on top).
pub const MIN_GAP: Duration = Duration::from_millis(50);
/// How often the load store is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Ready replicas of `cluster`: its registered endpoints, or, when none is
/// registered, the endpoints its group files list.
pub fn ready(plane: &Plane, registered: &BTreeMap<String, u32>, cluster: &str) -> u32 {
    match registered.get(cluster) {
        Some(n) if *n > 0 => *n,
        _ => plane
            .static_endpoints(cluster)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// Starts the task (until aborted).
pub fn spawn(plane: Arc<Plane>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(plane))
}

async fn run(plane: Arc<Plane>) {
    let policies = plane.config.autoscale.clone();
    let tick = policies
        .values()
        .map(|p| p.tick)
        .min()
        .unwrap_or(DEFAULT_TICK);
    let retain = policies
        .values()
        .map(|p| p.stable_window.max(p.panic_window))
        .max()
        .unwrap_or(FAST_WINDOW)
        .max(FAST_WINDOW)
        + Duration::from_secs(2);
    let mut deciders: BTreeMap<String, (Decider, u64)> = policies
        .iter()
        .map(|(c, p)| (c.clone(), (Decider::new(p.clone()), 0)))
        .collect();
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_prune = 0;
    let mut last_decision = tokio::time::Instant::now();
    loop {
        // A tick, or a report (then all clusters are decided, at most every MIN_GAP):
        // a step in the load shows as soon as the report that carries it arrives.
        let woken_by_report = tokio::select! {
            _ = interval.tick() => false,
            () = plane.reports_arrived.notified() => true,
        };
        if woken_by_report {
            tokio::time::sleep_until(last_decision + MIN_GAP).await;
            for d in deciders.values_mut() {
                d.1 = 0;
            }
        }
        last_decision = tokio::time::Instant::now();
        let now = now_ms();
        if now.saturating_sub(last_prune) >= ms(PRUNE_EVERY) {
            last_prune = now;
            if let Err(e) = plane.load.prune(now, retain) {
                tracing::warn!(error = %e, "cannot prune load reports");
            }
        }
        if deciders.is_empty() {
            continue;
        }
        tick_once(&plane, &mut deciders, now);
    }
}

/// One tick at `now`: decides for every cluster that is due and publishes.
pub fn tick_once(plane: &Plane, deciders: &mut BTreeMap<String, (Decider, u64)>, now: u64) {
    let registered = match plane.store.endpoints() {
        Ok(list) => {
            let mut counts = BTreeMap::new();
            for r in list {
                *counts.entry(r.cluster).or_insert(0u32) += 1;
            }
            counts
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the registry; autoscaler tick skipped");
            return;
        }
    };
    let current = plane.scale.current();
    let mut next = (*current).clone();
    for (cluster, (decider, due)) in deciders.iter_mut() {
        if now < *due {
            continue;
        }
        let tick = ms(decider.policy().tick);
        *due = now + tick.saturating_sub(tick / 10);
        let ready = ready(plane, &registered, cluster);
        let obs = match observe(&*plane.load, cluster, decider.policy(), ready, now) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(cluster = %cluster, error = %e, "cannot read load reports");
                continue;
            }
        };
        let d = decider.decide(&obs, now);
        // Registered and found available by the proxies.
        let ready = obs.ready;
        let mut state = ScaleState {
            cluster: cluster.clone(),
            desired: d.desired,
            ready,
            observed_demand: round(d.demand),
            offered_rps: round(d.offered_rps),
            nodes: obs.nodes,
            panic: d.panic,
            reason: d.reason,
            at_unix_ms: now,
        };
        if let Some(before) = current.get(cluster) {
            if same_but_time(before, &state) {
                state.at_unix_ms = before.at_unix_ms;
            } else if before.desired != state.desired || before.panic != state.panic {
                tracing::info!(cluster = %cluster, desired = state.desired, ready, panic = state.panic, reason = %state.reason, "scale decision");
            }
        }
        let label = cluster.clone();
        metrics::gauge!(names::DESIRED_REPLICAS, "cluster" => label.clone())
            .set(f64::from(state.desired));
        metrics::gauge!(names::READY_REPLICAS, "cluster" => label.clone()).set(f64::from(ready));
        metrics::gauge!(names::OBSERVED_DEMAND, "cluster" => label.clone())
            .set(state.observed_demand);
        metrics::gauge!(names::PANIC, "cluster" => label).set(if state.panic { 1.0 } else { 0.0 });
        next.insert(cluster.clone(), state);
    }
    plane.scale.publish(next);
}

fn same_but_time(a: &ScaleState, b: &ScaleState) -> bool {
    a.desired == b.desired
        && a.ready == b.ready
        && a.panic == b.panic
        && a.nodes == b.nodes
        && a.observed_demand == b.observed_demand
        && a.offered_rps == b.offered_rps
        && a.reason == b.reason
}

/// Two decimals: the published numbers do not churn on float noise.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
