//! A cluster at run time: its policy (balancer, circuit breaker, admission
//! limit, outlier settings, connection settings) and its endpoint set, kept
//! apart so that the set can change in place.
//!
//! A request meets the cluster's circuit breaker ([`breaker`]) first: it refuses
//! while open or over its thresholds. Then the balancer (`balancer.rs`) picks an endpoint of
//! the current set (`endpoint.rs`) and the request goes out on that endpoint's
//! pooled connection ([`crate::upstream`]). Each answer is classified once
//! ([`Outcome`]: success, overloaded — 429 or 503 with `Retry-After` — or
//! failure) and fed back into the breaker (overload counts as neither), into each
//! endpoint's failure and overload EWMAs (so a fast-failing or busy endpoint does
//! not look like the least loaded one), and into passive outlier detection
//! (`outlier.rs`: failures only, compared with the endpoint's peers).
//!
//! The endpoint set sits behind an `ArcSwap` (as pingora's `Backends` do): a
//! reload or a registry change that only adds or removes endpoints swaps the set
//! and keeps everything the cluster has learned — admission limit, breaker, and
//! the pools, health verdicts and ejections of the endpoints that stayed. A new
//! endpoint takes traffic at once; a removed one finishes its requests in flight.

mod balancer;
pub mod breaker;
mod endpoint;
mod outcome;
mod outlier;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use http::{Request, Response, Uri};
use serde::Serialize;

pub use breaker::{Breaker, BreakerStatus, BreakerTicket};
pub use endpoint::{Endpoint, EndpointStatus, RequestGuard};
pub use outcome::Outcome;

use crate::admission::{AdmissionControl, AdmissionStatus};
use crate::body::Body;
use crate::config::{BalancerKind, ClusterConfig, EndpointAddr, UpstreamProtocol};
use crate::error::{ErrorKind, ProxyError};
use crate::load::LoadCounters;
use crate::observe;
use crate::time;
use crate::upstream::{self, ConnLimits, Pool, PoolSettings, Siblings, UpstreamTls};

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

/// Response extension: the endpoint that answered and its time from sending the
/// request to the response head (for the access log).
#[derive(Clone)]
pub struct UpstreamServed {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// From sending the request to its response head.
    pub head_time: std::time::Duration,
}

/// The endpoints of a cluster at one moment, in config order.
pub type EndpointSet = Arc<[Arc<Endpoint>]>;

/// A cluster at run time: its policy and its current endpoint set.
///
/// A reload that leaves the cluster's policy unchanged keeps this object (see
/// [`Cluster::can_update_to`]), so what it has learned survives, and gives it
/// the new endpoint set with [`Cluster::prepare_endpoints`] /
/// [`Cluster::set_endpoints`].
pub struct Cluster {
    /// The policy: the cluster's config without its endpoint list (the endpoints
    /// are in `endpoints`).
    policy: ClusterConfig,
    name: metrics::SharedString,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// What every endpoint's pool shares: connect and idle settings, TLS, limits.
    pool_settings: Arc<PoolSettings>,
    next: AtomicUsize,
    ejections: metrics::Counter,
    overloaded: metrics::Counter,
    breaker: Option<Arc<Breaker>>,
    admission: Option<Arc<AdmissionControl>>,
    load: Arc<LoadCounters>,
}

impl Cluster {
    /// Builds the cluster (TLS client config, endpoint pools). Health checks are
    /// started by whoever builds clusters (`crate::health::spawn`).
    pub fn new(config: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let tls = upstream_tls(&config)?;
        let breaker = config
            .circuit_breaker
            .as_ref()
            .map(|b| Breaker::new(&config.name, b));
        // Without a breaker block the cluster still has Envoy's default caps.
        let limits = breaker.as_ref().map_or_else(
            || Arc::new(ConnLimits::for_cluster_defaults(&config.name)),
            |b| Arc::clone(b.conn_limits()),
        );
        let pool_settings = Arc::new(PoolSettings {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.idle_timeout,
            read_timeout: config.read_timeout,
            max_idle: config.max_idle_per_endpoint,
            protocol: config.protocol,
            tls,
            limits,
            siblings: Siblings::default(),
        });
        let name = metrics::SharedString::from_shared(Arc::from(config.name.as_str()));
        let admission = config
            .admission
            .as_ref()
            .map(|a| Arc::new(AdmissionControl::new(a, &name)));
        let mut policy = config;
        let addrs = std::mem::take(&mut policy.endpoints);
        let cluster = Arc::new(Self {
            admission,
            ejections: metrics::counter!(observe::OUTLIER_EJECTIONS, "cluster" => name.clone()),
            overloaded: metrics::counter!(observe::UPSTREAM_OVERLOADED, "cluster" => name.clone()),
            name,
            policy,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            pool_settings,
            next: AtomicUsize::new(0),
            breaker,
            load: Arc::new(LoadCounters::new()),
        });
        let set = cluster.prepare_endpoints(&addrs);
        cluster.set_endpoints(set);
        Ok(cluster)
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.policy.name
    }

    /// The cluster's load counters (for the control plane's load reports).
    pub fn load(&self) -> &Arc<LoadCounters> {
        &self.load
    }

    /// The cluster's name as a metrics label.
    pub fn label(&self) -> &metrics::SharedString {
        &self.name
    }

    /// The cluster's policy: the config it was built from, without the endpoint
    /// list (see [`Cluster::endpoints`]).
    pub fn config(&self) -> &ClusterConfig {
        &self.policy
    }

    /// Whether `config` differs from this cluster's at most in its endpoints, so
    /// that this cluster can take it with its state kept.
    pub fn can_update_to(&self, config: &ClusterConfig) -> bool {
        let policy = ClusterConfig {
            endpoints: Vec::new(),
            ..config.clone()
        };
        policy == self.policy
    }

    /// The cluster's circuit breaker, when `circuit_breaker` is configured.
    pub fn breaker(&self) -> Option<&Arc<Breaker>> {
        self.breaker.as_ref()
    }

    /// The cluster's admission state, when `admission` is configured.
    pub fn admission(&self) -> Option<&Arc<AdmissionControl>> {
        self.admission.as_ref()
    }

    /// The current endpoints in config order.
    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// The endpoint set for `addrs`, in that order: an endpoint already in the
    /// current set is kept (its pool, health, ejection and load), the others are
    /// new. `None` when the set would not change. Nothing changes until
    /// [`Cluster::set_endpoints`].
    pub fn prepare_endpoints(&self, addrs: &[EndpointAddr]) -> Option<Vec<Arc<Endpoint>>> {
        let current = self.endpoints.load();
        let same =
            current.len() == addrs.len() && current.iter().zip(addrs).all(|(e, a)| e.addr() == a);
        if same && !current.is_empty() {
            return None;
        }
        let now = time::now();
        let set = addrs
            .iter()
            .map(|addr| {
                current
                    .iter()
                    .find(|e| e.addr() == addr)
                    .cloned()
                    .unwrap_or_else(|| {
                        let pool =
                            Arc::new(Pool::new(addr.clone(), Arc::clone(&self.pool_settings)));
                        Arc::new(Endpoint::new(addr.clone(), pool, now))
                    })
            })
            .collect();
        Some(set)
    }

    /// Publishes an endpoint set made by [`Cluster::prepare_endpoints`]: new
    /// requests are balanced over it; requests in flight on removed endpoints finish.
    pub fn set_endpoints(&self, set: Option<Vec<Arc<Endpoint>>>) {
        let Some(set) = set else {
            return;
        };
        self.pool_settings
            .siblings
            .set(set.iter().map(|e| Arc::downgrade(e.pool())).collect());
        let added: Vec<String> = {
            let current = self.endpoints.load();
            set.iter()
                .filter(|e| !current.iter().any(|c| Arc::ptr_eq(c, e)))
                .map(|e| e.addr().to_string())
                .collect()
        };
        let count = set.len();
        self.endpoints.store(Arc::new(set));
        if !added.is_empty() {
            tracing::info!(cluster = %self.policy.name, endpoints = count, added = ?added, "endpoint set changed");
        }
    }

    /// Chooses an endpoint for a new request, or `None` if none is available.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        balancer::pick(
            self.policy.balancer,
            &endpoints,
            &self.next,
            self.policy.healthy_panic_threshold,
            time::now(),
        )
    }

    /// Sends one request to one endpoint of this cluster.
    pub async fn send(
        self: Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, ProxyError> {
        // The breaker first: open → 503 circuit_open, over max_requests → 503 overflow.
        let ticket = match &self.breaker {
            Some(b) => Some(b.admit()?),
            None => None,
        };
        let Some(endpoint) = self.pick() else {
            // Not the upstream's answer: neither success nor failure for the breaker.
            if let Some(t) = ticket {
                t.finish(None);
            }
            return Err(ProxyError::new(ErrorKind::NoHealthyEndpoint));
        };
        // After admission and the stack read what they trust (a priority header):
        // the proxy's own namespace never reaches the app from a client.
        crate::headers::strip_internal(req.headers_mut());
        if req.extensions().get::<UseEndpointHost>().is_some() {
            if let Ok(host) = http::HeaderValue::try_from(endpoint.addr().to_string()) {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        if self.policy.protocol == UpstreamProtocol::Http2 {
            *req.version_mut() = http::Version::HTTP_2;
            set_absolute_uri(&mut req, &endpoint, self.policy.upstream_tls.is_some());
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
                        self.record_outcome(&endpoint, Outcome::Failure);
                    }
                    if let Some(t) = ticket {
                        t.finish(failed.then_some(false));
                    }
                    return Err(e.with_unsent(req));
                }
            };
            let reused = conn.is_reused();
            let sent_at = time::now();
            match upstream::send::<RequestGuard>(conn, req).await {
                Ok(sent) => {
                    let served = UpstreamServed {
                        endpoint: Arc::clone(&endpoint),
                        head_time: time::now().saturating_duration_since(sent_at),
                    };
                    let outcome = Outcome::of_response(sent.status(), sent.headers());
                    self.record_outcome(&endpoint, outcome);
                    // The max_requests slot stays taken until the response body ends.
                    guard.hold(ticket.and_then(|t| t.finish(outcome.for_breaker())));
                    let mut response = sent.into_response(pool, Some(guard));
                    // An upstream's `x-floodgate-*` would read as this proxy's own word.
                    crate::headers::strip_internal(response.headers_mut());
                    response.extensions_mut().insert(served);
                    return Ok(response);
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
                        self.record_outcome(&endpoint, Outcome::Failure);
                    }
                    if let Some(t) = ticket {
                        t.finish(failed.then_some(false));
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Feeds one outcome of `endpoint` into its load score, its counters and
    /// passive outlier detection.
    pub fn record_outcome(&self, endpoint: &Endpoint, outcome: Outcome) {
        if outcome == Outcome::Overloaded {
            self.overloaded.increment(1);
        }
        // The endpoint set is read only when a failure may eject (the peers and
        // the cap), not on the success path.
        let verdict = outlier::record(
            self.policy.outlier.as_ref(),
            || self.endpoints.load_full(),
            endpoint,
            outcome,
            time::now(),
        );
        match verdict {
            outlier::Verdict::Kept => {}
            outlier::Verdict::Ejected { duration, failures } => {
                self.ejections.increment(1);
                tracing::warn!(
                    cluster = %self.policy.name,
                    endpoint = %endpoint.addr(),
                    failures,
                    ejected_for_ms = duration.as_millis() as u64,
                    "endpoint ejected"
                );
            }
            outlier::Verdict::Spared { failures, reason } => {
                metrics::counter!(
                    observe::OUTLIER_SPARED,
                    "cluster" => self.name.clone(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                tracing::debug!(
                    cluster = %self.policy.name,
                    endpoint = %endpoint.addr(),
                    failures,
                    reason = reason.as_str(),
                    "endpoint over the failure threshold not ejected"
                );
            }
        }
    }

    /// Endpoints healthy and not ejected now (what load reports call available).
    pub fn available_endpoints(&self) -> usize {
        let now = time::now();
        self.endpoints
            .load()
            .iter()
            .filter(|e| e.is_available(now))
            .count()
    }

    /// A point-in-time view for the admin `/clusters` page.
    pub fn status(&self) -> ClusterStatus {
        let now = time::now();
        let set = self.endpoints.load();
        let panic = balancer::in_panic(&set, self.policy.healthy_panic_threshold, now);
        let endpoints: Vec<EndpointStatus> = set.iter().map(|e| e.status(now)).collect();
        ClusterStatus {
            name: self.policy.name.clone(),
            balancer: self.policy.balancer,
            healthy_panic_threshold: self.policy.healthy_panic_threshold,
            panic,
            available_endpoints: endpoints.iter().filter(|e| e.healthy && !e.ejected).count(),
            active_requests: endpoints.iter().map(|e| e.active_requests).sum(),
            open_connections: endpoints.iter().map(|e| e.open_connections).sum(),
            breaker: self.breaker.as_ref().map(|b| b.status()),
            admission: self.admission.as_ref().map(|a| a.status()),
            endpoints,
        }
    }
}

/// The TLS connector and server name of a cluster with `upstream_tls`.
fn upstream_tls(config: &ClusterConfig) -> Result<Option<UpstreamTls>, ClusterError> {
    let Some(t) = &config.upstream_tls else {
        return Ok(None);
    };
    let http2 = config.protocol == UpstreamProtocol::Http2;
    let client = crate::tls::client_config(t, http2).map_err(|source| ClusterError::Tls {
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
    Ok(Some(UpstreamTls {
        connector: tokio_rustls::TlsConnector::from(client),
        server_name,
    }))
}

/// A cluster's state as shown by the admin API and read by load reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Balancing policy.
    pub balancer: BalancerKind,
    /// Share of the endpoints (percent) under which the balancer uses them all.
    pub healthy_panic_threshold: u32,
    /// Fewer than `healthy_panic_threshold` % are available: balancing over all.
    pub panic: bool,
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
