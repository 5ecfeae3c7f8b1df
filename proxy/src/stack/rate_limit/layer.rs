//! The rate limiter's tower layer: wraps a route's stack with [`RateLimit`].

use std::sync::Arc;

use governor::clock::Clock;
use tower::Layer;

use super::{ProxyClock, RateLimit, RateLimiter};

/// Wraps a service with [`RateLimit`].
#[derive(Clone)]
pub struct RateLimitLayer<C: Clock = ProxyClock> {
    limiter: Arc<RateLimiter<C>>,
}

impl<C: Clock> RateLimitLayer<C> {
    /// Limits calls with `limiter`.
    pub fn new(limiter: Arc<RateLimiter<C>>) -> Self {
        Self { limiter }
    }
}

impl<S, C: Clock> Layer<S> for RateLimitLayer<C> {
    type Service = RateLimit<S, C>;

    fn layer(&self, inner: S) -> RateLimit<S, C> {
        RateLimit::new(inner, Arc::clone(&self.limiter))
    }
}
