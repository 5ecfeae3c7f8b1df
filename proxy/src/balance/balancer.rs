//! The balancer: which endpoint of a set gets the next request — power of two
//! choices over an outcome-aware load score (the default), or round robin —
//! among the endpoints that are healthy and not ejected. A pure function of the
//! endpoints' state, the policy and the time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::endpoint::Endpoint;
use crate::config::BalancerKind;
use crate::time::Instant;

/// Chooses an endpoint among `endpoints` for a new request, or `None` when none is
/// available; `next` is the round-robin position.
pub fn pick(
    kind: BalancerKind,
    endpoints: &[Arc<Endpoint>],
    next: &AtomicUsize,
    now: Instant,
) -> Option<Arc<Endpoint>> {
    let n = endpoints.len();
    match (kind, n) {
        (_, 0) => None,
        (_, 1) => endpoints.first().filter(|e| e.is_available(now)).cloned(),
        (BalancerKind::RoundRobin, _) => {
            let start = next.fetch_add(1, Ordering::Relaxed);
            (0..n)
                .filter_map(|i| endpoints.get((start + i) % n))
                .find(|e| e.is_available(now))
                .cloned()
        }
        (BalancerKind::P2cLeastRequest, _) => {
            let (a, b) = two_distinct(n);
            match (endpoints.get(a), endpoints.get(b)) {
                (Some(ea), Some(eb)) => match (ea.is_available(now), eb.is_available(now)) {
                    (true, true) => Some(Arc::clone(less_loaded(ea, eb, now))),
                    (true, false) => Some(Arc::clone(ea)),
                    (false, true) => Some(Arc::clone(eb)),
                    (false, false) => pick_among_available(endpoints, now),
                },
                _ => None,
            }
        }
    }
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
/// weighted by recent failures), ties going to `a` (itself a random pick).
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
}
