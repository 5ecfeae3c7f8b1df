//! The store of cached responses: the key, the entry and its age, and the
//! [`moka`] cache that bounds them in bytes.
//!
//! Memory is bounded by a moka cache weighed in bytes (key, headers and body);
//! each entry expires in moka after its freshness plus stale-if-error horizon.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use super::policy::Policy;
use super::CACHE_HEADER;
use crate::body::{self, Body};
use crate::time::{self, Instant};

/// Fixed per-entry bookkeeping charged to the memory bound besides its bytes.
const ENTRY_OVERHEAD: usize = 256;

/// The stored entries of one route, bounded in bytes.
pub(super) struct Store {
    entries: moka::sync::Cache<Key, Arc<Entry>>,
}

impl Store {
    /// An empty store holding at most `max_bytes` (keys, headers and bodies).
    pub(super) fn new(max_bytes: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Key, entry: &Arc<Entry>| {
                u32::try_from(key.weight().saturating_add(entry.weight)).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .build();
        Self { entries }
    }

    /// The freshest usable entry for `keys` (in order): fresh, else stale-if-error-able.
    pub(super) fn lookup(&self, keys: &[&Key], now: Instant) -> Lookup {
        let mut stale = None;
        for key in keys {
            if let Some(entry) = self.entries.get(*key) {
                if entry.is_fresh(now) {
                    return Lookup::Fresh(entry);
                }
                if stale.is_none() && entry.is_usable_stale(now) {
                    stale = Some(entry);
                }
            }
        }
        stale.map_or(Lookup::Miss, Lookup::Stale)
    }

    /// Stores `entry` under `key`, replacing what was there.
    pub(super) fn insert(&self, key: Key, entry: Arc<Entry>) {
        self.entries.insert(key, entry);
    }

    /// Bytes currently charged to the memory bound.
    pub(super) fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Entries currently stored.
    pub(super) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Applies pending evictions and expirations now.
    pub(super) fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }
}

/// What a lookup found.
pub(super) enum Lookup {
    /// A fresh entry: answer it.
    Fresh(Arc<Entry>),
    /// No fresh entry, but one that may stand in if the upstream fails.
    Stale(Arc<Entry>),
    /// Nothing usable.
    Miss,
}

/// The cache key: method, host (lower-case), path and query, and the values of the
/// route's `key_headers` in order. Compared whole, so distinct requests never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    method: Method,
    host: Box<[u8]>,
    target: Box<str>,
    varies: Box<[Box<[HeaderValue]>]>,
}

impl Key {
    /// The key of `req` under the route's `key_headers`.
    pub(super) fn of(req: &Request<Body>, key_headers: &[HeaderName]) -> Self {
        let host = req
            .headers()
            .get(header::HOST)
            .map(HeaderValue::as_bytes)
            .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()))
            .unwrap_or_default()
            .to_ascii_lowercase()
            .into_boxed_slice();
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .into();
        let varies = key_headers
            .iter()
            .map(|name| req.headers().get_all(name).iter().cloned().collect())
            .collect();
        Self {
            method: req.method().clone(),
            host,
            target,
            varies,
        }
    }

    /// The same key for another method (a HEAD may be answered from a GET entry).
    pub(super) fn with_method(&self, method: Method) -> Self {
        Self {
            method,
            ..self.clone()
        }
    }

    /// Bytes the key is charged for.
    fn weight(&self) -> usize {
        let varies: usize = self
            .varies
            .iter()
            .flat_map(|values| values.iter())
            .map(|v| v.len() + 16)
            .sum();
        self.host.len() + self.target.len() + varies + 64
    }
}

/// A stored response.
pub(super) struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored_at: Instant,
    /// `Age` the response already had when it arrived.
    initial_age: Duration,
    /// How long from its origin the response is fresh.
    freshness: Duration,
    /// How long past freshness it may be served when the upstream fails.
    stale_if_error: Duration,
    weight: usize,
}

impl Entry {
    /// The entry for a response head and its whole body, kept per `policy`.
    pub(super) fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        policy: Policy,
    ) -> Self {
        crate::headers::strip_hop_by_hop(&mut headers);
        headers.remove(header::AGE);
        headers.remove(CACHE_HEADER);
        let header_bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let weight = ENTRY_OVERHEAD + header_bytes + body.len();
        Self {
            status,
            headers,
            body,
            stored_at: time::now(),
            initial_age: policy.initial_age,
            freshness: policy.freshness,
            stale_if_error: policy.stale_if_error,
            weight,
        }
    }

    /// How old the entry is at `now` (its `Age` on arrival included).
    fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Fresh at `now`.
    fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.freshness
    }

    /// Past freshness but within the stale-if-error horizon at `now` (or fresh).
    pub(super) fn is_usable_stale(&self, now: Instant) -> bool {
        self.age(now) < self.freshness.saturating_add(self.stale_if_error)
    }

    /// How long the entry is worth keeping from now: freshness left plus stale horizon.
    fn lifetime(&self) -> Duration {
        self.freshness
            .saturating_add(self.stale_if_error)
            .saturating_sub(self.initial_age)
    }

    /// The response a client gets from this entry (`HEAD`: no body).
    pub(super) fn respond(&self, how: &'static str, head_only: bool) -> Response<Body> {
        let body = if head_only {
            body::empty()
        } else {
            body::full(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        let headers = response.headers_mut();
        headers.insert(
            header::AGE,
            HeaderValue::from(self.age(time::now()).as_secs()),
        );
        headers.insert(CACHE_HEADER, HeaderValue::from_static(how));
        response
    }
}

/// moka expiry: an entry leaves the cache when it can no longer be served at all.
struct EntryExpiry;

impl moka::Expiry<Key, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        entry: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime())
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        entry: &Arc<Entry>,
        _updated_at: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetime())
    }
}
