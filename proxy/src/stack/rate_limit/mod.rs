//! Rate-limit layer: GCRA limits per route and per key, answered with 429.
//!
//! A route may have one limit shared by all its requests and one limit per key
//! (the client IP, a header value or a path segment). Both are governor GCRA
//! limiters: `rps` is the sustained rate, `burst` the most cells let through at
//! once. The key limit is checked first, so a noisy key is refused before it can
//! spend the route's shared quota; then the route limit.
//!
//! Keys are hashed to a `u64` with a per-process random SipHash key, so a decision
//! allocates nothing; two keys whose hashes collide share a bucket (about one
//! pair in 10^9 at 100,000 keys, and the seed cannot be predicted by clients).
//! The key table never holds more than `max_keys` entries (plus at most one per
//! concurrently deciding thread): when it is full, a sweep drops the keys whose
//! state is indistinguishable from a fresh one, and keys still without room share
//! one overflow bucket with the per-key rate, so a flood of unique keys is
//! limited collectively instead of growing memory.
//!
//! A refusal is `ProxyError` `RateLimited` (429) with `Retry-After` from the
//! limiter's earliest allowed time and the `RateLimit-Policy` / `RateLimit`
//! fields of draft-ietf-httpapi-ratelimit-headers-10. In shadow mode the
//! would-be refusals are counted and the request passes.
//!
//! The limiter runs on the proxy's clock ([`ProxyClock`] over [`crate::time`]), so
//! tests pause and advance tokio's time. One concern per file: `policy` (the
//! decision as values, governor's quota), `keys` (key extraction and the bounded
//! key table), `headers` (the draft's response fields), `clock`, and the tower
//! [`RateLimitLayer`] / [`RateLimit`]. [`global`] is the local bucket of a
//! cluster-wide limit (`global_rate_limit`), whose rate the control plane sets.

mod clock;
pub mod global;
mod headers;
mod keys;
mod layer;
mod policy;
mod service;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use http::{HeaderMap, HeaderValue, Request};

pub use clock::ProxyClock;
pub use global::{GlobalLimitLayer, GlobalLimiter};
pub use headers::{RATELIMIT, RATELIMIT_POLICY};
pub use layer::RateLimitLayer;
pub use policy::{Decision, Scope, Standing};
pub use service::RateLimit;

use crate::config::{Rate, RateLimitConfig};
use crate::error::{ErrorKind, ProxyError};
use crate::observe;
use keys::{BoundedStore, KeySource, KeyTable, KeyedLimiter};
use policy::{quota, standing};

/// Shortest time between two sweeps of a full key table.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// The route-wide GCRA limiter.
type DirectLimiter<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// One GCRA limit with what the response headers need.
struct Limit<L> {
    limiter: L,
    rate: Rate,
    denied: metrics::Counter,
}

/// The per-key limit: key source, table and limiter.
struct Keyed<C: Clock> {
    source: KeySource,
    table: Arc<KeyTable>,
    limit: Arc<Limit<KeyedLimiter<C>>>,
}

/// A route's rate-limit state: built once per route, kept across reloads while
/// its config is unchanged. [`RateLimiter::check`] decides without tower.
pub struct RateLimiter<C: Clock = ProxyClock> {
    route: Option<Limit<DirectLimiter<C>>>,
    keyed: Option<Keyed<C>>,
    shadow: bool,
    clock: C,
    start: C::Instant,
    policy: Option<HeaderValue>,
    route_name: String,
}

impl RateLimiter {
    /// The limits of `config` for the route named `route`, on the proxy's clock.
    pub fn new(route: &str, config: &RateLimitConfig) -> Self {
        Self::with_clock(route, config, ProxyClock::new())
    }
}

impl<C> RateLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
{
    /// The limits of `config` for the route named `route`, on `clock`.
    pub fn with_clock(route: &str, config: &RateLimitConfig, clock: C) -> Self {
        let shadow = if config.shadow { "true" } else { "false" };
        let denied = |scope: Scope| {
            metrics::counter!(
                observe::RATE_LIMITED_TOTAL,
                "route" => route.to_owned(),
                "scope" => scope.label(),
                "shadow" => shadow
            )
        };
        let limit = config.route.map(|rate| Limit {
            limiter: DirectLimiter::new(quota(rate), InMemoryState::default(), clock.clone()),
            rate,
            denied: denied(Scope::Route),
        });
        let keyed = config.per_key.as_ref().map(|pk| {
            let table = Arc::new(KeyTable::new(pk.max_keys, route));
            let limiter =
                KeyedLimiter::new(quota(pk.rate), BoundedStore(table.clone()), clock.clone());
            Keyed {
                source: KeySource::new(&pk.key),
                table,
                limit: Arc::new(Limit {
                    limiter,
                    rate: pk.rate,
                    denied: denied(Scope::Key),
                }),
            }
        });
        let policy = headers::policy_value(
            route,
            limit.as_ref().map(|l| l.rate),
            keyed.as_ref().map(|k| k.limit.rate),
        );
        let start = clock.now();
        Self {
            route: limit,
            keyed,
            shadow: config.shadow,
            clock,
            start,
            policy,
            route_name: route.to_owned(),
        }
    }

    /// True in shadow mode: refusals are counted, not enforced.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The request's key for the per-key limit (`None` when there is none).
    pub fn key_of<B>(&self, req: &Request<B>) -> Option<u64> {
        Some(self.keyed.as_ref()?.source.key_of(req))
    }

    /// Hashes raw key bytes as [`RateLimiter::key_of`] does (0 without a per-key limit).
    pub fn hash_key(&self, bytes: &[u8]) -> u64 {
        self.keyed.as_ref().map_or(0, |k| k.source.hash(bytes))
    }

    /// Checks one request: the key limit first (when `key` is given and the route
    /// has one), then the route limit. Counts refusals, shadow ones too.
    pub fn check(&self, key: Option<u64>) -> Decision {
        let mut decision = Decision {
            denied_by: None,
            route: None,
            key: None,
        };
        if let (Some(keyed), Some(key)) = (&self.keyed, key) {
            let outcome = keyed.limit.limiter.check_key(&key);
            if keyed.table.full.load(Ordering::Relaxed) {
                self.sweep_soon(keyed);
            }
            let (standing, denied) = standing(keyed.limit.rate, outcome, &self.clock);
            decision.key = Some(standing);
            if denied {
                keyed.limit.denied.increment(1);
                decision.denied_by = Some(Scope::Key);
                // A refused key spends nothing of the route's shared quota.
                return decision;
            }
        }
        if let Some(route) = &self.route {
            let (standing, denied) = standing(route.rate, route.limiter.check(), &self.clock);
            decision.route = Some(standing);
            if denied {
                route.denied.increment(1);
                decision.denied_by = Some(Scope::Route);
            }
        }
        decision
    }

    /// The 429 error for a refused decision: `Retry-After` and the draft's fields.
    pub fn refusal(&self, decision: &Decision) -> ProxyError {
        ProxyError::new(ErrorKind::RateLimited)
            .with_retry_after(decision.wait())
            .with_headers(self.headers(decision))
    }

    /// `RateLimit-Policy` (every configured limit) and `RateLimit` (the limits the
    /// decision checked) in the Structured Field syntax of draft-ietf-httpapi-ratelimit-headers-10.
    pub fn headers(&self, decision: &Decision) -> HeaderMap {
        headers::fields(self.policy.as_ref(), &self.route_name, decision)
    }

    /// Tracked keys right now (0 without a per-key limit).
    pub fn tracked_keys(&self) -> usize {
        self.keyed.as_ref().map_or(0, |k| k.table.map.len())
    }

    /// Memory held by the key table's slots, in bytes (an estimate: 16 bytes of key and
    /// state plus one control byte per slot, over the table's current capacity).
    pub fn key_table_bytes(&self) -> usize {
        self.keyed
            .as_ref()
            .map_or(0, |k| k.table.map.capacity().saturating_mul(17))
    }

    /// Starts a sweep of the full key table unless one ran very recently or is running;
    /// off the request path on the blocking pool when a tokio runtime is present.
    fn sweep_soon(&self, keyed: &Keyed<C>) {
        let table = &keyed.table;
        let now = self.clock.now().duration_since(self.start).as_u64().max(1);
        let last = table.last_sweep.load(Ordering::Relaxed);
        let interval = u64::try_from(SWEEP_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return;
        }
        if table
            .sweeping
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        table.last_sweep.store(now, Ordering::Relaxed);
        let (limit, table) = (keyed.limit.clone(), keyed.table.clone());
        let job = move || keys::sweep(&limit.limiter, &table);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(job)),
            Err(_) => job(),
        }
    }
}

#[cfg(test)]
mod tests;
