//! The rate limiter's tower service: refuses calls over the route's limits with
//! 429 before they cost anything, or only counts them in shadow mode.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use governor::clock::Clock;
use http::{Request, Response};
use tower::Service;

use super::{ProxyClock, RateLimiter};
use crate::body::Body;
use crate::error::ProxyError;

/// A service that refuses calls over the route's rate limits with 429.
pub struct RateLimit<S, C: Clock = ProxyClock> {
    inner: S,
    limiter: Arc<RateLimiter<C>>,
}

impl<S, C: Clock> RateLimit<S, C> {
    /// Limits calls to `inner` with `limiter`.
    pub fn new(inner: S, limiter: Arc<RateLimiter<C>>) -> Self {
        Self { inner, limiter }
    }
}

impl<S: Clone, C: Clock> Clone for RateLimit<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: Arc::clone(&self.limiter),
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
        let limiter = &self.limiter;
        let decision = limiter.check(limiter.key_of(&req));
        if !decision.is_allowed() && !limiter.is_shadow() {
            let refusal = limiter.refusal(&decision);
            return Box::pin(std::future::ready(Err(refusal)));
        }
        Box::pin(self.inner.call(req))
    }
}
