//! The local half of a cluster-wide limit (`global_rate_limit`): a GCRA bucket
//! whose rate is this proxy's share, changed at run time by the control client
//! (`control_client::quota`) without a lock on the request path.
//!
//! The control plane splits the route's `rps` among the proxies serving it; a
//! proxy's share is a lease, and without one the bucket runs at `fallback_rps`.
//! The bucket's burst is the same part of the configured `burst` as the share is
//! of `rps` (at least 1 while the share is above 0), so the bursts of all the
//! proxies add up to at most `burst`, as their rates add up to at most `rps`.
//!
//! A lease carries its end: from that instant the bucket runs at `fallback_rps`
//! by itself, whether or not the report loop has run since. One decision is two
//! relaxed atomic reads (lease end, share), a compare-and-swap of the
//! theoretical arrival time and one relaxed counter of arrivals (the demand the
//! proxy reports, refused requests included).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::config::GlobalRateLimitConfig;
use crate::error::{ErrorKind, ProxyError};
use crate::observe;
use crate::time::{self, Instant};

/// Gauge: this proxy's share of a route's cluster-wide limit, requests per second.
pub const GLOBAL_LIMIT_SHARE: &str = "floodgate_route_global_limit_share";

const NANOS: u64 = 1_000_000_000;

/// One GCRA step at `now` (ns) with theoretical arrival time `tat` (ns): `Ok(new
/// tat)` when a request passes at `rps` with at most `burst` at once, else
/// `Err(wait)` until one can. A rate or burst of 0 refuses with a one-second wait.
pub fn gcra(tat: u64, now: u64, rps: u32, burst: u32) -> Result<u64, Duration> {
    if rps == 0 || burst == 0 {
        return Err(Duration::from_secs(1));
    }
    let interval = NANOS / u64::from(rps);
    let tolerance = interval.saturating_mul(u64::from(burst));
    let next = tat.max(now).saturating_add(interval);
    let limit = now.saturating_add(tolerance);
    if next <= limit {
        Ok(next)
    } else {
        Err(Duration::from_nanos(next - limit))
    }
}

/// The bucket size of a proxy whose share is `share` rps of `config`: the same
/// part of `burst` (rounded down), at least 1 while `share` is above 0.
pub fn burst_for(share: u32, config: &GlobalRateLimitConfig) -> u32 {
    if share == 0 {
        return 0;
    }
    let part = u64::from(share) * u64::from(config.burst) / u64::from(config.rps.max(1));
    u32::try_from(part).unwrap_or(u32::MAX).max(1)
}

/// `rps` and its burst in one word (rps high, burst low).
fn pack(rps: u32, config: &GlobalRateLimitConfig) -> u64 {
    (u64::from(rps) << 32) | u64::from(burst_for(rps, config))
}

/// The rps and burst of a packed word.
fn rate_of(params: u64) -> (u32, u32) {
    let rps = u32::try_from(params >> 32).unwrap_or(u32::MAX);
    let burst = u32::try_from(params & u64::from(u32::MAX)).unwrap_or(u32::MAX);
    (rps, burst)
}

/// A route's cluster-wide limit on this proxy.
pub struct GlobalLimiter {
    route: String,
    config: GlobalRateLimitConfig,
    /// The lease's share: rps in the high 32 bits, burst in the low 32.
    params: AtomicU64,
    /// When the lease runs out, ns since `start` (0: no lease); from then on the
    /// bucket runs at `fallback_rps`, to the nanosecond, whatever the report loop does.
    until: AtomicU64,
    /// `fallback_rps` and its burst, packed like `params`.
    fallback: u64,
    /// Theoretical arrival time, ns since `start`.
    tat: AtomicU64,
    start: Instant,
    /// Arrivals at this limiter, refused ones included (cumulative).
    offered: AtomicU64,
    denied: metrics::Counter,
    share_gauge: metrics::Gauge,
}

impl GlobalLimiter {
    /// The limit of `config` for the route named `route`, at `fallback_rps` until a
    /// lease arrives.
    pub fn new(route: &str, config: GlobalRateLimitConfig) -> Self {
        let fallback = pack(config.fallback_rps, &config);
        let limiter = Self {
            route: route.to_owned(),
            config,
            params: AtomicU64::new(fallback),
            until: AtomicU64::new(0),
            fallback,
            tat: AtomicU64::new(0),
            start: time::now(),
            offered: AtomicU64::new(0),
            denied: metrics::counter!(
                observe::RATE_LIMITED_TOTAL,
                "route" => route.to_owned(),
                "scope" => "global",
                "shadow" => "false"
            ),
            share_gauge: metrics::gauge!(GLOBAL_LIMIT_SHARE, "route" => route.to_owned()),
        };
        limiter.share_gauge.set(f64::from(config.fallback_rps));
        limiter
    }

    /// The route's name (the control plane's key for the limit).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The configured limit.
    pub fn config(&self) -> &GlobalRateLimitConfig {
        &self.config
    }

    /// Puts a lease of `rps` in force until `until` (its burst from [`burst_for`]);
    /// None: `fallback_rps` from now on.
    pub fn set_lease(&self, lease: Option<(u32, Instant)>) {
        match lease {
            Some((rps, until)) => {
                self.params.store(pack(rps, &self.config), Relaxed);
                self.until.store(self.nanos(until).max(1), Relaxed);
                self.share_gauge.set(f64::from(rps));
            }
            None => {
                self.until.store(0, Relaxed);
                self.share_gauge.set(f64::from(self.config.fallback_rps));
            }
        }
    }

    /// The share in force now, rps: the lease's, or `fallback_rps` once it ran out.
    pub fn share(&self) -> u32 {
        rate_of(self.params_at(self.nanos(time::now()))).0
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn params_at(&self, now: u64) -> u64 {
        if now < self.until.load(Relaxed) {
            self.params.load(Relaxed)
        } else {
            self.fallback
        }
    }

    /// Requests that arrived so far, refused ones included.
    pub fn offered(&self) -> u64 {
        self.offered.load(Relaxed)
    }

    /// Decides one request now: `Err(wait)` when it is over the share.
    pub fn check(&self) -> Result<(), Duration> {
        self.offered.fetch_add(1, Relaxed);
        let now = self.nanos(time::now());
        let (rps, burst) = rate_of(self.params_at(now));
        let mut tat = self.tat.load(Relaxed);
        loop {
            let next = gcra(tat, now, rps, burst).inspect_err(|_| self.denied.increment(1))?;
            match self.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

/// Wraps a route's stack with [`GlobalLimit`].
#[derive(Clone)]
pub struct GlobalLimitLayer {
    limiter: std::sync::Arc<GlobalLimiter>,
}

impl GlobalLimitLayer {
    /// Limits calls with `limiter`.
    pub fn new(limiter: std::sync::Arc<GlobalLimiter>) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for GlobalLimitLayer {
    type Service = GlobalLimit<S>;

    fn layer(&self, inner: S) -> GlobalLimit<S> {
        GlobalLimit {
            inner,
            limiter: std::sync::Arc::clone(&self.limiter),
        }
    }
}

/// A service that refuses calls over this proxy's share with 429 (`rate_limited`).
#[derive(Clone)]
pub struct GlobalLimit<S> {
    inner: S,
    limiter: std::sync::Arc<GlobalLimiter>,
}

impl<S> Service<Request<Body>> for GlobalLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Body>, ProxyError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if let Err(wait) = self.limiter.check() {
            let refusal = ProxyError::new(ErrorKind::RateLimited).with_retry_after(wait);
            return Box::pin(std::future::ready(Err(refusal)));
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rps: u32, burst: u32, fallback_rps: u32) -> GlobalRateLimitConfig {
        GlobalRateLimitConfig {
            rps,
            burst,
            fallback_rps,
        }
    }

    #[test]
    fn gcra_passes_a_burst_then_the_rate() {
        let (mut tat, now) = (0, 5 * NANOS);
        for _ in 0..3 {
            tat = gcra(tat, now, 10, 3).unwrap();
        }
        let wait = gcra(tat, now, 10, 3).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(gcra(tat, now + 100_000_000, 10, 3).is_ok());
        assert!(gcra(0, now, 0, 3).is_err());
    }

    #[test]
    fn bursts_are_the_share_part_of_the_burst() {
        let c = config(300, 30, 10);
        assert_eq!(burst_for(150, &c), 15);
        assert_eq!(burst_for(1, &c), 1);
        assert_eq!(burst_for(0, &c), 0);
        assert_eq!(burst_for(300, &c), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn leases_take_effect_at_once_and_end_on_time() {
        let l = GlobalLimiter::new("r", config(100, 100, 2));
        assert_eq!(l.share(), 2);
        let passed = (0..10).filter(|_| l.check().is_ok()).count();
        assert_eq!(passed, 2, "fallback: 2 rps, burst 2");
        let until = time::now() + Duration::from_secs(3);
        l.set_lease(Some((50, until)));
        tokio::time::advance(Duration::from_secs(1)).await;
        let passed = (0..100).filter(|_| l.check().is_ok()).count();
        assert_eq!(passed, 50);
        l.set_lease(Some((0, until)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(l.check().is_err(), "a lease of 0 refuses");
        // The lease runs out without anyone calling: the fallback, to the instant.
        l.set_lease(Some((50, until)));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(l.share(), 50);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(l.share(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        let passed = (0..10).filter(|_| l.check().is_ok()).count();
        assert_eq!(passed, 2);
        l.set_lease(None);
        assert_eq!(l.share(), 2);
        assert_eq!(l.offered(), 121);
    }
}
