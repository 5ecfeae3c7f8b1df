//! Per-endpoint connection pool: keep-alive HTTP/1.1 connections reused LIFO
//! per worker (driven by the request's task, see [`super::http1`]), or shared
//! multiplexed HTTP/2 connections ([`super::http2`]); plain TCP or TLS
//! ([`super::connect`]), within the cluster's connection limits ([`super::limits`]).
//!
//! Connecting is a separate step from sending, so a connect failure hands the
//! request back untouched (safe to retry for any method), and a pooled
//! connection that the upstream closed while idle is replaced transparently.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;

use super::connect::{connect, Transport, UpstreamTls};
use super::http1::{self, ConnTicket, Http1Body, Http1Conn, IdleConns};
use super::http2::{self, GuardedBody, Sender};
use super::limits::{ConnLimits, ConnPermit, PendingGuard};
use super::read_timeout::ReadTimeout;
use crate::body::Body;
use crate::config::{EndpointAddr, UpstreamProtocol};
use crate::error::ProxyError;

/// How a cluster's pools connect and how long they keep connections.
pub struct PoolSettings {
    /// TCP plus TLS handshake deadline.
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Longest silence of a response body between two reads (`read_timeout`).
    pub read_timeout: Duration,
    /// Most idle HTTP/1.1 connections kept.
    pub max_idle: usize,
    /// HTTP version spoken.
    pub protocol: UpstreamProtocol,
    /// TLS towards the endpoint, if configured.
    pub tls: Option<UpstreamTls>,
    /// Cluster-wide `max_connections` / `max_pending_requests`, shared by the cluster's pools.
    pub limits: Arc<ConnLimits>,
    /// The cluster's pools, for making room at `max_connections`.
    pub siblings: Siblings,
}

/// The pools of one cluster's endpoints, replaced whenever the endpoint set
/// changes, so that a request waiting at `max_connections` can close an idle
/// connection of another endpoint.
#[derive(Default)]
pub struct Siblings(ArcSwap<Vec<Weak<Pool>>>);

impl Siblings {
    /// Replaces the list with the pools of the current endpoint set.
    pub fn set(&self, pools: Vec<Weak<Pool>>) {
        self.0.store(Arc::new(pools));
    }
}

/// How often a request waiting for a connection re-checks on its own, in case a
/// freed connection went unsignalled (e.g. an uncounted health-check connection).
const PENDING_RECHECK: Duration = Duration::from_millis(250);

/// The connections to one endpoint.
pub struct Pool {
    addr: EndpointAddr,
    settings: Arc<PoolSettings>,
    /// Idle HTTP/1.1 connections, per worker.
    idle: Arc<IdleConns>,
    h2: Mutex<Vec<Sender>>,
    open: Arc<AtomicUsize>,
}

/// A connection checked out of the pool for one request.
pub enum Conn {
    /// An HTTP/1.1 connection, returned to the pool when the response body ends.
    Http1 {
        /// The connection.
        conn: Http1Conn,
        /// True when it came from the idle list (it may have been closed meanwhile).
        reused: bool,
    },
    /// A shared HTTP/2 connection.
    Http2 {
        /// The request sender (a clone of the shared one).
        sender: Sender,
        /// True when the connection existed before this request.
        reused: bool,
    },
}

impl Conn {
    /// Whether this connection existed before the request (a failure may be staleness).
    pub fn is_reused(&self) -> bool {
        match self {
            Self::Http1 { reused, .. } | Self::Http2 { reused, .. } => *reused,
        }
    }
}

impl Pool {
    /// An empty pool for `addr`.
    pub fn new(addr: EndpointAddr, settings: Arc<PoolSettings>) -> Self {
        Self {
            idle: Arc::new(IdleConns::new(
                settings.idle_timeout,
                settings.max_idle,
                Arc::clone(&settings.limits),
            )),
            addr,
            settings,
            h2: Mutex::new(Vec::new()),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Connections currently open (idle or busy).
    pub fn open_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// HTTP/1.1 connections idle in the pool (all workers).
    pub fn idle_connections(&self) -> usize {
        self.idle.len()
    }

    /// Takes a ready connection from the pool or opens a new one, never waiting
    /// for the cluster's `max_connections` (health checks use this: a check must
    /// not fail because traffic filled the pool; their connections are counted
    /// when under the limit).
    pub async fn checkout(&self) -> Result<Conn, ProxyError> {
        if let Some(conn) = self.take_existing() {
            return Ok(conn);
        }
        let permit = self.settings.limits.try_open();
        Box::pin(self.open_new(permit)).await
    }

    /// Takes a connection for a request within the cluster's limits: an idle one,
    /// or a new one while under `max_connections`; at the limit, waits (as one of
    /// at most `max_pending_requests`, else 503 `overflow` at once) until a
    /// connection of the cluster comes back or closes. The wait is bounded by the
    /// request's own deadline (the route and per-try timeouts drop this future).
    pub async fn acquire(&self) -> Result<Conn, ProxyError> {
        let limits = Arc::clone(&self.settings.limits);
        if !limits.is_limited() {
            return self.checkout().await;
        }
        // Under the limit (the common case), without joining the waiters' list:
        // that takes the shared `Notify`'s lock, on every request of every worker.
        if let Some(conn) = self.take_existing() {
            return Ok(conn);
        }
        if let Some(permit) = limits.try_open() {
            return Box::pin(self.open_new(Some(permit))).await;
        }
        let mut waiting: Option<PendingGuard> = None;
        loop {
            // Listen before checking, so a connection freed in between is not missed.
            let freed = limits.freed().notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = self.take_existing() {
                return Ok(conn);
            }
            if let Some(permit) = limits.try_open() {
                drop(waiting);
                return Box::pin(self.open_new(Some(permit))).await;
            }
            if waiting.is_none() {
                waiting = Some(limits.enter_pending()?);
                // Check again now that the wait is counted (signals go only to counted waiters).
                continue;
            }
            self.evict_idle_elsewhere();
            let _ = tokio::time::timeout(PENDING_RECHECK, freed).await;
        }
    }

    /// An idle (HTTP/1.1) or shared (HTTP/2) connection, if one is ready.
    fn take_existing(&self) -> Option<Conn> {
        match self.settings.protocol {
            UpstreamProtocol::Http1 => self
                .idle
                .take()
                .map(|conn| Conn::Http1 { conn, reused: true }),
            UpstreamProtocol::Http2 => self.shared_h2().map(|sender| Conn::Http2 {
                sender,
                reused: true,
            }),
        }
    }

    /// Opens a new connection, counted by `permit` until it closes. Callers box this
    /// future: connecting (TCP, TLS, HTTP/2 handshake) needs several kilobytes of
    /// state that the common path, reusing an idle connection, should not carry.
    async fn open_new(&self, permit: Option<ConnPermit>) -> Result<Conn, ProxyError> {
        let io: Transport = connect(
            &self.addr,
            self.settings.tls.as_ref(),
            self.settings.connect_timeout,
        )
        .await?;
        match self.settings.protocol {
            UpstreamProtocol::Http1 => {
                let ticket = ConnTicket::new(&self.open, permit);
                Ok(Conn::Http1 {
                    conn: Http1Conn::new(io, self.host_header(), ticket),
                    reused: false,
                })
            }
            UpstreamProtocol::Http2 => {
                let sender = http2::handshake(io, &self.addr, &self.open, permit).await?;
                if let Ok(mut shared) = self.h2.lock() {
                    shared.push(sender.clone());
                }
                Ok(Conn::Http2 {
                    sender,
                    reused: false,
                })
            }
        }
    }

    /// At the cluster's connection limit, closes one idle connection that this
    /// worker cannot use — another endpoint's, or one kept by another worker — so
    /// that this request can open a connection.
    fn evict_idle_elsewhere(&self) {
        // This worker's own list for this endpoint is empty, or it would have been used.
        let siblings = self.settings.siblings.0.load();
        for pool in siblings.iter().filter_map(Weak::upgrade) {
            if pool.idle.drop_one() {
                return;
            }
        }
    }

    /// The `Host` sent when a request has none: the endpoint's address.
    fn host_header(&self) -> http::HeaderValue {
        http::HeaderValue::try_from(self.addr.to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"))
    }

    fn shared_h2(&self) -> Option<Sender> {
        let mut shared = self.h2.lock().ok()?;
        shared.retain(|s| !s.is_closed());
        shared.iter().find(|s| s.is_ready()).cloned()
    }
}

/// A response head from the upstream, with what is needed to finish the exchange;
/// `G` is what the caller holds until the response body ends.
pub enum Sent<G> {
    /// An HTTP/1.1 response; its body is read from the connection it came on.
    Http1(Response<Http1Body<G>>),
    /// An HTTP/2 response; its body streams from the shared connection's task.
    Http2(Response<Incoming>),
}

/// Sends `req` on `conn`. On failure, the error carries the request back if the
/// upstream cannot have acted on it, so the caller can try again on a fresh connection.
pub fn send<G: Send + 'static>(
    conn: Conn,
    req: Request<Body>,
) -> impl std::future::Future<Output = Result<Sent<G>, ProxyError>> + Send {
    use futures_util::future::{Either, FutureExt as _};
    match conn {
        Conn::Http1 { conn, reused } => {
            Either::Left(http1::send(conn, req, reused).map(|r| r.map(Sent::Http1)))
        }
        // Boxed: hyper's HTTP/2 send future is large, and HTTP/1.1 requests should not carry it.
        Conn::Http2 { sender, .. } => Either::Right(Box::pin(
            http2::send(sender, req).map(|r| r.map(Sent::Http2)),
        )),
    }
}

impl<G: Send + Unpin + 'static> Sent<G> {
    /// The response status.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Http1(r) => r.status(),
            Self::Http2(r) => r.status(),
        }
    }

    /// The response headers.
    pub fn headers(&self) -> &http::HeaderMap {
        match self {
            Self::Http1(r) => r.headers(),
            Self::Http2(r) => r.headers(),
        }
    }

    /// The response with a body that returns the HTTP/1.1 connection to `pool` when
    /// it ends and holds `guard` (the in-flight mark) until then.
    pub fn into_response(self, pool: &Pool, guard: Option<G>) -> Response<Body> {
        match self {
            Self::Http1(mut response) => {
                response.body_mut().attach(&pool.idle, guard);
                let limit = pool.settings.read_timeout;
                response.map(|inner| Body::new(ReadTimeout::new(inner, limit)))
            }
            Self::Http2(response) => {
                let limit = pool.settings.read_timeout;
                response
                    .map(|inner| Body::new(ReadTimeout::new(GuardedBody::new(inner, guard), limit)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;

    /// An HTTP/1.1 server on 127.0.0.1:0 answering 200 after `delay`.
    async fn serve(delay: Duration) -> EndpointAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(Response::new(crate::body::full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EndpointAddr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn settings(limits: &Arc<ConnLimits>) -> Arc<PoolSettings> {
        Arc::new(PoolSettings {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),

            read_timeout: Duration::from_secs(60),
            max_idle: 8,
            protocol: UpstreamProtocol::Http1,
            tls: None,
            limits: Arc::clone(limits),
            siblings: Siblings::default(),
        })
    }

    fn pool(addr: EndpointAddr, limits: &Arc<ConnLimits>) -> Arc<Pool> {
        Arc::new(Pool::new(addr, settings(limits)))
    }

    /// Sends one GET on `conn` and reads the body, so the connection goes back to `pool`.
    async fn exchange(pool: &Arc<Pool>, conn: Conn) {
        let req = Request::get("/").body(crate::body::empty()).unwrap();
        let sent = send::<()>(conn, req).await.unwrap();
        let response = sent.into_response(pool, None);
        response.into_body().collect().await.unwrap();
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not true within 5s: {what}");
    }

    #[tokio::test]
    async fn at_max_connections_one_waits_and_the_next_overflows() {
        let addr = serve(Duration::from_millis(50)).await;
        let limits = Arc::new(ConnLimits::new(Some(1), Some(1), None));
        let p = pool(addr, &limits);
        let first = p.acquire().await.unwrap();
        assert!(!first.is_reused());
        assert_eq!(limits.open(), 1);
        let waiter = {
            let p = Arc::clone(&p);
            tokio::spawn(async move { p.acquire().await })
        };
        until("one pending", || limits.pending() == 1).await;
        let err = p.acquire().await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Overflow);
        // The first connection comes back to the pool: the waiter takes it.
        exchange(&p, first).await;
        let conn = waiter.await.unwrap().unwrap();
        assert!(conn.is_reused(), "the waiter reused the connection");
        assert_eq!((limits.open(), limits.pending()), (1, 0));
        // Dropping it closes it, and the count follows.
        drop(conn);
        until("closed", || limits.open() == 0).await;
    }

    #[tokio::test]
    async fn without_max_pending_waiting_is_unbounded_in_count() {
        let addr = serve(Duration::ZERO).await;
        let limits = Arc::new(ConnLimits::new(Some(1), None, None));
        let p = pool(addr, &limits);
        let first = p.acquire().await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..5 {
            let p = Arc::clone(&p);
            waiters.push(tokio::spawn(async move {
                let conn = p.acquire().await?;
                exchange(&p, conn).await;
                Ok::<_, ProxyError>(())
            }));
        }
        until("five pending", || limits.pending() == 5).await;
        exchange(&p, first).await;
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        assert_eq!((limits.open(), limits.pending()), (1, 0));
    }

    #[tokio::test]
    async fn a_waiter_closes_an_idle_connection_of_another_endpoint() {
        let a_addr = serve(Duration::ZERO).await;
        let b_addr = serve(Duration::ZERO).await;
        let limits = Arc::new(ConnLimits::new(Some(1), Some(4), None));
        let shared = settings(&limits);
        let a = Arc::new(Pool::new(a_addr, Arc::clone(&shared)));
        let b = Arc::new(Pool::new(b_addr, Arc::clone(&shared)));
        shared
            .siblings
            .set(vec![Arc::downgrade(&a), Arc::downgrade(&b)]);
        let conn = a.acquire().await.unwrap();
        exchange(&a, conn).await;
        assert_eq!((a.idle_connections(), limits.open()), (1, 1));
        let conn = tokio::time::timeout(Duration::from_secs(5), b.acquire())
            .await
            .expect("b got a connection")
            .unwrap();
        assert!(!conn.is_reused());
        assert_eq!(a.idle_connections(), 0);
        assert_eq!(limits.open(), 1);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_pending_count() {
        let addr = serve(Duration::ZERO).await;
        let limits = Arc::new(ConnLimits::new(Some(1), Some(1), None));
        let p = pool(addr, &limits);
        let _first = p.acquire().await.unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(100), p.acquire()).await;
        assert!(wait.is_err(), "still waiting at the deadline");
        assert_eq!(limits.pending(), 0);
    }
}
