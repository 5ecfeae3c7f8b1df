//! The per-route stack: one tower layer per concern, composed in [`route_stack`].
//!
//! The state some layers keep (rate-limit buckets, cached responses) lives in a
//! [`RouteState`] that a reload reuses when the route's settings for that layer did
//! not change; per-cluster state (admission, breaker) lives in the `Cluster`, which a
//! reload reuses when the cluster's config did not change.

pub mod admission;
pub mod cache;
pub mod rate_limit;
pub mod retry;
pub mod timeout;

use std::sync::Arc;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use crate::balance::{Cluster, ClusterService};
use crate::body::Body;
use crate::config::{CacheConfig, RateLimitConfig, RouteConfig};
use crate::error::{ErrorKind, ProxyError};
use admission::AdmissionLayer;
use cache::{Cache, CacheLayer};
use rate_limit::{GlobalLimitLayer, GlobalLimiter, RateLimitLayer, RateLimiter};
use retry::RetryLayer;
use timeout::TimeoutLayer;

/// A route's long-lived state, shared by its weighted arms and kept across reloads.
#[derive(Default)]
pub struct RouteState {
    rate_limit: Option<(RateLimitConfig, Arc<RateLimiter>)>,
    cache: Option<Arc<Cache>>,
    global: Option<Arc<GlobalLimiter>>,
}

impl RouteState {
    /// The state for `route`, reusing `previous` parts whose settings are unchanged.
    pub fn new(route: &RouteConfig, previous: Option<&RouteState>) -> Self {
        let rate_limit = route.rate_limit.as_ref().map(|config| {
            let kept = previous
                .and_then(|p| p.rate_limit.as_ref())
                .filter(|(old, _)| old == config);
            match kept {
                Some((old, limiter)) => (old.clone(), Arc::clone(limiter)),
                None => (
                    config.clone(),
                    Arc::new(RateLimiter::new(&route.name, config)),
                ),
            }
        });
        let cache = route.cache.as_ref().map(|config: &CacheConfig| {
            previous
                .and_then(|p| p.cache.as_ref())
                .filter(|c| c.config() == config)
                .cloned()
                .unwrap_or_else(|| Arc::new(Cache::new(config, &route.name)))
        });
        // The share survives a reload that keeps the limit (a lease stays in force).
        let global = route.global_rate_limit.map(|config| {
            previous
                .and_then(|p| p.global.as_ref())
                .filter(|g| *g.config() == config)
                .cloned()
                .unwrap_or_else(|| Arc::new(GlobalLimiter::new(&route.name, config)))
        });
        Self {
            rate_limit,
            cache,
            global,
        }
    }

    /// The route's cluster-wide limit, if it has one.
    pub fn global_limiter(&self) -> Option<&Arc<GlobalLimiter>> {
        self.global.as_ref()
    }

    /// The route's rate limiter, if it has one.
    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.rate_limit.as_ref().map(|(_, l)| l)
    }

    /// The route's cache, if it has one.
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.cache.as_ref()
    }
}

/// What the boxing layers of a route stack wrap: a cloneable service of proxy
/// requests whose futures may move between tasks.
pub trait RouteInner:
    Service<Request<Body>, Response = Response<Body>, Error = ProxyError, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> RouteInner for S where
    S: Service<
            Request<Body>,
            Response = Response<Body>,
            Error = ProxyError,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A route's composed stack, cheap to clone per request.
pub type RouteService = BoxCloneSyncService<Request<Body>, Response<Body>, ProxyError>;

/// Builds the stack of `route` towards `cluster`, outer to inner
/// (a layer added first sees the request first). Burst protection comes first so
/// that a request which will be refused costs as little as possible.
pub fn route_stack(route: &RouteConfig, state: &RouteState, cluster: Arc<Cluster>) -> RouteService {
    let label = metrics::SharedString::from(route.name.clone());
    let per_try = route.retry.as_ref().and_then(|r| r.per_try_timeout);
    let retry = route.retry.clone().filter(|r| r.attempts > 1);
    // Layers that have nothing to do for this route are left out (`option_layer`), so
    // an unprotected route pays for no extra future per request.
    let service = ServiceBuilder::new()
        // Rate limits first: the cheapest refusal, before any work, queueing or retry.
        .option_layer(state.rate_limiter().cloned().map(RateLimitLayer::new))
        // Then this proxy's share of the cluster-wide limit: a request refused per key
        // above spends none of it, and every arrival here counts as the demand reported.
        .option_layer(state.global_limiter().cloned().map(GlobalLimitLayer::new))
        // A cache hit or a coalesced miss costs no upstream capacity and no admission slot.
        .option_layer(state.cache().cloned().map(CacheLayer::new))
        // The route deadline bounds the whole exchange, queueing and every try included.
        .option_layer(
            route
                .timeout
                .map(|t| TimeoutLayer::new(t, ErrorKind::RequestTimeout)),
        )
        // Admission inside the deadline (queueing counts against it), outside retry
        // (an admitted request's retries don't queue again).
        .option_layer(
            cluster
                .admission()
                .cloned()
                .map(|a| AdmissionLayer::new(a, route.priority, route.timeout)),
        )
        // Retries repeat only what is safe, inside the budget, within the deadline;
        // the cluster's breaker caps retries in flight (max_retries).
        .option_layer(retry.map(|r| RetryLayer::new(&label, r, cluster.breaker().cloned())))
        // Each try has its own deadline, so one stuck endpoint cannot eat the route's.
        .option_layer(per_try.map(|t| TimeoutLayer::new(t, ErrorKind::UpstreamTimeout)))
        // Innermost: breaker check, then an endpoint of the cluster on a pooled connection.
        .service(ClusterService::new(cluster));
    BoxCloneSyncService::new(service)
}

/// Takes the service that `poll_ready` drove to readiness, leaving a fresh clone in
/// its place (tower's take-the-ready idiom for services that call from a future).
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
