//! Micro-cache and request coalescing for GET and HEAD (opt-in per route).
//!
//! A burst of identical reads costs the upstream one request: the first miss of a
//! key becomes the *leader* and goes upstream; identical requests arriving while it
//! is in flight *follow* it and get a copy of what it stored. Fresh entries are
//! answered from memory (`x-floodgate-cache: HIT`), and when the upstream fails
//! (any 5xx-kind [`crate::error::ProxyError`] or a 500/502/503/504 response) an entry past its
//! freshness but within its stale-if-error horizon is answered instead (`STALE`).
//!
//! Safety first: only GET/HEAD without a body; requests with `Authorization` bypass
//! (unless `cache_authorized`), as do requests asking for `no-cache`/`no-store` or a
//! `Range`. A response is stored only if its status is heuristically cacheable
//! (RFC 9111 §4.2.2), it carries no `no-store`, `no-cache` or `private`, no
//! `Set-Cookie` (unless `cache_set_cookie`), and it varies on nothing but the
//! route's `key_headers`. Followers never receive a response that was not stored:
//! when the leader's response is uncacheable (or fails without a stale entry), each
//! follower goes upstream on its own; when the leader is cancelled, the followers
//! elect a new leader. No follower waits longer than the cache's `lock_timeout`
//! (5s, nginx's `proxy_cache_lock_timeout`): a leader whose upstream trickles is
//! left to stream to its own client, its followers go upstream on their own, and
//! nothing of the slow body is stored.
//!
//! One concern per file: `policy` holds the caching rules (pure), `store` the
//! entries and their memory bound, `coalesce` the flights of identical misses and
//! the followers' deadline, `body` the leader's body that streams to its client
//! while it fills the store (until `lock_timeout`), and [`CacheLayer`] /
//! [`CacheService`] the tower middleware.

mod body;
mod coalesce;
mod layer;
mod policy;
mod service;
mod store;

use std::sync::Arc;

pub use layer::CacheLayer;
pub use service::CacheService;

use crate::config::CacheConfig;
use crate::observe;
use coalesce::Flights;
use store::Store;

/// Response header telling how the cache answered: `HIT`, `MISS` or `STALE`.
pub const CACHE_HEADER: &str = "x-floodgate-cache";

/// A route's cache: the stored entries, the requests in flight, and the metrics.
///
/// Built once per route; reusable across reloads while its config is unchanged.
pub struct Cache {
    config: CacheConfig,
    store: Store,
    flights: Arc<Flights>,
    hit: metrics::Counter,
    miss: metrics::Counter,
    stale: metrics::Counter,
    bypass: metrics::Counter,
    coalesced: metrics::Counter,
}

impl Cache {
    /// A cache per `config`, counting `floodgate_cache_requests_total` under `route`.
    pub fn new(config: &CacheConfig, route: &str) -> Self {
        let route = metrics::SharedString::from(route.to_owned());
        let counter = |result: &'static str| {
            metrics::counter!(
                observe::CACHE_REQUESTS_TOTAL, "route" => route.clone(), "result" => result
            )
        };
        Self {
            config: config.clone(),
            store: Store::new(config.max_bytes),
            flights: Arc::default(),
            hit: counter("hit"),
            miss: counter("miss"),
            stale: counter("stale"),
            bypass: counter("bypass"),
            coalesced: counter("coalesced"),
        }
    }

    /// The config this cache was built from (to decide reuse on reload).
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Bytes currently charged to the memory bound (approximate until
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn weighted_size(&self) -> u64 {
        self.store.weighted_size()
    }

    /// Entries currently stored (approximate, as [`weighted_size`](Self::weighted_size)).
    pub fn entry_count(&self) -> u64 {
        self.store.entry_count()
    }

    /// Applies pending evictions and expirations now (moka batches them).
    pub fn run_pending_tasks(&self) {
        self.store.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests;
