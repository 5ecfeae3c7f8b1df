//! The cache's tower service: answers from the store, coalesces identical
//! misses behind one leader, stores what may be stored and falls back to a stale
//! entry when the upstream fails.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response};
use tower::{Service, ServiceExt};

use super::body::{Fill, Head};
use super::coalesce::{follow, Leader, Outcome, Role};
use super::policy::{bypass_reason, is_error_status, policy};
use super::store::{Entry, Key, Lookup};
use super::{Cache, CACHE_HEADER};
use crate::body::Body;
use crate::error::ProxyError;
use crate::headers::content_length;
use crate::stack::RouteInner;
use crate::time;

/// How many times a follower re-joins after its leader was cancelled before it
/// goes upstream on its own.
const MAX_REJOINS: u32 = 3;

/// A service answering cacheable reads from memory and coalescing identical misses.
#[derive(Clone)]
pub struct CacheService<S> {
    inner: S,
    cache: Arc<Cache>,
}

impl<S> CacheService<S> {
    /// Serves through `cache`, sending misses to `inner`.
    pub fn new(inner: S, cache: Arc<Cache>) -> Self {
        Self { inner, cache }
    }
}

impl<S: RouteInner> Service<Request<Body>> for CacheService<S> {
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

/// One request through the cache: bypass, hit, follow a flight, or lead one.
async fn serve<S>(
    cache: Arc<Cache>,
    inner: S,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError> + Send,
    S::Future: Send,
{
    if bypass_reason(&cache.config, &req).is_some() {
        cache.bypass.increment(1);
        return forward(inner, req).await;
    }
    let head_only = req.method() == Method::HEAD;
    let key = Key::of(&req, &cache.config.key_headers);
    let get_key = head_only.then(|| key.with_method(Method::GET));
    let keys: Vec<&Key> = std::iter::once(&key).chain(get_key.as_ref()).collect();

    let mut rejoins = 0;
    // A follower waits this long at most, however often it re-joins.
    let deadline = time::now() + cache.config.lock_timeout;
    loop {
        let stale = match cache.store.lookup(&keys, time::now()) {
            Lookup::Fresh(entry) => {
                cache.hit.increment(1);
                return Ok(entry.respond("HIT", head_only));
            }
            Lookup::Stale(entry) => Some(entry),
            Lookup::Miss => None,
        };
        let stored = || match cache.store.lookup(&keys, time::now()) {
            Lookup::Fresh(entry) => Some(entry),
            Lookup::Stale(_) | Lookup::Miss => None,
        };
        let rx = match cache.flights.join(&key, stored) {
            Role::Hit(entry) => {
                cache.hit.increment(1);
                return Ok(entry.respond("HIT", head_only));
            }
            Role::Leader(leader) => {
                return fetch(&cache, inner, req, Some(leader), stale).await;
            }
            Role::Follower(rx) => rx,
        };
        match follow(rx, deadline).await {
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

/// A miss: goes upstream, falls back to `stale` on failure, and — for the
/// `leader` of a flight — streams the response to its client while filling the
/// store (see [`Fill`]), telling the followers what they may answer.
async fn fetch<S>(
    cache: &Arc<Cache>,
    inner: S,
    req: Request<Body>,
    leader: Option<Leader>,
    stale: Option<Arc<Entry>>,
) -> Result<Response<Body>, ProxyError>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
{
    let head_only = req.method() == Method::HEAD;
    // The fill's deadline runs from the flight's start, as the followers' waits do.
    let deadline = time::now() + cache.config.lock_timeout;
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
        if let Some(entry) = stale.filter(|e| e.is_usable_stale(time::now())) {
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
    let Some(leader) = leader else {
        // Not leading a flight: nothing of this answer is stored.
        return Ok(mark(response, "MISS"));
    };
    let limit = cache.config.max_object_bytes;
    let too_large = content_length(response.headers()).is_some_and(|len| len > limit);
    let policy = policy(&cache.config, response.status(), response.headers());
    let Some(policy) = policy.filter(|_| !too_large) else {
        leader.finish(Outcome::Unshareable);
        return Ok(mark(response, "MISS"));
    };
    let (parts, body) = response.into_parts();
    let head = Head {
        status: parts.status,
        headers: parts.headers.clone(),
        policy,
    };
    let fill = Fill::new(body, Arc::clone(cache), leader, head, deadline);
    Ok(mark(Response::from_parts(parts, Body::new(fill)), "MISS"))
}

/// Marks a response with how the cache answered it.
fn mark(mut response: Response<Body>, how: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(how));
    response
}
