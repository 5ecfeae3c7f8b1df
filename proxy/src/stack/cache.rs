//! Micro-cache and request coalescing for GET and HEAD (opt-in per route).
//!
//! A burst of identical reads costs the upstream one request: the first miss of a
//! key becomes the *leader* and goes upstream; identical requests arriving while it
//! is in flight *follow* it and get a copy of what it stored. Fresh entries are
//! answered from memory (`x-floodgate-cache: HIT`), and when the upstream fails
//! (any 5xx-kind [`ProxyError`] or a 500/502/503/504 response) an entry past its
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
//! elect a new leader.
//!
//! Memory is bounded by a [`moka`] cache weighed in bytes (key, headers and body);
//! each entry expires in moka after its freshness plus stale-if-error horizon.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use crate::body::{self, Body, BoxError};
use crate::config::CacheConfig;
use crate::error::ProxyError;
use crate::observe;

/// Response header telling how the cache answered: `HIT`, `MISS` or `STALE`.
pub const CACHE_HEADER: &str = "x-floodgate-cache";

/// How many times a follower re-joins after its leader was cancelled before it
/// goes upstream on its own.
const MAX_REJOINS: u32 = 3;

/// Fixed per-entry bookkeeping charged to the memory bound besides its bytes.
const ENTRY_OVERHEAD: usize = 256;

/// A route's cache: the stored entries, the requests in flight, and the metrics.
///
/// Built once per route; reusable across reloads while its config is unchanged.
pub struct Cache {
    config: CacheConfig,
    store: moka::sync::Cache<Key, Arc<Entry>>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    hit: metrics::Counter,
    miss: metrics::Counter,
    stale: metrics::Counter,
    bypass: metrics::Counter,
    coalesced: metrics::Counter,
}

impl Cache {
    /// A cache per `config`, counting `floodgate_cache_requests_total` under `route`.
    pub fn new(config: &CacheConfig, route: &str) -> Self {
        let store = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &Key, entry: &Arc<Entry>| {
                u32::try_from(key.weight().saturating_add(entry.weight)).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .build();
        let route = metrics::SharedString::from(route.to_owned());
        let counter = |result: &'static str| {
            metrics::counter!(
                observe::CACHE_REQUESTS_TOTAL, "route" => route.clone(), "result" => result
            )
        };
        Self {
            config: config.clone(),
            store,
            flights: Mutex::new(HashMap::new()),
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

    /// The freshest usable entry for `keys` (in order): fresh, else stale-if-error-able.
    fn lookup(&self, keys: &[&Key], now: Instant) -> Lookup {
        let mut stale = None;
        for key in keys {
            if let Some(entry) = self.store.get(*key) {
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

    /// Joins the flight for `key`, or starts it (re-checking the store under the lock,
    /// so a flight that just finished is seen as a hit rather than repeated).
    fn join(self: &Arc<Self>, keys: &[&Key], key: &Key) -> Role {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Lookup::Fresh(entry) = self.lookup(keys, Instant::now()) {
            return Role::Hit(entry);
        }
        if let Some(flight) = flights.get(key) {
            return Role::Follower(flight.tx.subscribe());
        }
        let (tx, _) = watch::channel(Outcome::Pending);
        let flight = Arc::new(Flight { tx });
        flights.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            cache: Arc::clone(self),
            key: key.clone(),
            flight,
            done: false,
        })
    }

    /// Ends a flight: forgets it (if still the current one for `key`) and wakes followers.
    fn end_flight(&self, key: &Key, flight: &Arc<Flight>, outcome: Outcome) {
        {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            if flights.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
                flights.remove(key);
            }
        }
        flight.tx.send_replace(outcome);
    }

    /// Why this request must not use the cache, if it must not.
    fn bypass_reason(&self, req: &Request<Body>) -> Option<&'static str> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Some("method");
        }
        if !req.body().is_end_stream() && req.body().size_hint().upper() != Some(0) {
            return Some("request body");
        }
        let headers = req.headers();
        if headers.contains_key(header::AUTHORIZATION) && !self.config.cache_authorized {
            return Some("authorization");
        }
        if headers.contains_key(header::RANGE) {
            return Some("range");
        }
        let cc = CacheControl::parse(headers);
        let pragma_no_cache = headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| contains_token(v.as_bytes(), b"no-cache"));
        if cc.no_store || cc.no_cache || pragma_no_cache {
            return Some("request cache-control");
        }
        None
    }

    /// How long `response` may be stored and served, or `None` if it must not be.
    fn policy(&self, response: &Response<Body>) -> Option<Policy> {
        policy(&self.config, response.status(), response.headers())
    }
}

/// A flight in progress: followers wait on its outcome.
struct Flight {
    tx: watch::Sender<Outcome>,
}

/// How a flight ended, as its followers see it.
#[derive(Clone)]
enum Outcome {
    /// The leader has not finished.
    Pending,
    /// The leader stored this entry: followers answer it.
    Stored(Arc<Entry>),
    /// The upstream failed and this stale entry was answered: followers answer it too.
    Stale(Arc<Entry>),
    /// Nothing shareable came back (uncacheable, too large, failed): each follower
    /// goes upstream on its own.
    Unshareable,
    /// The leader went away before an answer: followers elect a new one.
    Cancelled,
}

/// The first miss of a key; on drop without an outcome it wakes its followers.
struct Leader {
    cache: Arc<Cache>,
    key: Key,
    flight: Arc<Flight>,
    done: bool,
}

impl Leader {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.cache.end_flight(&self.key, &self.flight, outcome);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.done {
            self.cache
                .end_flight(&self.key, &self.flight, Outcome::Cancelled);
        }
    }
}

enum Role {
    Hit(Arc<Entry>),
    Follower(watch::Receiver<Outcome>),
    Leader(Leader),
}

enum Lookup {
    Fresh(Arc<Entry>),
    Stale(Arc<Entry>),
    Miss,
}

/// The cache key: method, host (lower-case), path and query, and the values of the
/// route's `key_headers` in order. Compared whole, so distinct requests never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    method: Method,
    host: Box<[u8]>,
    target: Box<str>,
    varies: Box<[Box<[HeaderValue]>]>,
}

impl Key {
    fn of(req: &Request<Body>, key_headers: &[HeaderName]) -> Self {
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
    fn with_method(&self, method: Method) -> Self {
        Self {
            method,
            ..self.clone()
        }
    }

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
struct Entry {
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
    fn new(status: StatusCode, mut headers: HeaderMap, body: Bytes, policy: Policy) -> Self {
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
            stored_at: Instant::now(),
            initial_age: policy.initial_age,
            freshness: policy.freshness,
            stale_if_error: policy.stale_if_error,
            weight,
        }
    }

    fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.freshness
    }

    fn is_usable_stale(&self, now: Instant) -> bool {
        self.age(now) < self.freshness.saturating_add(self.stale_if_error)
    }

    /// How long the entry is worth keeping from now: freshness left plus stale horizon.
    fn lifetime(&self) -> Duration {
        self.freshness
            .saturating_add(self.stale_if_error)
            .saturating_sub(self.initial_age)
    }

    /// The response a client gets from this entry (`HEAD`: no body).
    fn respond(&self, how: &'static str, head_only: bool) -> Response<Body> {
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
            HeaderValue::from(self.age(Instant::now()).as_secs()),
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

/// How a cacheable response is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    freshness: Duration,
    stale_if_error: Duration,
    initial_age: Duration,
}

/// Statuses cacheable without explicit freshness (RFC 9111 §4.2.2, RFC 9110 §15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether and how long a response with this head may be stored.
fn policy(config: &CacheConfig, status: StatusCode, headers: &HeaderMap) -> Option<Policy> {
    if !heuristically_cacheable(status) {
        return None;
    }
    let cc = CacheControl::parse(headers);
    if cc.no_store || cc.no_cache || cc.private {
        return None;
    }
    if headers.contains_key(header::SET_COOKIE) && !config.cache_set_cookie {
        return None;
    }
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !config
                .key_headers
                .iter()
                .any(|k| k.as_str().eq_ignore_ascii_case(name))
            {
                return None;
            }
        }
    }
    let freshness = match cc.s_maxage.or(cc.max_age) {
        Some(secs) => Duration::from_secs(secs),
        None => match expires_freshness(headers) {
            Some(freshness) => freshness,
            None => config.ttl,
        },
    };
    let initial_age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs);
    if freshness <= initial_age {
        return None;
    }
    let stale_if_error = if cc.must_revalidate {
        Duration::ZERO
    } else {
        cc.stale_if_error
            .map_or(config.stale_if_error, Duration::from_secs)
    };
    Some(Policy {
        freshness,
        stale_if_error,
        initial_age,
    })
}

/// Freshness from `Expires` (minus `Date`, or now), when `Expires` is present.
/// An unparseable `Expires` means "already expired" (RFC 9111 §5.3).
fn expires_freshness(headers: &HeaderMap) -> Option<Duration> {
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = parse_http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(parse_http_date)
        .unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// The `Cache-Control` directives the cache acts on (request or response).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    no_cache: bool,
    private: bool,
    must_revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
    stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` header. Unreadable values count as `no-store`;
    /// an unparseable age counts as 0; a repeated age keeps the smallest.
    fn parse(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                cc.no_store = true;
                continue;
            };
            for directive in split_directives(value) {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let secs = || arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                let keep_min = |slot: &mut Option<u64>, v: u64| {
                    *slot = Some(slot.map_or(v, |old| old.min(v)));
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => keep_min(&mut cc.max_age, secs()),
                    "s-maxage" => keep_min(&mut cc.s_maxage, secs()),
                    "stale-if-error" => keep_min(&mut cc.stale_if_error, secs()),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// Splits a `Cache-Control` value on commas outside quoted strings.
fn split_directives(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// 500, 502, 503 and 504: the responses stale-if-error stands in for (RFC 5861).
fn is_error_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

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
        CacheService {
            inner,
            cache: Arc::clone(&self.cache),
        }
    }
}

/// A service answering cacheable reads from memory and coalescing identical misses.
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: Arc<Cache>,
}

impl<S> Service<Request<Body>> for CacheService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    /// Always ready: a hit needs nothing from the inner stack; a miss drives its own
    /// clone of the inner service to readiness (so a hit never holds an admission slot).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(serve(Arc::clone(&self.cache), self.inner.clone(), req))
    }
}

async fn serve<S>(
    cache: Arc<Cache>,
    inner: S,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError> + Send,
    S::Future: Send,
{
    if cache.bypass_reason(&req).is_some() {
        cache.bypass.increment(1);
        return forward(inner, req).await;
    }
    let head_only = req.method() == Method::HEAD;
    let key = Key::of(&req, &cache.config.key_headers);
    let get_key = head_only.then(|| key.with_method(Method::GET));
    let keys: Vec<&Key> = std::iter::once(&key).chain(get_key.as_ref()).collect();

    let mut rejoins = 0;
    loop {
        let stale = match cache.lookup(&keys, Instant::now()) {
            Lookup::Fresh(entry) => {
                cache.hit.increment(1);
                return Ok(entry.respond("HIT", head_only));
            }
            Lookup::Stale(entry) => Some(entry),
            Lookup::Miss => None,
        };
        let mut rx = match cache.join(&keys, &key) {
            Role::Hit(entry) => {
                cache.hit.increment(1);
                return Ok(entry.respond("HIT", head_only));
            }
            Role::Leader(leader) => {
                return fetch(&cache, inner, req, Some(leader), stale).await;
            }
            Role::Follower(rx) => rx,
        };
        let outcome = {
            let waited = rx.wait_for(|o| !matches!(o, Outcome::Pending)).await;
            waited.map_or(Outcome::Cancelled, |o| o.clone())
        };
        match outcome {
            Outcome::Stored(entry) => {
                cache.coalesced.increment(1);
                return Ok(entry.respond("HIT", head_only));
            }
            Outcome::Stale(entry) => {
                cache.stale.increment(1);
                return Ok(entry.respond("STALE", head_only));
            }
            Outcome::Cancelled if rejoins < MAX_REJOINS => rejoins += 1,
            Outcome::Pending | Outcome::Cancelled | Outcome::Unshareable => {
                return fetch(&cache, inner, req, None, stale).await;
            }
        }
    }
}

/// Sends `req` through the inner stack.
async fn forward<S>(mut inner: S, req: Request<Body>) -> Result<Response<Body>, ProxyError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
{
    inner.ready().await?.call(req).await
}

/// A miss: goes upstream, stores what may be stored, falls back to `stale` on
/// failure, and tells the followers of `leader` (if any) what they may answer.
async fn fetch<S>(
    cache: &Cache,
    inner: S,
    req: Request<Body>,
    leader: Option<Leader>,
    stale: Option<Arc<Entry>>,
) -> Result<Response<Body>, ProxyError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
{
    let head_only = req.method() == Method::HEAD;
    let finish = |leader: Option<Leader>, outcome: Outcome| {
        if let Some(leader) = leader {
            leader.finish(outcome);
        }
    };
    let result = forward(inner, req).await;
    let failed = match &result {
        Ok(response) => is_error_status(response.status()),
        Err(e) => e.kind().status().is_server_error(),
    };
    if failed {
        if let Some(entry) = stale.filter(|e| e.is_usable_stale(Instant::now())) {
            cache.stale.increment(1);
            finish(leader, Outcome::Stale(Arc::clone(&entry)));
            return Ok(entry.respond("STALE", head_only));
        }
    }
    cache.miss.increment(1);
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            finish(leader, Outcome::Unshareable);
            return Err(e);
        }
    };
    let limit = cache.config.max_object_bytes;
    let too_large = content_length(response.headers()).is_some_and(|len| len > limit);
    let Some(policy) = cache.policy(&response).filter(|_| !too_large) else {
        finish(leader, Outcome::Unshareable);
        return Ok(mark(response, "MISS"));
    };
    let (parts, body) = response.into_parts();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match buffer(body, limit).await {
        Ok(bytes) => {
            let entry = Arc::new(Entry::new(
                parts.status,
                parts.headers.clone(),
                bytes.clone(),
                policy,
            ));
            let key = leader.as_ref().map(|l| l.key.clone());
            if let Some(key) = key {
                cache.store.insert(key, Arc::clone(&entry));
            }
            finish(leader, Outcome::Stored(entry));
            Ok(mark(Response::from_parts(parts, body::full(bytes)), "MISS"))
        }
        Err(replay) => {
            finish(leader, Outcome::Unshareable);
            Ok(mark(Response::from_parts(parts, replay), "MISS"))
        }
    }
}

fn mark(mut response: Response<Body>, how: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(how));
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `body` whole if it ends cleanly within `limit` bytes with no trailers.
/// Otherwise hands back a body that replays what was read and continues with the
/// rest (or the read error), so the client loses nothing.
async fn buffer(mut body: Body, limit: usize) -> Result<Bytes, Body> {
    let mut frames: VecDeque<Frame<Bytes>> = VecDeque::new();
    let mut len = 0usize;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let is_data = frame.is_data();
                if let Some(data) = frame.data_ref() {
                    len = len.saturating_add(data.len());
                }
                frames.push_back(frame);
                if !is_data || len > limit {
                    return Err(Body::new(Replay {
                        frames,
                        error: None,
                        rest: Some(body),
                    }));
                }
            }
            Some(Err(error)) => {
                return Err(Body::new(Replay {
                    frames,
                    error: Some(error),
                    rest: None,
                }));
            }
        }
    }
    if frames.len() == 1 {
        if let Some(Ok(data)) = frames.pop_front().map(Frame::into_data) {
            return Ok(data);
        }
    }
    let mut all = BytesMut::with_capacity(len);
    for frame in frames {
        if let Ok(data) = frame.into_data() {
            all.extend_from_slice(&data);
        }
    }
    Ok(all.freeze())
}

/// Frames already read, then an error or the rest of the original body.
struct Replay {
    frames: VecDeque<Frame<Bytes>>,
    error: Option<BoxError>,
    rest: Option<Body>,
}

impl http_body::Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
        let mut hint = SizeHint::new();
        hint.set_lower(read.saturating_add(rest.lower()));
        if let Some(upper) = rest.upper() {
            hint.set_upper(read.saturating_add(upper));
        }
        hint
    }
}

#[cfg(test)]
mod tests;
