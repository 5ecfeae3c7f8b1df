//! `autoscale:` of `control.yaml`: one policy per cluster, validated into
//! [`AutoscalePolicy`]. Every field and its default is in `docs/autoscaling.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use floodgate::config::file::Scalar;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `target_concurrency_per_replica` when neither target is given (Knative's default).
pub const DEFAULT_TARGET_CONCURRENCY: f64 = 100.0;
/// `target_utilization` default (Knative's 70 %).
pub const DEFAULT_UTILIZATION: f64 = 0.7;
/// `min_replicas` default.
pub const DEFAULT_MIN_REPLICAS: u32 = 1;
/// `max_replicas` default (KEDA's `maxReplicaCount`).
pub const DEFAULT_MAX_REPLICAS: u32 = 100;
/// `stable_window` default (Knative's).
pub const DEFAULT_STABLE_WINDOW: Duration = Duration::from_secs(60);
/// `panic_window` default (Knative's: 10 % of the stable window).
pub const DEFAULT_PANIC_WINDOW: Duration = Duration::from_secs(6);
/// `panic_threshold` default (Knative's 200 %).
pub const DEFAULT_PANIC_THRESHOLD: f64 = 2.0;
/// `max_scale_up_rate` default (Knative's).
pub const DEFAULT_MAX_SCALE_UP_RATE: f64 = 1000.0;
/// `max_scale_down_rate` default (Knative's).
pub const DEFAULT_MAX_SCALE_DOWN_RATE: f64 = 2.0;
/// `scale_down_delay` default.
pub const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(30);
/// `tick` default.
pub const DEFAULT_TICK: Duration = Duration::from_millis(250);
/// Longest `tick` accepted: the signal must move within a second.
pub const MAX_TICK: Duration = Duration::from_millis(500);

/// `autoscale.<cluster>:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAutoscale {
    /// Concurrency one replica should carry (at `target_utilization`).
    pub target_concurrency_per_replica: Option<f64>,
    /// Requests per second one replica should carry (at `target_utilization`).
    pub target_rps_per_replica: Option<f64>,
    /// Share of the target a replica is meant to run at.
    pub target_utilization: Option<f64>,
    /// Fewest replicas.
    pub min_replicas: Option<u32>,
    /// Most replicas.
    pub max_replicas: Option<u32>,
    /// Averaging window outside panic.
    pub stable_window: Option<Scalar>,
    /// Averaging window of the panic decision.
    pub panic_window: Option<Scalar>,
    /// Panic when the panic-window desired is at least this times ready.
    pub panic_threshold: Option<f64>,
    /// Desired at most this times ready, per decision.
    pub max_scale_up_rate: Option<f64>,
    /// Desired at least ready divided by this, per decision.
    pub max_scale_down_rate: Option<f64>,
    /// A lower desired waits this long.
    pub scale_down_delay: Option<Scalar>,
    /// How often the decision is made.
    pub tick: Option<Scalar>,
}

/// What a replica is sized by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "metric", content = "per_replica")]
pub enum Target {
    /// Requests in the system (in flight at the app, or offered rps × latency).
    Concurrency(f64),
    /// Offered requests per second.
    Rps(f64),
}

/// One cluster's validated autoscaling policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoscalePolicy {
    /// The metric and its per-replica target.
    pub target: Target,
    /// Share of the target a replica runs at (0 < u ≤ 1).
    pub target_utilization: f64,
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Averaging window outside panic.
    #[serde(with = "ms")]
    pub stable_window: Duration,
    /// Averaging window of the panic decision.
    #[serde(with = "ms")]
    pub panic_window: Duration,
    /// Panic threshold (desired / ready).
    pub panic_threshold: f64,
    /// Largest desired / ready per decision.
    pub max_scale_up_rate: f64,
    /// Largest ready / desired per decision.
    pub max_scale_down_rate: f64,
    /// How long a lower desired must persist before it is applied.
    #[serde(with = "ms")]
    pub scale_down_delay: Duration,
    /// Decision period.
    #[serde(with = "ms")]
    pub tick: Duration,
}

impl AutoscalePolicy {
    /// The demand one replica is meant to carry: target × utilization.
    pub fn per_replica(&self) -> f64 {
        let t = match self.target {
            Target::Concurrency(c) => c,
            Target::Rps(r) => r,
        };
        t * self.target_utilization
    }

    /// The defaults, with a concurrency target.
    pub fn with_target(target: Target) -> Self {
        AutoscalePolicy {
            target,
            target_utilization: DEFAULT_UTILIZATION,
            min_replicas: DEFAULT_MIN_REPLICAS,
            max_replicas: DEFAULT_MAX_REPLICAS,
            stable_window: DEFAULT_STABLE_WINDOW,
            panic_window: DEFAULT_PANIC_WINDOW,
            panic_threshold: DEFAULT_PANIC_THRESHOLD,
            max_scale_up_rate: DEFAULT_MAX_SCALE_UP_RATE,
            max_scale_down_rate: DEFAULT_MAX_SCALE_DOWN_RATE,
            scale_down_delay: DEFAULT_SCALE_DOWN_DELAY,
            tick: DEFAULT_TICK,
        }
    }
}

/// Validates every cluster's policy; pushes every problem to `errors`.
pub(super) fn validate(
    file: BTreeMap<String, FileAutoscale>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, AutoscalePolicy> {
    let mut out = BTreeMap::new();
    for (cluster, f) in file {
        let at = |field: &str| format!("autoscale.{cluster}.{field}");
        let before = errors.len();
        if cluster.trim().is_empty() {
            errors.push(ConfigError::at(
                "autoscale",
                "a cluster name must not be empty",
            ));
        }
        let positive = |v: Option<f64>, field: &str, errors: &mut Vec<ConfigError>| {
            if let Some(x) = v {
                if !(x.is_finite() && x > 0.0) {
                    errors.push(ConfigError::at(
                        at(field),
                        format!("{x} must be a number above 0"),
                    ));
                }
            }
            v
        };
        let c = positive(
            f.target_concurrency_per_replica,
            "target_concurrency_per_replica",
            errors,
        );
        let r = positive(f.target_rps_per_replica, "target_rps_per_replica", errors);
        let target = match (c, r) {
            (Some(_), Some(_)) => {
                errors.push(ConfigError::at(
                    at("target_rps_per_replica"),
                    "give either target_concurrency_per_replica or target_rps_per_replica, not both",
                ));
                Target::Concurrency(DEFAULT_TARGET_CONCURRENCY)
            }
            (None, Some(r)) => Target::Rps(r),
            (Some(c), None) => Target::Concurrency(c),
            (None, None) => Target::Concurrency(DEFAULT_TARGET_CONCURRENCY),
        };
        let mut p = AutoscalePolicy::with_target(target);
        if let Some(u) = f.target_utilization {
            if !(u > 0.0 && u <= 1.0) {
                errors.push(ConfigError::at(
                    at("target_utilization"),
                    format!("{u} must be in (0, 1]"),
                ));
            }
            p.target_utilization = u;
        }
        p.min_replicas = f.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS);
        p.max_replicas = f
            .max_replicas
            .unwrap_or(DEFAULT_MAX_REPLICAS.max(p.min_replicas));
        if p.max_replicas == 0 {
            errors.push(ConfigError::at(at("max_replicas"), "must be at least 1"));
        }
        if p.min_replicas > p.max_replicas {
            errors.push(ConfigError::at(
                at("min_replicas"),
                format!(
                    "{} is above max_replicas ({})",
                    p.min_replicas, p.max_replicas
                ),
            ));
        }
        let mut dur = |v: Option<Scalar>, field: &str, default: Duration, zero_ok: bool| match v {
            None => default,
            Some(Scalar(t)) => match floodgate::config::parse_duration(&t) {
                Ok(d) if d.is_zero() && !zero_ok => {
                    errors.push(ConfigError::at(at(field), "must be longer than zero"));
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    errors.push(ConfigError::at(at(field), format!("`{t}`: {e}")));
                    default
                }
            },
        };
        p.stable_window = dur(
            f.stable_window,
            "stable_window",
            DEFAULT_STABLE_WINDOW,
            false,
        );
        p.panic_window = dur(f.panic_window, "panic_window", DEFAULT_PANIC_WINDOW, false);
        p.scale_down_delay = dur(
            f.scale_down_delay,
            "scale_down_delay",
            DEFAULT_SCALE_DOWN_DELAY,
            true,
        );
        p.tick = dur(f.tick, "tick", DEFAULT_TICK, false);
        if p.panic_window > p.stable_window {
            errors.push(ConfigError::at(
                at("panic_window"),
                "must not be longer than stable_window",
            ));
        }
        if p.tick > MAX_TICK {
            errors.push(ConfigError::at(
                at("tick"),
                format!("{:?} is above the longest tick, {MAX_TICK:?} (the signal must move within a second)", p.tick),
            ));
        }
        if p.tick > p.panic_window {
            errors.push(ConfigError::at(
                at("tick"),
                "must not be longer than panic_window",
            ));
        }
        let above_one =
            |v: Option<f64>, field: &str, default: f64, errors: &mut Vec<ConfigError>| match v {
                None => default,
                Some(x) if x.is_finite() && x > 1.0 => x,
                Some(x) => {
                    errors.push(ConfigError::at(
                        at(field),
                        format!("{x} must be a number above 1"),
                    ));
                    default
                }
            };
        p.panic_threshold = above_one(
            f.panic_threshold,
            "panic_threshold",
            DEFAULT_PANIC_THRESHOLD,
            errors,
        );
        p.max_scale_up_rate = above_one(
            f.max_scale_up_rate,
            "max_scale_up_rate",
            DEFAULT_MAX_SCALE_UP_RATE,
            errors,
        );
        p.max_scale_down_rate = above_one(
            f.max_scale_down_rate,
            "max_scale_down_rate",
            DEFAULT_MAX_SCALE_DOWN_RATE,
            errors,
        );
        if errors.len() == before {
            out.insert(cluster, p);
        }
    }
    out
}

/// `Duration` as milliseconds.
mod ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}
