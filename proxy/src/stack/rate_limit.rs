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

use std::cell::Cell;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{NotUntil, Quota};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::config::{Rate, RateKey, RateLimitConfig};
use crate::error::{ErrorKind, ProxyError};
use crate::headers::ClientIp;
use crate::observe;

/// `RateLimit-Policy` response field (draft-ietf-httpapi-ratelimit-headers-10).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` response field (draft-ietf-httpapi-ratelimit-headers-10).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Shortest time between two sweeps of a full key table.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Which limit a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The limit shared by every request of the route.
    Route,
    /// The limit of the request's key.
    Key,
}

impl Scope {
    /// The `scope` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Key => "key",
        }
    }
}

/// Where a request stands against one limit after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Requests that could still pass at once (0 when refused).
    pub remaining: u32,
    /// When refused, the earliest time a request can pass; when admitted, the
    /// time until the full burst is available again.
    pub reset: Duration,
}

/// The outcome of checking one request against a route's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The limit that refused the request; `None` when it is admitted.
    pub denied_by: Option<Scope>,
    /// The route limit's standing, when it was checked.
    pub route: Option<Standing>,
    /// The key limit's standing, when it was checked.
    pub key: Option<Standing>,
}

impl Decision {
    /// True when every limit admitted the request.
    pub fn is_allowed(&self) -> bool {
        self.denied_by.is_none()
    }

    /// How long to wait before a retry can pass (zero when admitted).
    pub fn wait(&self) -> Duration {
        let standing = match self.denied_by {
            None => None,
            Some(Scope::Route) => self.route,
            Some(Scope::Key) => self.key,
        };
        standing.map_or(Duration::ZERO, |s| s.reset)
    }
}

/// Hasher for already-hashed `u64` keys: one multiply spreads the bits over
/// both ends of the word (hashbrown reads the top bits, dashmap the next ones).
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyMap = DashMapStateStore<u64, BuildHasherDefault<KeyHasher>>;

/// The bounded key table behind the keyed GCRA limiter.
struct KeyTable {
    map: KeyMap,
    /// One bucket shared by keys that found the table full.
    overflow: InMemoryState,
    max_keys: usize,
    /// Keys in `map`, counted on insert and reset by each sweep (never under).
    len: AtomicUsize,
    /// A new key found the table full since the last sweep.
    full: AtomicBool,
    sweeping: AtomicBool,
    /// Clock reading (nanoseconds since the limiter started) of the last sweep.
    last_sweep: AtomicU64,
    overflowed: metrics::Counter,
    keys: metrics::Gauge,
}

/// A [`StateStore`] over a shared [`KeyTable`]: known keys and new keys while
/// there is room get their own cell; other keys share the overflow cell.
#[derive(Clone)]
struct BoundedStore(Arc<KeyTable>);

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let table = &*self.0;
        if table.len.load(Ordering::Relaxed) >= table.max_keys && !table.map.contains_key(key) {
            table.full.store(true, Ordering::Relaxed);
            table.overflowed.increment(1);
            return table.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        // A cell seen empty was just inserted (by us, or by a racing thread:
        // then the count is one high until the next sweep, which is harmless).
        let fresh = Cell::new(false);
        let result = table.map.measure_and_replace(key, |prev| {
            if prev.is_none() {
                fresh.set(true);
            }
            f(prev)
        });
        if fresh.get() {
            table.len.fetch_add(1, Ordering::Relaxed);
            table.keys.increment(1.0);
        }
        result
    }
}

impl ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.0.map, drop_below);
        self.0.len.store(self.0.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.map.len()
    }

    fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }
}

type DirectLimiter<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;
type KeyedLimiter<C> = governor::RateLimiter<u64, BoundedStore, C, StateInformationMiddleware>;

/// One GCRA limit with what the response headers need.
struct Limit<L> {
    limiter: L,
    rate: Rate,
    denied: metrics::Counter,
}

/// How the per-key limit finds a request's key.
enum KeySource {
    ClientIp,
    Header(HeaderName),
    PathSegment(usize),
}

/// The per-key limit: key source, hasher, table and limiter.
struct Keyed<C: Clock> {
    source: KeySource,
    hasher: RandomState,
    /// The key of requests that lack theirs (no header, path too short).
    missing: u64,
    table: Arc<KeyTable>,
    limit: Arc<Limit<KeyedLimiter<C>>>,
}

/// A route's rate-limit state: built once per route, kept across reloads while
/// its config is unchanged. [`RateLimiter::check`] decides without tower.
pub struct RateLimiter<C: Clock = DefaultClock> {
    route: Option<Limit<DirectLimiter<C>>>,
    keyed: Option<Keyed<C>>,
    shadow: bool,
    clock: C,
    start: C::Instant,
    policy: Option<HeaderValue>,
    route_name: String,
}

impl RateLimiter {
    /// The limits of `config` for the route named `route`, on the real clock.
    pub fn new(route: &str, config: &RateLimitConfig) -> Self {
        Self::with_clock(route, config, DefaultClock::default())
    }
}

impl<C> RateLimiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
{
    /// The limits of `config` for the route named `route`, on `clock` (tests use a fake one).
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
            let table = Arc::new(KeyTable {
                map: KeyMap::with_hasher(BuildHasherDefault::default()),
                overflow: InMemoryState::default(),
                max_keys: pk.max_keys.max(1),
                len: AtomicUsize::new(0),
                full: AtomicBool::new(false),
                sweeping: AtomicBool::new(false),
                last_sweep: AtomicU64::new(0),
                overflowed: metrics::counter!(
                    observe::RATE_LIMIT_OVERFLOW_TOTAL, "route" => route.to_owned()
                ),
                keys: metrics::gauge!(observe::RATE_LIMIT_KEYS, "route" => route.to_owned()),
            });
            let limiter =
                KeyedLimiter::new(quota(pk.rate), BoundedStore(table.clone()), clock.clone());
            let hasher = RandomState::new();
            Keyed {
                source: match &pk.key {
                    RateKey::ClientIp => KeySource::ClientIp,
                    RateKey::Header(name) => KeySource::Header(name.clone()),
                    RateKey::PathSegment(n) => KeySource::PathSegment(*n),
                },
                missing: hasher.hash_one(()),
                hasher,
                table,
                limit: Arc::new(Limit {
                    limiter,
                    rate: pk.rate,
                    denied: denied(Scope::Key),
                }),
            }
        });
        let mut policies = Vec::new();
        if let Some(l) = &limit {
            policies.push(policy_item(route, Scope::Route, l.rate));
        }
        if let Some(k) = &keyed {
            policies.push(policy_item(route, Scope::Key, k.limit.rate));
        }
        let start = clock.now();
        Self {
            route: limit,
            keyed,
            shadow: config.shadow,
            clock,
            start,
            policy: (!policies.is_empty())
                .then(|| HeaderValue::from_str(&policies.join(", ")).ok())
                .flatten(),
            route_name: route.to_owned(),
        }
    }

    /// True in shadow mode: refusals are counted, not enforced.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// The request's key for the per-key limit (`None` when there is none).
    pub fn key_of<B>(&self, req: &Request<B>) -> Option<u64> {
        let keyed = self.keyed.as_ref()?;
        let key = match &keyed.source {
            KeySource::ClientIp => req
                .extensions()
                .get::<ClientIp>()
                .map(|ip| keyed.hasher.hash_one(ip.0)),
            KeySource::Header(name) => req
                .headers()
                .get(name)
                .map(|v| keyed.hasher.hash_one(v.as_bytes())),
            KeySource::PathSegment(n) => {
                let path = req.uri().path();
                path.strip_prefix('/')
                    .unwrap_or(path)
                    .split('/')
                    .nth(n.saturating_sub(1))
                    .map(|segment| keyed.hasher.hash_one(segment.as_bytes()))
            }
        };
        Some(key.unwrap_or(keyed.missing))
    }

    /// Hashes raw key bytes as [`RateLimiter::key_of`] does (0 without a per-key limit).
    pub fn hash_key(&self, bytes: &[u8]) -> u64 {
        self.keyed.as_ref().map_or(0, |k| k.hasher.hash_one(bytes))
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
            let (standing, denied) = self.standing(keyed.limit.rate, outcome);
            decision.key = Some(standing);
            if denied {
                keyed.limit.denied.increment(1);
                decision.denied_by = Some(Scope::Key);
                // A refused key spends nothing of the route's shared quota.
                return decision;
            }
        }
        if let Some(route) = &self.route {
            let (standing, denied) = self.standing(route.rate, route.limiter.check());
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
        let mut headers = HeaderMap::new();
        if let Some(policy) = &self.policy {
            headers.insert(RATELIMIT_POLICY, policy.clone());
        }
        let mut items = Vec::with_capacity(2);
        for (scope, standing) in [(Scope::Route, decision.route), (Scope::Key, decision.key)] {
            let Some(s) = standing else { continue };
            let mut secs = s.reset.as_secs() + u64::from(s.reset.subsec_nanos() > 0);
            if decision.denied_by == Some(scope) {
                // Agree with `Retry-After`, which is at least one second.
                secs = secs.max(1);
            }
            items.push(format!(
                "{};r={};t={}",
                policy_name(&self.route_name, scope),
                s.remaining,
                secs
            ));
        }
        if let Ok(value) = HeaderValue::from_str(&items.join(", ")) {
            if !items.is_empty() {
                headers.insert(RATELIMIT, value);
            }
        }
        headers
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

    /// Standing and refusal from one limiter outcome.
    fn standing(
        &self,
        rate: Rate,
        outcome: Result<StateSnapshot, NotUntil<C::Instant>>,
    ) -> (Standing, bool) {
        match outcome {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let missing = u64::from(rate.burst.saturating_sub(remaining));
                let reset = Duration::from_nanos(
                    missing.saturating_mul(1_000_000_000) / u64::from(rate.rps.max(1)),
                );
                (Standing { remaining, reset }, false)
            }
            Err(not_until) => {
                let reset = not_until.wait_time_from(self.clock.now());
                (
                    Standing {
                        remaining: 0,
                        reset,
                    },
                    true,
                )
            }
        }
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
        let job = move || sweep(&limit.limiter, &table);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(job)),
            Err(_) => job(),
        }
    }
}

/// Drops keys whose state equals a fresh one's, gives memory back when the table
/// emptied enough, and lets new keys in again.
fn sweep<C: Clock>(limiter: &KeyedLimiter<C>, table: &KeyTable) {
    limiter.retain_recent();
    let len = table.map.len();
    if len <= table.max_keys / 2 {
        limiter.shrink_to_fit();
    }
    table.keys.set(len as f64);
    table.full.store(false, Ordering::Relaxed);
    table.sweeping.store(false, Ordering::Release);
}

/// governor's quota for a rate: `rps` per second, at most `burst` at once.
fn quota(rate: Rate) -> Quota {
    let rps = NonZeroU32::new(rate.rps).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rps).allow_burst(burst)
}

/// The policy's name as a Structured Field String: the route name, or
/// `<route>-key` for the per-key limit.
fn policy_name(route: &str, scope: Scope) -> String {
    let suffix = match scope {
        Scope::Route => "",
        Scope::Key => "-key",
    };
    let mut out = String::with_capacity(route.len() + suffix.len() + 2);
    out.push('"');
    for c in route.chars().chain(suffix.chars()) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

/// One `RateLimit-Policy` member: the sustained rate per one-second window.
fn policy_item(route: &str, scope: Scope, rate: Rate) -> String {
    format!("{};q={};w=1", policy_name(route, scope), rate.rps)
}

/// Wraps a service with [`RateLimit`].
#[derive(Clone)]
pub struct RateLimitLayer<C: Clock = DefaultClock> {
    limiter: Option<Arc<RateLimiter<C>>>,
}

impl<C: Clock> RateLimitLayer<C> {
    /// Limits calls with `limiter`.
    pub fn new(limiter: Arc<RateLimiter<C>>) -> Self {
        Self {
            limiter: Some(limiter),
        }
    }

    /// Limits calls with `limiter`, or passes every call through when it is `None`.
    pub fn optional(limiter: Option<Arc<RateLimiter<C>>>) -> Self {
        Self { limiter }
    }
}

impl<S, C: Clock> Layer<S> for RateLimitLayer<C> {
    type Service = RateLimit<S, C>;

    fn layer(&self, inner: S) -> RateLimit<S, C> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// A service that refuses calls over the route's rate limits with 429.
pub struct RateLimit<S, C: Clock = DefaultClock> {
    inner: S,
    limiter: Option<Arc<RateLimiter<C>>>,
}

impl<S: Clone, C: Clock> Clone for RateLimit<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<S, C> Service<Request<Body>> for RateLimit<S, C>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
    S::Future: Send + 'static,
    C: Clock + Clone + Send + Sync + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if let Some(limiter) = &self.limiter {
            let decision = limiter.check(limiter.key_of(&req));
            if !decision.is_allowed() && !limiter.is_shadow() {
                let refusal = limiter.refusal(&decision);
                return Box::pin(std::future::ready(Err(refusal)));
            }
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyedRateConfig;
    use governor::clock::FakeRelativeClock;
    use std::net::IpAddr;
    use tower::ServiceExt;

    fn config(
        route: Option<(u32, u32)>,
        per_key: Option<(RateKey, u32, u32, usize)>,
    ) -> RateLimitConfig {
        RateLimitConfig {
            route: route.map(|(rps, burst)| Rate { rps, burst }),
            per_key: per_key.map(|(key, rps, burst, max_keys)| KeyedRateConfig {
                key,
                rate: Rate { rps, burst },
                max_keys,
            }),
            shadow: false,
        }
    }

    fn limiter(cfg: &RateLimitConfig) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock("codes", cfg, clock.clone()), clock)
    }

    fn user() -> RateKey {
        RateKey::Header(HeaderName::from_static("x-user"))
    }

    #[test]
    fn gcra_admits_the_burst_then_one_per_interval() {
        let (l, clock) = limiter(&config(Some((10, 5)), None));
        for i in 0..5 {
            let d = l.check(None);
            assert!(d.is_allowed(), "request {i} of the burst");
            assert_eq!(d.route.map(|s| s.remaining), Some(4 - i));
        }
        let d = l.check(None);
        assert_eq!(d.denied_by, Some(Scope::Route));
        assert_eq!(d.wait(), Duration::from_millis(100));
        clock.advance(Duration::from_millis(99));
        assert!(!l.check(None).is_allowed());
        clock.advance(Duration::from_millis(1));
        assert!(l.check(None).is_allowed());
        assert!(!l.check(None).is_allowed());
        // A long idle period refills no more than the burst.
        clock.advance(Duration::from_secs(60));
        let admitted = (0..20).filter(|_| l.check(None).is_allowed()).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn gcra_long_run_rate_matches_rps_plus_burst() {
        let (l, clock) = limiter(&config(Some((100, 10)), None));
        let mut admitted = 0;
        // Ten seconds, one attempt every millisecond (1000/s against 100/s).
        for _ in 0..10_000 {
            if l.check(None).is_allowed() {
                admitted += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        assert!((1_008..=1_011).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn one_noisy_key_does_not_limit_another() {
        let (l, _clock) = limiter(&config(None, Some((user(), 5, 5, 100))));
        let noisy = l.hash_key(b"noisy");
        let quiet = l.hash_key(b"quiet");
        let noisy_ok = (0..50)
            .filter(|_| l.check(Some(noisy)).is_allowed())
            .count();
        assert_eq!(noisy_ok, 5);
        let d = l.check(Some(noisy));
        assert_eq!(d.denied_by, Some(Scope::Key));
        assert_eq!(d.wait(), Duration::from_millis(200));
        let quiet_ok = (0..5).filter(|_| l.check(Some(quiet)).is_allowed()).count();
        assert_eq!(quiet_ok, 5);
    }

    #[test]
    fn refused_keys_do_not_spend_the_route_quota() {
        let (l, _clock) = limiter(&config(Some((10, 10)), Some((user(), 1, 2, 100))));
        let noisy = l.hash_key(b"noisy");
        let noisy_ok = (0..20)
            .filter(|_| l.check(Some(noisy)).is_allowed())
            .count();
        assert_eq!(noisy_ok, 2);
        // The route kept 10 - 2; eight distinct users get one each, the ninth is refused.
        for i in 0..8u8 {
            assert!(l.check(Some(l.hash_key(&[i]))).is_allowed(), "user {i}");
        }
        let d = l.check(Some(l.hash_key(b"ninth")));
        assert_eq!(d.denied_by, Some(Scope::Route));
        assert_eq!(d.key.map(|s| s.remaining), Some(1));
    }

    #[test]
    fn a_unique_key_flood_keeps_the_table_bounded() {
        let max_keys = 10_000;
        let (l, clock) = limiter(&config(None, Some((user(), 20, 40, max_keys))));
        let mut admitted = 0usize;
        for key in 0..1_000_000u64 {
            if l.check(Some(key)).is_allowed() {
                admitted += 1;
            }
            if key % 100_000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        assert!(l.tracked_keys() <= max_keys, "{} keys", l.tracked_keys());
        // Every tracked key got its own first request; the rest shared one
        // overflow bucket (40 at once, plus 20/s over the 10 fake milliseconds).
        assert!(admitted <= max_keys + 41, "admitted {admitted}");
        assert!(admitted >= max_keys, "admitted {admitted}");
        // Slots: hashbrown keeps at most twice the entries (plus a shard's rounding).
        assert!(
            l.key_table_bytes() <= 17 * (2 * max_keys + 4096),
            "{} bytes",
            l.key_table_bytes()
        );
    }

    #[test]
    fn idle_keys_are_swept_to_make_room() {
        let (l, clock) = limiter(&config(None, Some((user(), 10, 10, 100))));
        for key in 0..100u64 {
            assert!(l.check(Some(key)).is_allowed());
        }
        assert_eq!(l.tracked_keys(), 100);
        // Once every bucket has refilled, their state is the same as a fresh one's.
        clock.advance(Duration::from_secs(5));
        assert!(l.check(Some(1_000)).is_allowed());
        assert!(l.tracked_keys() < 100, "{} keys", l.tracked_keys());
        assert!(l.check(Some(1_000)).is_allowed());
        assert_eq!(l.tracked_keys(), 1, "the new key has its own bucket now");
    }

    #[test]
    fn keys_beyond_the_bound_share_one_overflow_bucket() {
        let (l, _clock) = limiter(&config(None, Some((user(), 1, 1, 2))));
        assert!(l.check(Some(1)).is_allowed());
        assert!(l.check(Some(2)).is_allowed());
        // Full of recent keys: newcomers share the overflow bucket (burst 1).
        assert!(l.check(Some(3)).is_allowed());
        assert_eq!(l.check(Some(4)).denied_by, Some(Scope::Key));
        assert_eq!(l.check(Some(5)).denied_by, Some(Scope::Key));
        assert_eq!(l.tracked_keys(), 2);
        // Known keys keep their own buckets.
        assert_eq!(l.check(Some(1)).denied_by, Some(Scope::Key));
    }

    /// Splits a Structured Field list of `"name";k=v;k=v` members (RFC 9651, the
    /// subset the draft uses: String items with Integer parameters).
    fn parse_sf_list(text: &str) -> Vec<(String, Vec<(String, u64)>)> {
        text.split(',')
            .map(|member| {
                let mut parts = member.trim().split(';');
                let name = parts.next().unwrap();
                assert!(name.starts_with('"') && name.ends_with('"') && name.len() >= 2);
                let params = parts
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        assert!(k.chars().all(|c| c.is_ascii_lowercase()), "key {k}");
                        (k.to_owned(), v.parse::<u64>().unwrap())
                    })
                    .collect();
                (name[1..name.len() - 1].to_owned(), params)
            })
            .collect()
    }

    #[test]
    fn refusal_headers_follow_the_draft() {
        let (l, _clock) = limiter(&config(Some((5000, 10000)), Some((user(), 2, 2, 10))));
        let k = l.hash_key(b"u");
        assert!(l.check(Some(k)).is_allowed());
        assert!(l.check(Some(k)).is_allowed());
        let d = l.check(Some(k));
        assert_eq!(d.denied_by, Some(Scope::Key));
        let h = l.headers(&d);
        assert_eq!(
            h[RATELIMIT_POLICY],
            "\"codes\";q=5000;w=1, \"codes-key\";q=2;w=1"
        );
        assert_eq!(h[RATELIMIT], "\"codes-key\";r=0;t=1");
        let policy = parse_sf_list(h[RATELIMIT_POLICY].to_str().unwrap());
        assert_eq!(policy[0].0, "codes");
        assert_eq!(policy[0].1, vec![("q".into(), 5000), ("w".into(), 1)]);
        let response = l.refusal(&d).to_response(None);
        assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[crate::error::REASON_HEADER],
            "rate_limited"
        );
        assert_eq!(response.headers()[RATELIMIT], "\"codes-key\";r=0;t=1");

        let (l, _clock) = limiter(&config(Some((1, 3)), None));
        for _ in 0..3 {
            assert!(l.check(None).is_allowed());
        }
        let d = l.check(None);
        assert_eq!(l.headers(&d)[RATELIMIT], "\"codes\";r=0;t=1");
        assert_eq!(d.wait(), Duration::from_secs(1));
    }

    #[test]
    fn policy_names_are_escaped() {
        assert_eq!(policy_name("a\"b\\c", Scope::Key), "\"a\\\"b\\\\c-key\"");
        assert_eq!(policy_name("é", Scope::Route), "\"_\"");
    }

    fn request(path: &str, user: Option<&str>, ip: Option<&str>) -> Request<Body> {
        let mut req = Request::get(path).body(crate::body::empty()).unwrap();
        if let Some(u) = user {
            req.headers_mut()
                .insert("x-user", HeaderValue::from_str(u).unwrap());
        }
        if let Some(ip) = ip {
            req.extensions_mut()
                .insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
        }
        req
    }

    #[test]
    fn keys_come_from_header_path_segment_or_client_ip() {
        let (l, _) = limiter(&config(None, Some((user(), 1, 1, 10))));
        let a = l.key_of(&request("/", Some("a"), None));
        assert_eq!(a, l.key_of(&request("/x", Some("a"), None)));
        assert_ne!(a, l.key_of(&request("/", Some("b"), None)));
        // Requests without the header share one key.
        let none = l.key_of(&request("/", None, None));
        assert!(none.is_some());
        assert_eq!(none, l.key_of(&request("/y", None, Some("10.0.0.1"))));

        let (l, _) = limiter(&config(None, Some((RateKey::PathSegment(4), 1, 1, 10))));
        let code = l.key_of(&request("/api/v1/codes/42", None, None));
        assert_eq!(
            code,
            l.key_of(&request("/api/v2/status/42?x=1", None, None))
        );
        assert_ne!(code, l.key_of(&request("/api/v1/codes/43", None, None)));
        assert_eq!(
            l.key_of(&request("/api", None, None)),
            l.key_of(&request("/api/v1", None, None))
        );

        let (l, _) = limiter(&config(None, Some((RateKey::ClientIp, 1, 1, 10))));
        let ip = l.key_of(&request("/", None, Some("10.0.0.1")));
        assert_eq!(ip, l.key_of(&request("/z", Some("u"), Some("10.0.0.1"))));
        assert_ne!(ip, l.key_of(&request("/", None, Some("10.0.0.2"))));

        let (l, _) = limiter(&config(Some((1, 1)), None));
        assert_eq!(l.key_of(&request("/", Some("a"), None)), None);
    }

    fn ok_service() -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = ProxyError,
        Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>,
    > + Clone {
        tower::service_fn(|_req: Request<Body>| {
            let fut: BoxFuture<'static, _> =
                Box::pin(async { Ok(Response::new(crate::body::empty())) });
            fut
        })
    }

    #[tokio::test]
    async fn the_layer_refuses_with_429_and_passes_in_shadow_mode() {
        let clock = FakeRelativeClock::default();
        let cfg = config(None, Some((user(), 1, 2, 10)));
        let l = Arc::new(RateLimiter::with_clock("codes", &cfg, clock.clone()));
        let svc = RateLimitLayer::new(l).layer(ok_service());
        for _ in 0..2 {
            assert!(svc
                .clone()
                .oneshot(request("/", Some("a"), None))
                .await
                .is_ok());
        }
        let err = svc
            .clone()
            .oneshot(request("/", Some("a"), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        let response = err.to_response(None);
        assert_eq!(response.headers()[RATELIMIT], "\"codes-key\";r=0;t=1");
        assert!(svc
            .clone()
            .oneshot(request("/", Some("b"), None))
            .await
            .is_ok());

        let mut shadow = cfg.clone();
        shadow.shadow = true;
        let l = Arc::new(RateLimiter::with_clock("codes", &shadow, clock));
        let svc = RateLimitLayer::new(l.clone()).layer(ok_service());
        for _ in 0..10 {
            assert!(svc
                .clone()
                .oneshot(request("/", Some("a"), None))
                .await
                .is_ok());
        }
        assert!(!l
            .check(l.key_of(&request("/", Some("a"), None)))
            .is_allowed());

        let svc = RateLimitLayer::<FakeRelativeClock>::optional(None).layer(ok_service());
        for _ in 0..10 {
            assert!(svc
                .clone()
                .oneshot(request("/", Some("a"), None))
                .await
                .is_ok());
        }
    }
}
