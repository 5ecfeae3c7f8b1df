//! Passive outlier detection: consecutive failures of an endpoint (connect
//! errors, resets, timeouts, 5xx) eject it for a growing period, never more than
//! `max_ejection_percent` of the cluster at once.

use std::sync::Arc;

use super::endpoint::Endpoint;
use crate::config::OutlierConfig;
use crate::time::Instant;

/// What one failure did to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more: under the threshold, already ejected, or at the ejection cap.
    Kept,
    /// Ejected for this long, after this many failures in a row.
    Ejected {
        /// How long the ejection lasts.
        duration: std::time::Duration,
        /// The failure streak that caused it.
        failures: u32,
    },
}

/// Feeds one outcome of `endpoint` into outlier detection; `endpoints` gives the
/// cluster's current set, asked for only when a failure may eject.
pub fn record(
    config: Option<&OutlierConfig>,
    endpoints: impl FnOnce() -> Arc<Vec<Arc<Endpoint>>>,
    endpoint: &Endpoint,
    success: bool,
    now: Instant,
) -> Verdict {
    if success {
        endpoint.record_success(now);
        return Verdict::Kept;
    }
    let streak = endpoint.record_failure(now);
    let Some(outlier) = config else {
        return Verdict::Kept;
    };
    if streak < outlier.consecutive_failures || endpoint.is_ejected(now) {
        return Verdict::Kept;
    }
    let endpoints = endpoints();
    let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
    if ejected >= max_ejected(outlier, endpoints.len()) {
        return Verdict::Kept;
    }
    let nth = endpoint.ejections().saturating_add(1);
    let duration = outlier
        .base_ejection
        .saturating_mul(nth)
        .min(outlier.max_ejection);
    endpoint.eject(now, duration);
    Verdict::Ejected {
        duration,
        failures: streak,
    }
}

/// How many of `n` endpoints may be ejected at once (at least one when the
/// percentage is not 0).
fn max_ejected(outlier: &OutlierConfig, n: usize) -> usize {
    let percent = outlier.max_ejection_percent as usize;
    if percent == 0 {
        return 0;
    }
    (n * percent / 100).max(1)
}
