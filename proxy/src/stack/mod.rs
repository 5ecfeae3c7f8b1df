//! The per-route stack: one tower layer per concern, composed in [`route_stack`].
//!
//! Burst protection (rate limit, micro-cache, admission, circuit breaker) will
//! slot into the same function, each in its own module.

pub mod admission;
pub mod cache;
pub mod rate_limit;
pub mod retry;
pub mod timeout;

use std::sync::Arc;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;

use crate::balance::{Cluster, ClusterService};
use crate::body::Body;
use crate::config::RouteConfig;
use crate::error::{ErrorKind, ProxyError};
use rate_limit::{RateLimitLayer, RateLimiter};
use retry::RetryLayer;
use timeout::TimeoutLayer;

/// A route's composed stack, cheap to clone per request.
pub type RouteService = BoxCloneSyncService<Request<Body>, Response<Body>, ProxyError>;

/// Builds the stack of `route` towards `cluster`, outer to inner
/// (a layer added first sees the request first).
pub fn route_stack(route: &RouteConfig, cluster: Arc<Cluster>) -> RouteService {
    let label = metrics::SharedString::from(route.name.clone());
    let per_try = route.retry.as_ref().and_then(|r| r.per_try_timeout);
    let limiter = route
        .rate_limit
        .as_ref()
        .map(|rl| Arc::new(RateLimiter::new(&route.name, rl)));
    let service = ServiceBuilder::new()
        // Rate limits first: the cheapest refusal, before any work, queueing or retry.
        .layer(RateLimitLayer::optional(limiter))
        // The route deadline bounds the whole exchange, every try included.
        .layer(TimeoutLayer::new(route.timeout, ErrorKind::RequestTimeout))
        // Retries repeat only what is safe, inside the budget, within the deadline.
        .layer(RetryLayer::new(&label, route.retry.clone()))
        // Each try has its own deadline, so one stuck endpoint cannot eat the route's.
        .layer(TimeoutLayer::new(per_try, ErrorKind::UpstreamTimeout))
        // Innermost: choose an endpoint of the cluster and send on a pooled connection.
        .service(ClusterService::new(cluster));
    BoxCloneSyncService::new(service)
}
