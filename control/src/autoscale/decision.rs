//! The autoscaling decision — pure: a function of the policy, the load the
//! proxies reported (over the stable, panic and fast windows), the ready
//! replicas, the clock (ms, passed in) and the decider's own memory. No runtime.
//!
//! What it computes (`docs/autoscaling.md` says the same):
//!
//! - **demand**, per window: with `target_concurrency_per_replica`,
//!   `max(offered_rps × mean latency, mean in flight + queued)` — Little's law over
//!   the arrivals at admission, shed ones included, so a proxy that sheds does not
//!   hide the burst (the app's own concurrency is capped at the admission limit),
//!   and the measured concurrency when it is higher (latency not yet known, or
//!   requests stuck); with `target_rps_per_replica`, `offered_rps`;
//! - **wanted** = `ceil(demand / (target × target_utilization))`;
//! - **panic** starts when the panic demand — the higher of the panic window's and
//!   the last half second's ([`FAST_WINDOW`], counted once it saw
//!   [`FAST_MIN_ARRIVALS`]), so a step shows within a second — divided
//!   by the per-replica target is at least `panic_threshold × max(ready, 1)`; each tick over the threshold renews it. In
//!   panic desired never goes down: it is the highest wanted seen since panic began.
//!   Panic ends `stable_window` after the last tick over the threshold, **and only
//!   when** the ready replicas have caught up with desired or the stable demand no
//!   longer needs more than are ready (Knative's serving#3153: leaving panic while 40
//!   of 1,000 pods were ready undid the scale-up);
//! - outside panic, desired = the stable window's wanted;
//! - then `scale_down_delay`: the highest of those values over the last
//!   `scale_down_delay`; then the rates: at most `ceil(max(ready, 1) ×
//!   max_scale_up_rate)`, at least `floor(ready / max_scale_down_rate)`; then
//!   `min_replicas..=max_replicas`.
//! - A new decider holds the replicas that are ready for `scale_down_delay`, so a
//!   restarted control plane does not scale down before the reports arrive.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{AutoscalePolicy, Target};
use crate::reports::window::ClusterWindow;
use crate::reports::LoadStore;
use crate::store::StoreError;

/// The short window that lets a step show within a second in panic: one
/// default report interval.
pub const FAST_WINDOW: Duration = Duration::from_millis(500);
/// Arrivals the fast window must have seen (over all proxies) to count: below
/// this a few requests more are noise, not a burst (at 50 arrivals, 2x is 7 σ of
/// Poisson noise).
pub const FAST_MIN_ARRIVALS: f64 = 50.0;

/// What the decision reads: the cluster's load over its three windows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observation {
    /// Over `stable_window`.
    pub stable: ClusterWindow,
    /// Over `panic_window`.
    pub panic: ClusterWindow,
    /// Over [`FAST_WINDOW`].
    pub fast: ClusterWindow,
    /// Arrivals in the fast window, over all proxies.
    pub fast_arrivals: f64,
    /// Ready replicas.
    pub ready: u32,
    /// Proxies reporting.
    pub nodes: u32,
}

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas wanted.
    pub desired: u32,
    /// In panic mode.
    pub panic: bool,
    /// The demand behind it (panic demand in panic, else stable), in the policy's unit.
    pub demand: f64,
    /// Offered rps over the panic window (or the fast one, whichever is higher).
    pub offered_rps: f64,
    /// Why, one sentence.
    pub reason: String,
}

/// The decider's memory of one cluster.
#[derive(Debug, Clone)]
pub struct Decider {
    policy: AutoscalePolicy,
    /// Last tick over the panic threshold, while in panic.
    panic_renewed_ms: Option<u64>,
    /// Highest wanted since panic began.
    panic_high: u32,
    /// Recent rate-limited values, for `scale_down_delay`.
    recent: VecDeque<(u64, u32)>,
    last: Option<u32>,
}

/// Demand of one window in the policy's unit, and a note on how it was found.
pub fn demand(target: Target, w: &ClusterWindow) -> f64 {
    match target {
        Target::Rps(_) => w.offered_rps,
        Target::Concurrency(_) => {
            let little = w.latency_s.map_or(0.0, |l| w.offered_rps * l);
            little.max(w.concurrency)
        }
    }
}

fn wanted(demand: f64, per_replica: f64) -> u32 {
    if demand <= 0.0 || per_replica <= 0.0 {
        return 0;
    }
    let n = (demand / per_replica - 1e-9).ceil();
    if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n.max(0.0) as u32
    }
}

impl Decider {
    /// A decider with no memory.
    pub fn new(policy: AutoscalePolicy) -> Self {
        Decider {
            policy,
            panic_renewed_ms: None,
            panic_high: 0,
            recent: VecDeque::new(),
            last: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &AutoscalePolicy {
        &self.policy
    }

    /// Takes a new policy (a config reload), keeping the memory.
    pub fn set_policy(&mut self, policy: AutoscalePolicy) {
        self.policy = policy;
    }

    /// Whether the cluster is in panic mode.
    pub fn in_panic(&self) -> bool {
        self.panic_renewed_ms.is_some()
    }

    /// Decides at `now_ms` from `obs`.
    pub fn decide(&mut self, obs: &Observation, now_ms: u64) -> Decision {
        let p = &self.policy;
        let per = p.per_replica();
        let ready = obs.ready;
        let ready_ratio = f64::from(ready.max(1));
        let stable_demand = demand(p.target, &obs.stable);
        let fast = if obs.fast_arrivals >= FAST_MIN_ARRIVALS {
            demand(p.target, &obs.fast)
        } else {
            0.0
        };
        let panic_demand = demand(p.target, &obs.panic).max(fast);
        let stable_want = wanted(stable_demand, per);
        let panic_want = wanted(panic_demand, per);
        let offered_rps = if fast > 0.0 {
            obs.panic.offered_rps.max(obs.fast.offered_rps)
        } else {
            obs.panic.offered_rps
        };
        let first = self.last.is_none();
        let prev = self.last.unwrap_or(ready);

        // As Knative: the unrounded replicas the panic demand needs, over ready.
        let over = panic_demand / per >= p.panic_threshold * ready_ratio && panic_want > ready;
        let mut reason;
        let raw;
        if over {
            if self.panic_renewed_ms.is_none() {
                self.panic_high = prev;
            }
            self.panic_renewed_ms = Some(now_ms);
        } else if let Some(renewed) = self.panic_renewed_ms {
            let quiet = now_ms.saturating_sub(renewed) >= ms(p.stable_window);
            let caught_up = ready >= prev.min(p.max_replicas);
            let demand_gone = stable_want <= ready;
            if quiet && (caught_up || demand_gone) {
                self.panic_renewed_ms = None;
            }
        }
        let panic = self.panic_renewed_ms.is_some();
        if panic {
            self.panic_high = self.panic_high.max(panic_want).max(stable_want);
            raw = self.panic_high;
            reason = if over {
                format!(
                    "panic: demand {panic_demand:.1} needs {panic_want} at {per:.1} per replica, \
                     ≥ {:.1}× the {ready} ready",
                    p.panic_threshold
                )
            } else {
                format!(
                    "panic held: {ready} of {raw} ready, stable demand {stable_demand:.1} needs {stable_want}; \
                     no scale-down in panic"
                )
            };
        } else {
            self.panic_high = 0;
            raw = stable_want;
            reason = format!(
                "stable: demand {stable_demand:.1} over {:?} needs {stable_want} at {per:.1} per replica",
                p.stable_window
            );
        }

        // scale_down_delay: the highest wanted of the last `scale_down_delay`. A new
        // decider starts from the ready replicas, so a restart does not scale
        // down before reports arrive.
        if first {
            self.recent.push_back((now_ms, ready));
        }
        self.recent.push_back((now_ms, raw));
        let horizon = now_ms.saturating_sub(ms(p.scale_down_delay));
        while self.recent.len() > 1 && self.recent.front().is_some_and(|(t, _)| *t < horizon) {
            self.recent.pop_front();
        }
        let delayed = self.recent.iter().map(|(_, d)| *d).max().unwrap_or(raw);
        if delayed > raw {
            reason.push_str(&format!(
                "; {delayed} held by scale_down_delay ({:?})",
                p.scale_down_delay
            ));
        }

        let up_cap = (ready_ratio * p.max_scale_up_rate).ceil();
        let up_cap = if up_cap >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            up_cap as u32
        };
        let down_floor = (f64::from(ready) / p.max_scale_down_rate).floor() as u32;
        let mut limited = delayed;
        if limited > up_cap {
            limited = up_cap;
            reason.push_str(&format!("; capped at {up_cap} by max_scale_up_rate"));
        }
        if limited < down_floor {
            limited = down_floor;
            reason.push_str(&format!("; held at {down_floor} by max_scale_down_rate"));
        }

        let desired = limited.clamp(p.min_replicas, p.max_replicas);
        if desired == p.max_replicas && limited > p.max_replicas {
            reason.push_str(&format!("; clamped to max_replicas {}", p.max_replicas));
        } else if desired > limited {
            reason.push_str(&format!("; min_replicas {}", p.min_replicas));
        }
        self.last = Some(desired);
        Decision {
            desired,
            panic,
            demand: if panic { panic_demand } else { stable_demand },
            offered_rps,
            reason,
        }
    }
}

/// Reads the observation of `cluster` from the load store: its three windows, and
/// `ready` lowered to the endpoints the proxies find available (a registered replica
/// that fails its health checks, or is ejected, is not ready).
pub fn observe(
    load: &dyn LoadStore,
    cluster: &str,
    policy: &AutoscalePolicy,
    ready: u32,
    now_ms: u64,
) -> Result<Observation, StoreError> {
    let view = load.cluster(
        cluster,
        &[policy.stable_window, policy.panic_window, FAST_WINDOW],
        now_ms,
    )?;
    let fast_arrivals = view.fast_arrivals;
    let w = |i: usize| view.windows.get(i).copied().unwrap_or_default();
    let mut obs = Observation {
        stable: w(0),
        panic: w(1),
        fast: w(2),
        fast_arrivals,
        ready: view.available.map_or(ready, |a| ready.min(a)),
        nodes: view.nodes,
    };
    // A short window with no answer yet borrows the longer window's latency.
    if obs.panic.latency_s.is_none() {
        obs.panic.latency_s = obs.stable.latency_s;
    }
    if obs.fast.latency_s.is_none() {
        obs.fast.latency_s = obs.panic.latency_s;
    }
    Ok(obs)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
