//! Passive outlier detection: consecutive failures of an endpoint (connect
//! errors, resets, timeouts, 5xx other than overload answers) eject it for a
//! growing period, never more than `max_ejection_percent` of the cluster at once,
//! and only when it fails clearly more than its peers.
//!
//! The rules, in order, for one outcome:
//!
//! 1. A success ends the failure streak (and, once an ejection has expired, the
//!    ejection backoff). An overload answer ([`Outcome::Overloaded`]: 429, or 503
//!    with `Retry-After`) is counted apart and changes nothing here: it neither
//!    extends nor ends the streak.
//! 2. A failure extends the streak. Under `consecutive_failures`, or when the
//!    endpoint is already ejected, nothing more happens.
//! 3. **Compared with its peers** (the other endpoints that are healthy and not
//!    ejected): the endpoint is ejected only if at least half of its peers are
//!    clearly better, i.e. their recent failure ratio is below
//!    [`PEER_MARGIN`] × its own. An endpoint failing like the rest of its cluster
//!    (the app, its database or its capacity is the problem, not this replica) is
//!    spared: ejecting it would only move its load onto peers that fail as much.
//!    With no peer to compare with, it is spared too (ejecting would leave
//!    nothing to send to).
//! 4. **The cap**: not when `max_ejection_percent` of the set is already ejected.
//! 5. Ejected for `base_ejection × n` (n = ejections in a row), at most `max_ejection`.

use std::sync::Arc;

use super::endpoint::Endpoint;
use super::outcome::Outcome;
use crate::config::OutlierConfig;
use crate::time::Instant;

/// A peer is "clearly better" when its recent failure ratio is below this
/// fraction of the endpoint's own.
pub const PEER_MARGIN: f64 = 0.5;

/// What one failure did to its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more: not a failure, under the threshold, or already ejected.
    Kept,
    /// Over the threshold, but not ejected, for `reason`.
    Spared {
        /// The failure streak.
        failures: u32,
        /// Why: [`Spared::LikePeers`], [`Spared::NoPeers`] or [`Spared::AtCap`].
        reason: Spared,
    },
    /// Ejected for this long, after this many failures in a row.
    Ejected {
        /// How long the ejection lasts.
        duration: std::time::Duration,
        /// The failure streak that caused it.
        failures: u32,
    },
}

/// Why an endpoint over the failure threshold was not ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spared {
    /// Fewer than half of its peers fail clearly less than it does.
    LikePeers,
    /// No other endpoint is available to compare with (or to take its traffic).
    NoPeers,
    /// `max_ejection_percent` of the set is already ejected.
    AtCap,
}

impl Spared {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LikePeers => "like_peers",
            Self::NoPeers => "no_peers",
            Self::AtCap => "max_ejection_percent",
        }
    }
}

/// Feeds one outcome of `endpoint` into outlier detection; `endpoints` gives the
/// cluster's current set, asked for only when a failure may eject.
pub fn record(
    config: Option<&OutlierConfig>,
    endpoints: impl FnOnce() -> Arc<Vec<Arc<Endpoint>>>,
    endpoint: &Endpoint,
    outcome: Outcome,
    now: Instant,
) -> Verdict {
    match outcome {
        Outcome::Success => {
            endpoint.record_success(now);
            return Verdict::Kept;
        }
        Outcome::Overloaded => {
            endpoint.record_overloaded(now);
            return Verdict::Kept;
        }
        Outcome::Failure => {}
    }
    let streak = endpoint.record_failure(now);
    let Some(outlier) = config else {
        return Verdict::Kept;
    };
    if streak < outlier.consecutive_failures || endpoint.is_ejected(now) {
        return Verdict::Kept;
    }
    let endpoints = endpoints();
    let spared = |reason| Verdict::Spared {
        failures: streak,
        reason,
    };
    let own = endpoint.failure_ratio(now);
    let (mut peers, mut better) = (0usize, 0usize);
    for peer in endpoints.iter() {
        if std::ptr::eq(Arc::as_ptr(peer), endpoint) || !peer.is_available(now) {
            continue;
        }
        peers += 1;
        if peer.failure_ratio(now) < own * PEER_MARGIN {
            better += 1;
        }
    }
    if peers == 0 {
        return spared(Spared::NoPeers);
    }
    if better * 2 < peers {
        return spared(Spared::LikePeers);
    }
    let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
    if ejected >= max_ejected(outlier, endpoints.len()) {
        return spared(Spared::AtCap);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::endpoint::for_tests;
    use std::time::Duration;

    fn config(max_ejection_percent: u32) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent,
        }
    }

    fn set(n: u16, now: Instant) -> Arc<Vec<Arc<Endpoint>>> {
        Arc::new((1..=n).map(|p| for_tests(p, now)).collect())
    }

    /// Feeds `outcomes` into endpoint `i` of `set`; returns the last verdict.
    fn feed(
        c: &OutlierConfig,
        set: &Arc<Vec<Arc<Endpoint>>>,
        i: usize,
        outcomes: &[Outcome],
        now: Instant,
    ) -> Verdict {
        let mut last = Verdict::Kept;
        for o in outcomes {
            last = record(Some(c), || Arc::clone(set), &set[i], *o, now);
        }
        last
    }

    const F: Outcome = Outcome::Failure;
    const S: Outcome = Outcome::Success;
    const O: Outcome = Outcome::Overloaded;

    #[test]
    fn a_lone_failing_endpoint_is_ejected() {
        let now = Instant::now();
        let eps = set(2, now);
        let c = config(50);
        feed(&c, &eps, 1, &[S; 10], now);
        assert_eq!(feed(&c, &eps, 0, &[F; 4], now), Verdict::Kept);
        let v = feed(&c, &eps, 0, &[F], now);
        assert_eq!(
            v,
            Verdict::Ejected {
                duration: Duration::from_secs(30),
                failures: 5
            }
        );
        assert!(eps[0].is_ejected(now));
    }

    #[test]
    fn overload_answers_never_eject_and_do_not_break_a_streak() {
        let now = Instant::now();
        let eps = set(2, now);
        let c = config(50);
        // Any number of "busy" answers: no ejection.
        assert_eq!(feed(&c, &eps, 0, &[O; 100], now), Verdict::Kept);
        assert!(!eps[0].is_ejected(now));
        // Failures interleaved with busy answers still make a streak.
        let v = feed(&c, &eps, 0, &[F, O, F, O, F, O, F, O, F], now);
        assert!(matches!(v, Verdict::Ejected { failures: 5, .. }), "{v:?}");
    }

    #[test]
    fn an_endpoint_failing_like_its_peers_is_spared() {
        let now = Instant::now();
        let eps = set(2, now);
        let c = config(50);
        // Both fail (the app behind them is down): neither is ejected.
        for _ in 0..4 {
            feed(&c, &eps, 0, &[F], now);
            feed(&c, &eps, 1, &[F], now);
        }
        let v = feed(&c, &eps, 0, &[F], now);
        assert_eq!(
            v,
            Verdict::Spared {
                failures: 5,
                reason: Spared::LikePeers
            }
        );
        let v = feed(&c, &eps, 1, &[F; 3], now);
        assert!(
            matches!(
                v,
                Verdict::Spared {
                    reason: Spared::LikePeers,
                    ..
                }
            ),
            "{v:?}"
        );
        assert!(!eps[0].is_ejected(now) && !eps[1].is_ejected(now));
        // The peer recovers: the one still failing is now an outlier.
        feed(&c, &eps, 1, &[S; 10], now);
        assert!(matches!(
            feed(&c, &eps, 0, &[F], now),
            Verdict::Ejected { .. }
        ));
    }

    #[test]
    fn most_peers_must_be_clearly_better() {
        let now = Instant::now();
        let c = config(100);
        // Three of four fail: the failing ones are not outliers.
        let eps = set(4, now);
        feed(&c, &eps, 3, &[S; 10], now);
        feed(&c, &eps, 1, &[F; 4], now);
        feed(&c, &eps, 2, &[F; 4], now);
        let v = feed(&c, &eps, 0, &[F; 5], now);
        assert!(
            matches!(
                v,
                Verdict::Spared {
                    reason: Spared::LikePeers,
                    ..
                }
            ),
            "{v:?}"
        );
        // One of three fails, one peer fails a little: still ejected.
        let eps = set(3, now);
        feed(&c, &eps, 1, &[S; 10], now);
        feed(&c, &eps, 2, &[S, S, S, S, F, S, S, S], now);
        let v = feed(&c, &eps, 0, &[F; 5], now);
        assert!(matches!(v, Verdict::Ejected { .. }), "{v:?}");
    }

    #[test]
    fn no_peer_and_the_cap_spare_an_endpoint() {
        let now = Instant::now();
        let c = config(50);
        let one = set(1, now);
        let v = feed(&c, &one, 0, &[F; 5], now);
        assert!(
            matches!(
                v,
                Verdict::Spared {
                    reason: Spared::NoPeers,
                    ..
                }
            ),
            "{v:?}"
        );
        // Two of three fail alone, in turn: 50% of 3 allows one ejection.
        let eps = set(3, now);
        feed(&c, &eps, 2, &[S; 10], now);
        assert!(matches!(
            feed(&c, &eps, 0, &[F; 5], now),
            Verdict::Ejected { .. }
        ));
        let v = feed(&c, &eps, 1, &[F; 5], now);
        assert!(
            matches!(
                v,
                Verdict::Spared {
                    reason: Spared::AtCap,
                    ..
                }
            ),
            "{v:?}"
        );
        // 0% ejects nothing.
        let eps = set(2, now);
        let v = feed(&config(0), &eps, 0, &[F; 5], now);
        assert!(
            matches!(
                v,
                Verdict::Spared {
                    reason: Spared::AtCap,
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn ejections_grow_and_are_capped() {
        let t0 = Instant::now();
        let eps = set(2, t0);
        let c = OutlierConfig {
            max_ejection: Duration::from_secs(70),
            ..config(50)
        };
        let mut now = t0;
        for expected in [30, 60, 70] {
            let v = feed(&c, &eps, 0, &[F; 5], now);
            assert!(
                matches!(v, Verdict::Ejected { duration, .. } if duration == Duration::from_secs(expected)),
                "{v:?}"
            );
            now += Duration::from_secs(expected);
        }
    }
}
