//! Load balancing: a cluster's endpoints, choosing one per request (power of two
//! choices over an outcome-aware load score, or round robin) among those healthy
//! and not ejected, and sending the request on that endpoint's pooled connection.
//!
//! The cluster's circuit breaker ([`breaker`]) acts first: it refuses requests
//! while open or over its thresholds. Outcomes feed back into the breaker, into
//! each endpoint's failure EWMA (so a fast-failing endpoint does not look like
//! the least loaded one), and into passive outlier detection: consecutive
//! failures (connect errors, resets, timeouts, 5xx) eject an endpoint for a
//! backoff period, never more than `max_ejection_percent` of the cluster at once.

pub mod breaker;
mod endpoint;
mod http1;
mod pool;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use http::{Request, Response, Uri};
use rand::Rng;
use serde::Serialize;

pub use breaker::{Breaker, BreakerStatus, ConnLimits};
pub use endpoint::{Endpoint, EndpointStatus, RequestGuard};
pub use pool::{send as send_on, Conn, Pool, PoolSettings, Sent, UpstreamTls};

use crate::admission::{AdmissionControl, AdmissionStatus};
use crate::body::Body;
use crate::config::{BalancerKind, ClusterConfig, UpstreamProtocol};
use crate::error::{ErrorKind, ProxyError};
use crate::observe;

/// Why a cluster could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The upstream TLS settings did not produce a client config.
    #[error("cluster {cluster}: upstream_tls: {source}")]
    Tls {
        /// Cluster name.
        cluster: String,
        /// The TLS error.
        source: crate::tls::TlsError,
    },
    /// The SNI name is not a valid DNS name or IP address.
    #[error("cluster {cluster}: upstream_tls.sni: invalid server name {name:?}")]
    ServerName {
        /// Cluster name.
        cluster: String,
        /// The offending name.
        name: String,
    },
}

/// Request extension: send the endpoint's address as `Host` (route `preserve_host: false`).
#[derive(Debug, Clone, Copy)]
pub struct UseEndpointHost;

/// A cluster at run time: endpoints with their pools, health and ejection state.
///
/// A reload that leaves a cluster's config unchanged keeps this object, so its
/// pools, health verdicts and ejections survive.
pub struct Cluster {
    config: ClusterConfig,
    name: metrics::SharedString,
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    ejections: metrics::Counter,
    breaker: Option<Arc<Breaker>>,
    health_task: Mutex<Option<tokio::task::AbortHandle>>,
    admission: Option<Arc<AdmissionControl>>,
}

impl Cluster {
    /// Builds the cluster (TLS client config, endpoint pools) and starts its health checks.
    pub fn new(config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let http2 = config.protocol == UpstreamProtocol::Http2;
        let tls = match &config.upstream_tls {
            None => None,
            Some(t) => {
                let client =
                    crate::tls::client_config(t, http2).map_err(|source| ClusterError::Tls {
                        cluster: config.name.clone(),
                        source,
                    })?;
                let server_name = match &t.sni {
                    None => None,
                    Some(name) => Some(
                        rustls_pki_types::ServerName::try_from(name.clone()).map_err(|_| {
                            ClusterError::ServerName {
                                cluster: config.name.clone(),
                                name: name.clone(),
                            }
                        })?,
                    ),
                };
                Some(UpstreamTls {
                    connector: tokio_rustls::TlsConnector::from(client),
                    server_name,
                })
            }
        };
        let breaker = config
            .circuit_breaker
            .as_ref()
            .map(|b| Breaker::new(&config.name, b));
        let limits = breaker.as_ref().map_or_else(
            || Arc::new(ConnLimits::unlimited()),
            |b| Arc::clone(b.conn_limits()),
        );
        let settings = Arc::new(PoolSettings {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            max_idle: config.max_idle_per_endpoint,
            protocol: config.protocol,
            tls,
            limits: Arc::clone(&limits),
        });
        let epoch = Instant::now();
        let endpoints: Vec<Arc<Endpoint>> = config
            .endpoints
            .iter()
            .map(|addr| {
                let pool = Arc::new(Pool::new(addr.clone(), Arc::clone(&settings)));
                Arc::new(Endpoint::new(addr.clone(), pool, epoch))
            })
            .collect();
        limits.register_pools(endpoints.iter().map(|e| Arc::downgrade(e.pool())).collect());
        let name = metrics::SharedString::from(config.name.clone());
        let admission = config
            .admission
            .as_ref()
            .map(|a| Arc::new(AdmissionControl::new(a, &name)));
        let cluster = Arc::new(Self {
            admission,
            ejections: metrics::counter!(observe::OUTLIER_EJECTIONS, "cluster" => name.clone()),
            name,
            config,
            endpoints,
            next: AtomicUsize::new(0),
            breaker,
            health_task: Mutex::new(None),
        });
        if let Some(task) = crate::health::spawn(&cluster) {
            if let Ok(mut slot) = cluster.health_task.lock() {
                *slot = Some(task);
            }
        }
        Ok(cluster)
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The cluster's name as a metrics label.
    pub fn label(&self) -> &metrics::SharedString {
        &self.name
    }

    /// The config this cluster was built from.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The cluster's circuit breaker, when `circuit_breaker` is configured.
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.breaker.as_ref()
    }

    /// The cluster's admission state, when `admission` is configured.
    pub fn admission(&self) -> Option<&Arc<AdmissionControl>> {
        self.admission.as_ref()
    }

    /// The endpoints in config order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Chooses an endpoint for a new request, or `None` if none is available.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        let now = Instant::now();
        let eps = &self.endpoints;
        let n = eps.len();
        match (self.config.balancer, n) {
            (_, 0) => None,
            (_, 1) => eps.first().filter(|e| e.is_available(now)).cloned(),
            (BalancerKind::RoundRobin, _) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .filter_map(|i| eps.get((start + i) % n))
                    .find(|e| e.is_available(now))
                    .cloned()
            }
            (BalancerKind::P2cLeastRequest, _) => {
                let (a, b) = two_distinct(n);
                match (eps.get(a), eps.get(b)) {
                    (Some(ea), Some(eb)) => match (ea.is_available(now), eb.is_available(now)) {
                        (true, true) => Some(Arc::clone(less_loaded(ea, eb, now))),
                        (true, false) => Some(Arc::clone(ea)),
                        (false, true) => Some(Arc::clone(eb)),
                        (false, false) => self.pick_among_available(now),
                    },
                    _ => None,
                }
            }
        }
    }

    /// The slow path of P2C when both random picks were unavailable.
    fn pick_among_available(&self, now: Instant) -> Option<Arc<Endpoint>> {
        let available: Vec<&Arc<Endpoint>> = self
            .endpoints
            .iter()
            .filter(|e| e.is_available(now))
            .collect();
        match available.len() {
            0 => None,
            1 => available.first().map(|e| Arc::clone(e)),
            n => {
                let (a, b) = two_distinct(n);
                match (available.get(a), available.get(b)) {
                    (Some(ea), Some(eb)) => Some(Arc::clone(less_loaded(ea, eb, now))),
                    _ => None,
                }
            }
        }
    }

    /// Sends one request to one endpoint of this cluster.
    pub async fn send(
        self: Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, ProxyError> {
        // The breaker first: open → 503 circuit_open, over max_requests → 503 overflow.
        let admission = match &self.breaker {
            Some(b) => Some(b.admit()?),
            None => None,
        };
        let Some(endpoint) = self.pick() else {
            // Not the upstream's answer: neither success nor failure for the breaker.
            if let Some(a) = admission {
                a.finish(None);
            }
            return Err(ProxyError::new(ErrorKind::NoHealthyEndpoint));
        };
        if req.extensions().get::<UseEndpointHost>().is_some() {
            if let Ok(host) = http::HeaderValue::try_from(endpoint.addr().to_string()) {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        if self.config.protocol == UpstreamProtocol::Http2 {
            *req.version_mut() = http::Version::HTTP_2;
            set_absolute_uri(&mut req, &endpoint, self.config.upstream_tls.is_some());
        }
        let mut guard = endpoint.start_request();
        let pool = endpoint.pool();
        // A pooled connection the upstream closed while idle fails before the request
        // is written; that one case is retried at once on a fresh connection.
        let mut fresh_retry_left = true;
        loop {
            let conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Over max_pending_requests is our own refusal, not the endpoint's failure.
                    let failed = e.kind().is_endpoint_failure();
                    if failed {
                        self.record_outcome(&endpoint, false);
                    }
                    if let Some(a) = admission {
                        a.finish(failed.then_some(false));
                    }
                    return Err(e.with_unsent(req));
                }
            };
            let reused = conn.is_reused();
            match pool::send(conn, req).await {
                Ok(sent) => {
                    let ok = !sent.status().is_server_error();
                    self.record_outcome(&endpoint, ok);
                    // The max_requests slot stays taken until the response body ends.
                    guard.hold(admission.and_then(|a| a.finish(Some(ok))));
                    return Ok(sent.into_response(pool, Some(guard)));
                }
                Err(mut e) => {
                    if reused && fresh_retry_left {
                        if let Some(unsent) = e.take_unsent() {
                            fresh_retry_left = false;
                            req = unsent;
                            continue;
                        }
                    }
                    let failed = e.kind().is_endpoint_failure();
                    if failed {
                        self.record_outcome(&endpoint, false);
                    }
                    if let Some(a) = admission {
                        a.finish(failed.then_some(false));
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Feeds one outcome into passive outlier detection.
    pub fn record_outcome(&self, endpoint: &Endpoint, success: bool) {
        let now = Instant::now();
        if success {
            endpoint.record_success(now);
            return;
        }
        let streak = endpoint.record_failure(now);
        let Some(outlier) = &self.config.outlier else {
            return;
        };
        if streak < outlier.consecutive_failures || endpoint.is_ejected(now) {
            return;
        }
        let ejected = self.endpoints.iter().filter(|e| e.is_ejected(now)).count();
        if ejected >= self.max_ejected() {
            return;
        }
        let nth = endpoint.ejections().saturating_add(1);
        let duration = outlier
            .base_ejection
            .saturating_mul(nth)
            .min(outlier.max_ejection);
        endpoint.eject(now, duration);
        self.ejections.increment(1);
        tracing::warn!(
            cluster = %self.config.name,
            endpoint = %endpoint.addr(),
            failures = streak,
            ejected_for_ms = duration.as_millis() as u64,
            "endpoint ejected"
        );
    }

    /// How many endpoints may be ejected at once (at least one when the percentage is not 0).
    fn max_ejected(&self) -> usize {
        let percent = self
            .config
            .outlier
            .as_ref()
            .map_or(0, |o| o.max_ejection_percent) as usize;
        if percent == 0 {
            return 0;
        }
        (self.endpoints.len() * percent / 100).max(1)
    }

    /// A point-in-time view for the admin `/clusters` page.
    pub fn status(&self) -> ClusterStatus {
        let now = Instant::now();
        let endpoints: Vec<EndpointStatus> = self.endpoints.iter().map(|e| e.status(now)).collect();
        ClusterStatus {
            name: self.config.name.clone(),
            balancer: self.config.balancer,
            available_endpoints: endpoints.iter().filter(|e| e.healthy && !e.ejected).count(),
            active_requests: endpoints.iter().map(|e| e.active_requests).sum(),
            open_connections: endpoints.iter().map(|e| e.open_connections).sum(),
            breaker: self.breaker.as_ref().map(|b| b.status()),
            admission: self.admission.as_ref().map(|a| a.status()),
            endpoints,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.health_task.lock() {
            if let Some(task) = slot.take() {
                task.abort();
            }
        }
    }
}

/// A cluster's state as shown by the admin API and read by load reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Balancing policy.
    pub balancer: BalancerKind,
    /// Endpoints healthy and not ejected.
    pub available_endpoints: usize,
    /// Requests in flight over all endpoints.
    pub active_requests: usize,
    /// Open upstream connections over all endpoints.
    pub open_connections: usize,
    /// Circuit-breaker state and thresholds, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerStatus>,
    /// Admission limit, admitted requests and queue depth, when admission is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionStatus>,
    /// Per-endpoint detail.
    pub endpoints: Vec<EndpointStatus>,
}

fn two_distinct(n: usize) -> (usize, usize) {
    let mut rng = rand::rng();
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    (a, b)
}

/// The P2C comparison: the lower [`Endpoint::load_score`] wins (requests in flight
/// weighted by recent failures), ties going to `a` (itself a random pick).
fn less_loaded<'a>(a: &'a Arc<Endpoint>, b: &'a Arc<Endpoint>, now: Instant) -> &'a Arc<Endpoint> {
    if b.load_score(now) < a.load_score(now) {
        b
    } else {
        a
    }
}

/// HTTP/2 needs the scheme and authority in the URI (`:scheme`, `:authority`).
fn set_absolute_uri(req: &mut Request<Body>, endpoint: &Endpoint, tls: bool) {
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| endpoint.addr().to_string());
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let scheme = if tls { "https" } else { "http" };
    if let Ok(uri) = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        *req.uri_mut() = uri;
        // The authority now travels as `:authority`; a Host header would duplicate it.
        req.headers_mut().remove(http::header::HOST);
    }
}

/// The innermost service of a route stack: sends to one cluster.
#[derive(Clone)]
pub struct ClusterService {
    cluster: Arc<Cluster>,
}

impl ClusterService {
    /// A service sending to `cluster`.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }
}

impl tower::Service<Request<Body>> for ClusterService {
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(Arc::clone(&self.cluster).send(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_distinct_never_repeats() {
        for n in 2..6 {
            for _ in 0..200 {
                let (a, b) = two_distinct(n);
                assert_ne!(a, b);
                assert!(a < n && b < n);
            }
        }
    }
}
