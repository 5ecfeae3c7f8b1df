//! Runtime configuration: what the data plane runs, produced once by validation.
//!
//! Every value here is already checked: durations are parsed, references between
//! routes and clusters resolve, TLS material is read from disk. Types derive
//! `PartialEq` so that a reload can tell which clusters and listeners changed and
//! keep the state (pools, health, outlier ejections) of those that did not.
//! They derive `Serialize` for the admin `/config` page (the effective config,
//! defaults filled in).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::units::serialize_duration;
use super::units::serialize_opt_duration;

/// The whole validated configuration of one proxy process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where the configuration came from (a file path or "control-plane").
    pub source: String,
    /// The admin listener (`/ready`, `/live`, `/metrics`, `/config`, `/clusters`).
    pub admin: AdminConfig,
    /// Process-wide settings: drain, access log.
    pub server: ServerConfig,
    /// Listeners in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Clusters in file order; route references are checked to exist here.
    pub clusters: Vec<ClusterConfig>,
    /// The control plane this proxy polls (bootstrap only; `None` for a file-only proxy
    /// and in every snapshot a control plane serves).
    pub control_plane: Option<ControlPlaneConfig>,
}

impl Config {
    /// Finds a cluster by name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// `control_plane:`: where this proxy takes its config from (see `docs/config.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlPlaneConfig {
    /// The URL as written, without a trailing `/`.
    pub url: String,
    /// Whether the URL is `https://` (then `ca` is set).
    pub tls: bool,
    /// Host and port of the URL (port 80 / 443 when not written).
    pub endpoint: EndpointAddr,
    /// The URL's path prefix without a trailing `/` (usually empty).
    pub base_path: String,
    /// This proxy's node name (default: the hostname).
    pub node_id: String,
    /// The node group whose snapshots this proxy runs.
    pub group: String,
    /// The proxy-role bearer token (redacted on `/config`).
    pub token: super::secret::Secret,
    /// CA bundle path (PEM) the control plane's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// The CA bundle's PEM bytes.
    #[serde(skip)]
    pub ca_pem: Vec<u8>,
    /// Where the last applied snapshot is persisted
    /// (default `<config dir>/.floodgate-snapshot-<group>.yaml`).
    pub snapshot_file: PathBuf,
    /// HTTP timeout of one long poll (default 45s).
    #[serde(serialize_with = "serialize_duration")]
    pub poll_timeout: Duration,
    /// Retry schedule after a failed poll.
    pub backoff: BackoffConfig,
    /// Period of load reports to `POST /v1/reports` (default 500ms; zero: none).
    #[serde(serialize_with = "serialize_duration")]
    pub report_interval: Duration,
}

/// A jittered exponential retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BackoffConfig {
    /// First delay (default 250ms).
    #[serde(serialize_with = "serialize_duration")]
    pub initial: Duration,
    /// Longest delay (default 30s).
    #[serde(serialize_with = "serialize_duration")]
    pub max: Duration,
    /// Growth factor per failed attempt (default 2).
    pub multiplier: f64,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminConfig {
    /// Address the admin HTTP server binds (default `127.0.0.1:9901`).
    pub listen: SocketAddr,
    /// The bearer token every admin request but `/live` and `/ready` must carry
    /// (required off loopback; redacted on `/config`).
    pub token: Option<super::secret::Secret>,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// How long in-flight requests may take to finish after SIGTERM (default 30s).
    #[serde(serialize_with = "serialize_duration")]
    pub drain_timeout: Duration,
    /// The access log (default on: JSON lines on stdout); `None` when off.
    pub access_log: Option<Arc<AccessLogConfig>>,
}

/// A validated `server.access_log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLogConfig {
    /// Where lines go (default stdout).
    pub path: crate::access_log::Target,
    /// JSON (default) or text.
    pub format: crate::access_log::Format,
    /// The fields, in order (default: all of them).
    pub fields: Vec<crate::access_log::Field>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            path: crate::access_log::Target::Stdout,
            format: crate::access_log::Format::Json,
            fields: crate::access_log::Field::ALL.to_vec(),
        }
    }
}

/// One listening socket and its routes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerConfig {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// TLS termination; `None` serves plain HTTP/1.1 and h2c.
    pub tls: Option<ServerTlsConfig>,
    /// Connection-level limits and timeouts.
    pub limits: ListenerLimits,
    /// Peers whose `x-forwarded-for` is believed when finding the client IP (default none).
    #[serde(serialize_with = "serialize_nets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Headers the proxy adds to requests and responses.
    pub headers: ListenerHeaders,
    /// Routes in file order; the first match wins (shared: a route a validation takes
    /// unchanged, and the running [`crate::router::Route`] built from it, hold the same one).
    pub routes: Vec<Arc<RouteConfig>>,
}

/// Headers a listener's proxy adds (both on by default, as Envoy and most edge proxies do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListenerHeaders {
    /// Append the client to `x-forwarded-for`; set `x-forwarded-proto` and `x-forwarded-host`.
    pub forwarded: bool,
    /// Generate `x-request-id` when the request has no usable one, and return the
    /// request's id on the response; off, a client's `x-request-id` passes as sent.
    pub request_id: bool,
}

impl Default for ListenerHeaders {
    fn default() -> Self {
        Self {
            forwarded: true,
            request_id: true,
        }
    }
}

/// Connection-level limits of a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerLimits {
    /// Most concurrently open downstream connections (default 10000); more wait in the accept queue.
    pub max_connections: usize,
    /// Time allowed to receive a request's headers (default 10s); slower clients get 408 or a close.
    #[serde(serialize_with = "serialize_duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed (default 60s).
    #[serde(serialize_with = "serialize_duration")]
    pub idle_timeout: Duration,
    /// A connection whose client takes nothing of what the proxy writes for this
    /// long is closed (default 60s, nginx's `send_timeout`).
    #[serde(serialize_with = "serialize_duration")]
    pub send_timeout: Duration,
    /// Largest request head (request line plus headers) in bytes (default 64 KiB); larger gets 431.
    pub max_header_bytes: usize,
    /// Largest request body in bytes (default 10 MiB); larger gets 413.
    pub max_request_body_bytes: u64,
    /// Most concurrent HTTP/2 streams per client connection (default 100, Envoy's);
    /// the client is told in its SETTINGS, a stream over it is refused.
    pub max_concurrent_streams: u32,
    /// The premature-reset rule's stream count `N` (default 500, Envoy's): a connection
    /// whose client cancelled at least half of its recent streams (at least `N / 2`) before
    /// their response gets GOAWAY.
    pub premature_reset_total_stream_count: u32,
    /// A client cancel within this time of the stream's start is premature (default 1s).
    #[serde(serialize_with = "serialize_duration")]
    pub premature_reset_min_stream_lifetime: Duration,
}

/// TLS termination with one or more certificates chosen by SNI.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerTlsConfig {
    /// Certificates; the first one is the default when SNI matches none (or is absent).
    pub certs: Vec<CertConfig>,
    /// ALPN protocols offered, in preference order (default `["h2", "http/1.1"]`).
    pub alpn: Vec<String>,
}

/// One certificate chain and key, read from disk during validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertConfig {
    /// Path of the PEM certificate chain.
    pub cert: PathBuf,
    /// Path of the PEM private key.
    pub key: PathBuf,
    /// Server names this certificate answers for (exact or `*.suffix`); empty means default only.
    pub sni: Vec<String>,
    /// The certificate chain's PEM bytes.
    #[serde(skip)]
    pub cert_pem: Vec<u8>,
    /// The private key's PEM bytes.
    #[serde(skip)]
    pub key_pem: Vec<u8>,
}

/// One route: a match, a destination and the per-route policies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    /// Unique name within the listener, used in metrics (`route` label) and logs.
    pub name: String,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Which cluster(s) get the requests.
    pub backend: Backend,
    /// Replaces the matched `path_prefix` with this value before forwarding.
    pub rewrite_prefix: Option<String>,
    /// Whole-request deadline including retries (default 15s); exceeded → 504.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub timeout: Option<Duration>,
    /// Retry policy; `None` means never retry.
    pub retry: Option<RetryPolicy>,
    /// Forward the client's `Host` header unchanged (default true); false sends the endpoint's address.
    pub preserve_host: bool,
    /// Request-rate limits; `None` means unlimited.
    pub rate_limit: Option<RateLimitConfig>,
    /// Micro-cache and request coalescing for GET/HEAD; `None` means off.
    pub cache: Option<CacheConfig>,
    /// Admission priority of this route's requests (default normal).
    pub priority: Priority,
    /// The `burst:` overrides as written (None: the route has none).
    pub burst: Option<BurstConfig>,
    /// True while they are in force (a cluster of the route has `burst_mode: true`):
    /// `rate_limit`, `cache` and `priority` above are then the burst ones.
    pub burst_active: bool,
    /// A cluster-wide limit split among the proxies by the control plane; `None`: none.
    pub global_rate_limit: Option<GlobalRateLimitConfig>,
}

/// A route's cluster-wide limit (`docs/config.md`, "Cluster-wide rate limit").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GlobalRateLimitConfig {
    /// Requests per second for all the proxies serving the route together (> 0).
    pub rps: u32,
    /// Requests at once for all of them together (default `rps`); a proxy's bucket
    /// holds the part of it that its share is of `rps`.
    pub burst: u32,
    /// Requests per second of one proxy that holds no lease (before the first, or
    /// once the last has run out): 0 ≤ `fallback_rps` ≤ `rps`; 0 refuses everything.
    pub fallback_rps: u32,
}

/// A route's burst-mode overrides; a field left out keeps the route's own setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurstConfig {
    /// Replaces `rate_limit`.
    pub rate_limit: Option<RateLimitConfig>,
    /// Replaces `cache`.
    pub cache: Option<CacheConfig>,
    /// Replaces `priority`.
    pub priority: Option<Priority>,
}

impl RouteConfig {
    /// The destination clusters with their weights (one arm of weight 1 for `cluster:`).
    pub fn backend_arms(&self) -> Vec<(&str, u32)> {
        match &self.backend {
            Backend::Cluster(name) => vec![(name.as_str(), 1)],
            Backend::Weighted(arms) => arms
                .iter()
                .map(|a| (a.cluster.as_str(), a.weight))
                .collect(),
        }
    }
}

/// The request properties a route matches on; all given conditions must hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteMatch {
    /// Host match (case-insensitive, port ignored); `None` matches any host.
    pub host: Option<HostMatch>,
    /// Path match (default: prefix `/`).
    pub path: PathMatch,
    /// Allowed methods; empty means any.
    #[serde(serialize_with = "serialize_methods")]
    pub methods: Vec<Method>,
    /// Headers that must be present with exactly these values.
    #[serde(serialize_with = "serialize_headers")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A host pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostMatch {
    /// Exactly this name (lower-case).
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any name ending in it, with at least one more label.
    Suffix(String),
}

/// A path pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The path starts with this string.
    Prefix(String),
    /// The path equals this string (query excluded).
    Exact(String),
}

/// Where a route sends requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// All requests go to one cluster.
    Cluster(String),
    /// Requests are split among clusters by weight (canary).
    Weighted(Vec<WeightedCluster>),
}

/// One arm of a weighted split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightedCluster {
    /// Cluster name.
    pub cluster: String,
    /// Relative weight (> 0 for at least one arm).
    pub weight: u32,
}

/// When and how a route retries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Total tries including the first (default 2, at most 10).
    pub attempts: u32,
    /// Which outcomes are retried.
    pub on: RetryOn,
    /// Deadline for one try (default: none, only the route timeout applies).
    #[serde(serialize_with = "serialize_opt_duration")]
    pub per_try_timeout: Option<Duration>,
    /// Retries may add at most this percentage on top of regular requests (default 20).
    pub budget_percent: f64,
    /// Retries always allowed per second regardless of the budget (default 10).
    pub min_retries_per_sec: u32,
    /// Base backoff between tries, doubled each try with jitter (default 25ms).
    #[serde(serialize_with = "serialize_duration")]
    pub backoff: Duration,
}

/// The outcomes a retry policy repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    /// The connection to the endpoint could not be made (nothing was sent; safe for any method).
    pub connect_failure: bool,
    /// The upstream reset or closed the connection before a response (idempotent requests only).
    pub reset: bool,
    /// A try exceeded `per_try_timeout` (idempotent requests only).
    pub timeout: bool,
    /// The upstream answered one of these statuses (idempotent requests only).
    #[serde(serialize_with = "serialize_statuses")]
    pub statuses: Vec<StatusCode>,
}

/// A cluster's `max_connections` when its `circuit_breaker` block does not set one
/// (or there is none): Envoy's circuit-breaker default.
pub const DEFAULT_CLUSTER_MAX_CONNECTIONS: usize = 1024;
/// A cluster's `max_pending_requests` when not set: Envoy's circuit-breaker default.
pub const DEFAULT_CLUSTER_MAX_PENDING_REQUESTS: usize = 1024;

/// One upstream service: endpoints and how to talk to them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Endpoint addresses in file order.
    pub endpoints: Vec<EndpointAddr>,
    /// Load-balancing policy (default `p2c_least_request`).
    pub balancer: BalancerKind,
    /// HTTP version spoken to endpoints (default http1).
    pub protocol: UpstreamProtocol,
    /// TCP (and TLS) connect deadline (default 1s).
    #[serde(serialize_with = "serialize_duration")]
    pub connect_timeout: Duration,
    /// Pooled idle connections are closed after this long (default 90s).
    #[serde(serialize_with = "serialize_duration")]
    pub idle_timeout: Duration,
    /// Longest silence of an upstream response body between two reads, once its
    /// head has arrived (default 60s, nginx's `proxy_read_timeout`).
    #[serde(serialize_with = "serialize_duration")]
    pub read_timeout: Duration,
    /// Most idle connections kept per endpoint by each worker (default 256).
    pub max_idle_per_endpoint: usize,
    /// When fewer than this percentage of the endpoints are available (healthy
    /// and not ejected), the balancer uses all of them, as Envoy's panic mode
    /// (default 50, range 0–100; 0 never panics).
    pub healthy_panic_threshold: u32,
    /// Active HTTP health checking.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier ejection.
    pub outlier: Option<OutlierConfig>,
    /// TLS to the endpoints.
    pub upstream_tls: Option<UpstreamTlsConfig>,
    /// Circuit breaking: thresholds and the failure breaker; `None` means no failure
    /// breaker and the default connection caps ([`DEFAULT_CLUSTER_MAX_CONNECTIONS`],
    /// [`DEFAULT_CLUSTER_MAX_PENDING_REQUESTS`]).
    pub circuit_breaker: Option<BreakerConfig>,
    /// Adaptive admission (concurrency limit with a priority queue): on unless the
    /// file says `admission: { enabled: false }` (`None`).
    pub admission: Option<AdmissionConfig>,
}

/// A `host:port` endpoint address; the host may be an IP or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointAddr {
    /// Host part (IP literal without brackets, or DNS name).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Load-balancing policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BalancerKind {
    /// Power of two random choices, the one with fewer requests in flight wins.
    P2cLeastRequest,
    /// Each endpoint in turn.
    RoundRobin,
}

/// HTTP version used towards a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a keep-alive pool.
    Http1,
    /// HTTP/2 (prior knowledge over TCP, ALPN `h2` over TLS), multiplexed.
    Http2,
}

/// Active health checking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheckConfig {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks of one endpoint (default 5s).
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// Deadline for one check (default 1s, at most `interval`).
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy endpoint healthy (default 2).
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy (default 3).
    pub unhealthy_threshold: u32,
    /// `Host` header sent with checks (default: the endpoint address).
    pub host: Option<String>,
}

/// Passive outlier ejection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierConfig {
    /// Consecutive failed requests (connect errors, resets, timeouts, 5xx other
    /// than overload answers) that eject an endpoint failing clearly more than its
    /// peers (default 5).
    pub consecutive_failures: u32,
    /// First ejection length; the n-th ejection in a row lasts n times as long (default 30s).
    #[serde(serialize_with = "serialize_duration")]
    pub base_ejection: Duration,
    /// Longest ejection (default 300s).
    #[serde(serialize_with = "serialize_duration")]
    pub max_ejection: Duration,
    /// At most this percentage of the cluster's endpoints is ejected at once (default 10, range 0–100).
    pub max_ejection_percent: u32,
}

/// TLS towards upstream endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamTlsConfig {
    /// CA bundle path (PEM) that endpoint certificates must chain to.
    pub ca: PathBuf,
    /// Server name to verify and send as SNI (default: the endpoint host).
    pub sni: Option<String>,
    /// Client certificate path for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client key path for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// The CA bundle's PEM bytes.
    #[serde(skip)]
    pub ca_pem: Vec<u8>,
    /// The client certificate's PEM bytes (empty when absent).
    #[serde(skip)]
    pub client_cert_pem: Vec<u8>,
    /// The client key's PEM bytes (empty when absent).
    #[serde(skip)]
    pub client_key_pem: Vec<u8>,
}

fn serialize_methods<S: serde::Serializer>(methods: &[Method], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(methods.iter().map(Method::as_str))
}

fn serialize_headers<S: serde::Serializer>(
    headers: &[(HeaderName, HeaderValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(
        headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("<binary>"))),
    )
}

fn serialize_statuses<S: serde::Serializer>(
    statuses: &[StatusCode],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(statuses.iter().map(StatusCode::as_u16))
}

fn serialize_nets<S: serde::Serializer>(nets: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(nets.iter().map(ToString::to_string))
}

fn serialize_header_names<S: serde::Serializer>(
    names: &[HeaderName],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(HeaderName::as_str))
}

fn serialize_opt_header_name<S: serde::Serializer>(
    name: &Option<HeaderName>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match name {
        Some(n) => s.serialize_str(n.as_str()),
        None => s.serialize_none(),
    }
}

/// A token-bucket rate: a sustained rate and a burst size (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rate {
    /// Requests per second, sustained (> 0).
    pub rps: u32,
    /// Requests allowed at once above the sustained rate (default: equal to `rps`, ≥ 1).
    pub burst: u32,
}

/// A route's rate limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitConfig {
    /// One limit shared by every request of the route (`rps`/`burst` at the block's top level).
    pub route: Option<Rate>,
    /// One limit per key (client IP, header value, path segment).
    pub per_key: Option<KeyedRateConfig>,
    /// Count what would be rejected without rejecting it (default false).
    pub shadow: bool,
}

/// A limit applied separately to each key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyedRateConfig {
    /// What identifies a key.
    pub key: RateKey,
    /// The rate each key gets.
    pub rate: Rate,
    /// Most keys tracked at once (default 100000); beyond, new keys share one overflow bucket.
    pub max_keys: usize,
}

/// What a keyed rate limit keys on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client IP (from `x-forwarded-for` only when the peer is a trusted proxy).
    ClientIp,
    /// The value of this request header (requests without it share one key).
    Header(#[serde(serialize_with = "serialize_header_name")] HeaderName),
    /// The n-th path segment, 1-based (`/api/v1/codes/42`: segment 4 is `42`).
    PathSegment(usize),
}

fn serialize_header_name<S: serde::Serializer>(name: &HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}

/// Micro-cache and request coalescing for GET and HEAD.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheConfig {
    /// How long a response is fresh when the upstream gives no `max-age`/`s-maxage` (> 0).
    #[serde(serialize_with = "serialize_duration")]
    pub ttl: Duration,
    /// Upper bound of the cache's memory, bodies and headers counted (default 64 MiB).
    pub max_bytes: u64,
    /// Largest single response body cached (default 1 MiB); larger ones pass through.
    pub max_object_bytes: u64,
    /// How long past freshness an entry may be served when the upstream fails (default 0s: never).
    #[serde(serialize_with = "serialize_duration")]
    pub stale_if_error: Duration,
    /// Request headers whose values are part of the cache key (e.g. `accept-language`).
    #[serde(serialize_with = "serialize_header_names")]
    pub key_headers: Vec<HeaderName>,
    /// Cache answers to requests carrying `Authorization` (default false).
    pub cache_authorized: bool,
    /// Cache responses carrying `Set-Cookie` (default false).
    pub cache_set_cookie: bool,
    /// Longest a coalesced request waits for its leader, and the leader's deadline
    /// to store its response (default 5s, nginx's `proxy_cache_lock_timeout`): past
    /// it the followers go upstream on their own and nothing is stored.
    #[serde(serialize_with = "serialize_duration")]
    pub lock_timeout: Duration,
}

/// Admission priority; under overload lower priorities are shed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Served first; shed last.
    Critical,
    /// The default.
    Normal,
    /// Served last; shed first.
    Sheddable,
}

/// Circuit breaking for a cluster: Envoy-style thresholds and a failure breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerConfig {
    /// Most upstream connections open at once over all endpoints (default 1024).
    pub max_connections: Option<usize>,
    /// Most requests waiting for a connection (when `max_connections` is reached;
    /// default 1024).
    pub max_pending_requests: Option<usize>,
    /// Most requests in flight to the cluster at once.
    pub max_requests: Option<usize>,
    /// Most retries in flight to the cluster at once.
    pub max_retries: Option<usize>,
    /// Open after this many failures in a row (5xx, reset, timeout, connect failure).
    pub consecutive_failures: Option<u32>,
    /// Open when the failure rate over a rolling window is too high.
    pub failure_rate: Option<FailureRateConfig>,
    /// How long the breaker stays open the first time (default 5s); doubles on each re-open.
    #[serde(serialize_with = "serialize_duration")]
    pub open_for: Duration,
    /// Longest open period (default 60s).
    #[serde(serialize_with = "serialize_duration")]
    pub max_open_for: Duration,
    /// Requests let through while half-open (default 3); all must succeed to close.
    pub half_open_probes: u32,
}

/// The failure-rate condition of a breaker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureRateConfig {
    /// Open at or above this percentage of failed requests (1–100).
    pub threshold_percent: u32,
    /// Rolling window the rate is measured over (default 10s).
    #[serde(serialize_with = "serialize_duration")]
    pub window: Duration,
    /// No decision below this many requests in the window (default 20).
    pub min_requests: u32,
}

/// Adaptive admission for a cluster: a concurrency limit and a priority queue
/// bounded by waiting time (CoDel), with a count only as a memory bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdmissionConfig {
    /// How the concurrency limit is set.
    pub limit: ConcurrencyLimit,
    /// Most requests waiting for admission (default 10000), a memory bound only;
    /// beyond, 503 `overloaded` (`queue_full`). 0: no queue.
    pub max_queue: usize,
    /// Longest wait in the queue, a cap above the delay rule (default 500ms); then
    /// 503 `overloaded` (`queue_timeout`).
    #[serde(serialize_with = "serialize_duration")]
    pub queue_timeout: Duration,
    /// Queueing delay a standing queue may impose before it sheds (`queue_delay`);
    /// `None` (default, `auto`): max(5 ms, the measured minimum latency), at most
    /// half of `queue_timeout`.
    #[serde(serialize_with = "serialize_opt_duration")]
    pub queue_target: Option<Duration>,
    /// How long the queueing delay must stay above the target before the queue is
    /// standing (default 100ms).
    #[serde(serialize_with = "serialize_duration")]
    pub queue_interval: Duration,
    /// Request header that may set the priority (`critical|normal|sheddable`); default none.
    #[serde(serialize_with = "serialize_opt_header_name")]
    pub priority_header: Option<HeaderName>,
}

/// A fixed or adaptive concurrency limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyLimit {
    /// Always this many requests in flight at most.
    Fixed(usize),
    /// A limit that follows measured latency (gradient), within bounds.
    Adaptive(AdaptiveLimit),
}

/// Parameters of the adaptive concurrency limit (`admission::GradientLimit`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdaptiveLimit {
    /// Limit once the no-load latency is known (default 20).
    pub initial: usize,
    /// Lower bound (default 4, ≥ 1); also the limit while the first latency is measured.
    pub min: usize,
    /// Upper bound (default 1000).
    pub max: usize,
    /// Multiple of the no-load latency the app's concurrency is estimated against
    /// (default 1.0, ≥ 1): the limit settles near `tolerance × concurrency + headroom`.
    pub tolerance: f64,
    /// How often the limit is recomputed from the latency samples (default 100ms).
    #[serde(serialize_with = "serialize_duration")]
    pub update_interval: Duration,
    /// How often the no-load latency is re-measured by a shallow probe (default 10s).
    #[serde(serialize_with = "serialize_duration")]
    pub min_rtt_window: Duration,
}
