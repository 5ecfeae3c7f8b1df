//! The balancer: which endpoint of a set gets the next request — power of two
//! choices over an outcome-aware load score (the default), or round robin —
//! among the endpoints that are healthy and not ejected, or among all of them in
//! panic mode (too few available, `healthy_panic_threshold`). A pure function of
//! the endpoints' state, the policy and the time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::endpoint::Endpoint;
use crate::config::BalancerKind;
use crate::time::Instant;

/// Chooses an endpoint among `endpoints` for a new request, or `None` when none is
/// available; `next` is the round-robin position. In panic mode (fewer than
/// `panic_percent` % of the set available, see [`in_panic`]) every endpoint is a
/// candidate, available or not.
///
/// The panic check costs a pass over the set, so it is made only when a
/// candidate the fast path looked at is unavailable: while the picks land on
/// available endpoints, using them is right in either mode.
pub fn pick(
    kind: BalancerKind,
    endpoints: &[Arc<Endpoint>],
    next: &AtomicUsize,
    panic_percent: u32,
    now: Instant,
) -> Option<Arc<Endpoint>> {
    let n = endpoints.len();
    let panic = || in_panic(endpoints, panic_percent, now);
    match (kind, n) {
        (_, 0) => None,
        (_, 1) => endpoints
            .first()
            .filter(|e| e.is_available(now) || panic())
            .cloned(),
        (BalancerKind::RoundRobin, _) => {
            let start = next.fetch_add(1, Ordering::Relaxed);
            let first = endpoints.get(start % n)?;
            if first.is_available(now) || panic() {
                return Some(Arc::clone(first));
            }
            (1..n)
                .filter_map(|i| endpoints.get((start + i) % n))
                .find(|e| e.is_available(now))
                .cloned()
        }
        (BalancerKind::P2cLeastRequest, _) => {
            let (a, b) = two_distinct(n);
            match (endpoints.get(a), endpoints.get(b)) {
                (Some(ea), Some(eb)) => match (ea.is_available(now), eb.is_available(now)) {
                    (true, true) => Some(Arc::clone(less_loaded(ea, eb, now))),
                    _ if panic() => Some(Arc::clone(less_loaded(ea, eb, now))),
                    (true, false) => Some(Arc::clone(ea)),
                    (false, true) => Some(Arc::clone(eb)),
                    (false, false) => pick_among_available(endpoints, now),
                },
                _ => None,
            }
        }
    }
}

/// Envoy's panic mode: whether fewer than `percent` % of `endpoints` are available
/// (healthy and not ejected). Then the balancer spreads over all of them rather
/// than piling everything onto the few left. `percent` 0 never panics.
pub fn in_panic(endpoints: &[Arc<Endpoint>], percent: u32, now: Instant) -> bool {
    if percent == 0 || endpoints.is_empty() {
        return false;
    }
    let available = endpoints.iter().filter(|e| e.is_available(now)).count();
    available * 100 < endpoints.len() * percent as usize
}

/// The slow path of P2C when both random picks were unavailable.
fn pick_among_available(endpoints: &[Arc<Endpoint>], now: Instant) -> Option<Arc<Endpoint>> {
    let available: Vec<&Arc<Endpoint>> = endpoints.iter().filter(|e| e.is_available(now)).collect();
    match available.len() {
        0 => None,
        1 => available.first().map(|e| Arc::clone(e)),
        n => {
            let (a, b) = two_distinct(n);
            match (available.get(a), available.get(b)) {
                (Some(ea), Some(eb)) => Some(Arc::clone(less_loaded(ea, eb, now))),
                _ => None,
            }
        }
    }
}

/// Two different indices below `n` (at least 2), uniformly.
fn two_distinct(n: usize) -> (usize, usize) {
    let mut rng = rand::rng();
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// The P2C comparison: the lower [`Endpoint::load_score`] wins (requests in flight
/// weighted by recent failures and overload answers), ties going to `a` (itself a
/// random pick).
fn less_loaded<'a>(a: &'a Arc<Endpoint>, b: &'a Arc<Endpoint>, now: Instant) -> &'a Arc<Endpoint> {
    if b.load_score(now) < a.load_score(now) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_distinct_never_repeats() {
        for n in 2..6 {
            for _ in 0..200 {
                let (a, b) = two_distinct(n);
                assert_ne!(a, b);
                assert!(a < n && b < n);
            }
        }
    }

    use crate::balance::endpoint::for_tests;
    use std::time::Duration;

    fn set(n: u16, now: Instant) -> Vec<Arc<Endpoint>> {
        (1..=n).map(|p| for_tests(p, now)).collect()
    }

    /// How many of `picks` picks land on each endpoint.
    fn spread(kind: BalancerKind, eps: &[Arc<Endpoint>], panic: u32, now: Instant) -> Vec<usize> {
        let next = AtomicUsize::new(0);
        let mut counts = vec![0; eps.len()];
        for _ in 0..400 {
            if let Some(e) = pick(kind, eps, &next, panic, now) {
                let i = eps.iter().position(|x| Arc::ptr_eq(x, &e)).unwrap();
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn p2c_prefers_the_less_busy_of_two() {
        let now = Instant::now();
        let eps = set(2, now);
        for _ in 0..4 {
            eps[0].record_overloaded(now);
        }
        let counts = spread(BalancerKind::P2cLeastRequest, &eps, 50, now);
        assert_eq!(counts, vec![0, 400], "the busy endpoint is avoided");
        // Both as busy: they share the traffic, and requests in flight decide.
        for _ in 0..4 {
            eps[1].record_overloaded(now);
        }
        let counts = spread(BalancerKind::P2cLeastRequest, &eps, 50, now);
        assert!(counts[0] > 100 && counts[1] > 100, "{counts:?}");
        let _in_flight = eps[0].start_request();
        let counts = spread(BalancerKind::P2cLeastRequest, &eps, 50, now);
        assert_eq!(counts, vec![0, 400]);
    }

    #[test]
    fn panic_mode_balances_over_every_endpoint() {
        let now = Instant::now();
        for kind in [BalancerKind::P2cLeastRequest, BalancerKind::RoundRobin] {
            let eps = set(4, now);
            // Two of four out: 50% available is not under the 50% threshold.
            eps[0].eject(now, Duration::from_secs(30));
            eps[1].set_healthy(false);
            let counts = spread(kind, &eps, 50, now);
            assert_eq!(&counts[..2], &[0, 0], "{kind:?} {counts:?}");
            assert_eq!(counts[2] + counts[3], 400);
            // Three of four out (25%): every endpoint takes traffic again.
            eps[2].eject(now, Duration::from_secs(30));
            assert!(in_panic(&eps, 50, now));
            let counts = spread(kind, &eps, 50, now);
            assert!(counts.iter().all(|&c| c > 40), "{kind:?} {counts:?}");
            // Threshold 0: never panic; the one left takes everything.
            assert!(!in_panic(&eps, 0, now));
            let counts = spread(kind, &eps, 0, now);
            assert_eq!(counts, vec![0, 0, 0, 400], "{kind:?}");
        }
    }

    #[test]
    fn a_single_endpoint_out_is_used_in_panic_and_not_without() {
        let now = Instant::now();
        let eps = set(1, now);
        eps[0].set_healthy(false);
        let next = AtomicUsize::new(0);
        assert!(pick(BalancerKind::P2cLeastRequest, &eps, &next, 50, now).is_some());
        assert!(pick(BalancerKind::P2cLeastRequest, &eps, &next, 0, now).is_none());
        assert!(pick(BalancerKind::RoundRobin, &[], &next, 50, now).is_none());
    }
}
