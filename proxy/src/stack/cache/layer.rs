//! The cache's tower layer: wraps a route's stack with [`CacheService`].

use std::sync::Arc;

use tower::Layer;

use super::{Cache, CacheService};

/// Wraps a route's stack with [`CacheService`].
#[derive(Clone)]
pub struct CacheLayer {
    cache: Arc<Cache>,
}

impl CacheLayer {
    /// Serves through `cache` (shared by every clone of the service).
    pub fn new(cache: Arc<Cache>) -> Self {
        Self { cache }
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService::new(inner, Arc::clone(&self.cache))
    }
}
