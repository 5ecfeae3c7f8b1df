//! File types: the YAML exactly as the user writes it (serde, `deny_unknown_fields`).
//!
//! Optional fields are `Option<_>`: defaults are applied by validation, so the admin
//! `/config` page shows the effective values and validation errors can name the field.
//! Durations, sizes and status codes are kept as [`Scalar`] text here and parsed in
//! validation, which reports every bad value instead of stopping at the first.
//! See `docs/config.md` for the reference of every field.
//!
//! The types also serialize (the control plane sends the file form it validated as
//! JSON, absent fields left out): reading that back gives an equal value.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use super::shapes::{OneOrMany, OrderedMap, Scalar};
use super::ConfigError;

/// The whole config file as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The admin listener (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<FileAdmin>,
    /// Process-wide settings (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<FileServer>,
    /// The control plane this proxy takes its config from (a bootstrap; optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<FileControlPlane>,
    /// Listening sockets and their routes (at least one, unless `control_plane` is set).
    #[serde(default)]
    pub listeners: Vec<FileListener>,
    /// Upstream services (at least one, unless `control_plane` is set).
    #[serde(default)]
    pub clusters: Vec<FileCluster>,
}

/// `control_plane:` block (see `docs/config.md`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileControlPlane {
    /// `http://host:port` or `https://host:port` of the control plane's API.
    pub url: String,
    /// This proxy's name in the control plane's node list (default: the hostname).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The node group whose snapshots this proxy runs.
    pub group: String,
    /// The proxy-role bearer token: a literal, `file:PATH` or `env:NAME`.
    pub token: String,
    /// PEM CA bundle the control plane's certificate must chain to (`https://` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Where the last applied snapshot is persisted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_file: Option<PathBuf>,
    /// HTTP timeout of one long poll (above the control plane's `long_poll.timeout + jitter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_timeout: Option<Scalar>,
    /// Retry schedule after a failed poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<FileBackoff>,
    /// Period of load reports (`0s`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_interval: Option<Scalar>,
}

/// `control_plane.backoff:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackoff {
    /// First retry delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial: Option<Scalar>,
    /// Longest retry delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Scalar>,
    /// Growth factor from one delay to the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

/// `admin:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// `host:port` of the admin HTTP server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bearer token the admin API asks for (literal, `file:PATH` or `env:NAME`);
    /// required when `listen` is not a loopback address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `server:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Time in-flight requests get after SIGTERM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<Scalar>,
    /// The access log: `true`/`false`, or where, how and what.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<FileAccessLog>,
}

/// `server.access_log:`: a switch or a block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FileAccessLog {
    /// `true` (the defaults) or `false` (off).
    Switch(bool),
    /// `{ path, format, fields }`.
    Block(FileAccessLogBlock),
}

/// `server.access_log: { … }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLogBlock {
    /// Off with `false` (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `stdout`, `stderr` or a file path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `json` or `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Field names, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

/// One entry of `listeners:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// Unique listener name.
    pub name: String,
    /// `ip:port` to bind.
    pub listen: String,
    /// TLS termination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<FileServerTls>,
    /// Connection limits and timeouts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<FileLimits>,
    /// Peers (IPs or CIDRs) whose `x-forwarded-for` is believed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// Headers the proxy adds to requests and responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<FileHeaders>,
    /// Routes, first match wins (shared: a parse that takes a route item unchanged
    /// from [`super::ParseCache`] shares it, and a validation compares it by pointer first).
    pub routes: Vec<Arc<FileRoute>>,
}

/// `listeners[].headers:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileHeaders {
    /// Add `x-forwarded-for`, `x-forwarded-proto` and `x-forwarded-host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded: Option<bool>,
    /// Generate `x-request-id` when missing and return it on the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<bool>,
}

/// `listeners[].tls:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileServerTls {
    /// Certificates; the first is the default.
    pub certs: Vec<FileCert>,
    /// ALPN protocols offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<Vec<String>>,
}

/// One entry of `listeners[].tls.certs:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileCert {
    /// PEM certificate chain path (relative to the config file's folder).
    pub cert: PathBuf,
    /// PEM private key path (relative to the config file's folder).
    pub key: PathBuf,
    /// Server names (exact or `*.suffix`) this certificate answers for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<OneOrMany<String>>,
}

/// `listeners[].limits:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Most concurrently open downstream connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Time allowed to receive a request's headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<Scalar>,
    /// Keep-alive idle time before a connection is closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Scalar>,
    /// Longest time a client may take nothing of a response being written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<Scalar>,
    /// Largest request head (`65536` or `64KiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<Scalar>,
    /// Largest request body (`10485760` or `10MiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<Scalar>,
    /// Most concurrent HTTP/2 streams per client connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// Streams looked at by the premature-reset rule (Envoy's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub premature_reset_total_stream_count: Option<u32>,
    /// A client cancel sooner than this after a stream started is premature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub premature_reset_min_stream_lifetime: Option<Scalar>,
}

/// One entry of `listeners[].routes:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// Unique name within the listener.
    pub name: String,
    /// What requests the route takes (default: every request).
    #[serde(rename = "match")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matcher: Option<FileMatch>,
    /// The one cluster requests go to (or use `weighted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// A weighted split among clusters (or use `cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted: Option<Vec<FileWeighted>>,
    /// Replacement for the matched path prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_prefix: Option<String>,
    /// Whole-request deadline including retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Scalar>,
    /// Retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<FileRetry>,
    /// Forward the client's `Host` header unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preserve_host: Option<bool>,
    /// Request-rate limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<FileRateLimit>,
    /// Micro-cache and request coalescing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<FileCache>,
    /// Admission priority: `critical`, `normal` or `sheddable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<FilePriority>,
    /// What changes while the route's cluster is in burst mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<FileBurst>,
    /// A cluster-wide limit split among the proxies by the control plane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<FileGlobalRateLimit>,
}

/// `routes[].global_rate_limit:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileGlobalRateLimit {
    /// Requests per second for every proxy serving the route together.
    pub rps: u32,
    /// Requests at once for every proxy together (default `rps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests per second of one proxy without a lease from the control plane.
    pub fallback_rps: u32,
}

/// `routes[].burst:` block: settings that replace the route's own while its
/// cluster has `burst_mode: true`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileBurst {
    /// Replaces `rate_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<FileRateLimit>,
    /// Replaces `cache`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<FileCache>,
    /// Replaces `priority`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<FilePriority>,
}

/// `routes[].rate_limit:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileRateLimit {
    /// Route-wide sustained requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<u32>,
    /// Route-wide burst.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Count instead of reject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<bool>,
    /// A limit per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key: Option<FilePerKey>,
}

/// `routes[].rate_limit.per_key:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilePerKey {
    /// `client_ip`, `header:<name>` or `path_segment:<n>`.
    pub key: String,
    /// Sustained requests per second per key.
    pub rps: u32,
    /// Burst per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Most keys tracked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
}

/// `routes[].cache:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    /// Freshness when the upstream gives none.
    pub ttl: Scalar,
    /// Memory bound (`64MiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<Scalar>,
    /// Largest cached body (`1MiB`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_object_bytes: Option<Scalar>,
    /// Serve stale this long past freshness when the upstream fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_if_error: Option<Scalar>,
    /// Request headers that are part of the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_headers: Option<Vec<String>>,
    /// Cache answers to requests with `Authorization`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_authorized: Option<bool>,
    /// Cache responses with `Set-Cookie`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_set_cookie: Option<bool>,
    /// Longest a follower waits for its leader's response (`5s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<Scalar>,
}

/// `routes[].priority` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilePriority {
    /// Served first, shed last.
    Critical,
    /// The default.
    Normal,
    /// Shed first.
    Sheddable,
}

/// `clusters[].circuit_breaker:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileBreaker {
    /// Most open upstream connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most requests waiting for a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<usize>,
    /// Most requests in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<usize>,
    /// Most retries in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<usize>,
    /// Failures in a row that open the breaker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Failure-rate condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FileFailureRate>,
    /// First open period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_for: Option<Scalar>,
    /// Longest open period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_open_for: Option<Scalar>,
    /// Probes while half-open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<u32>,
}

/// `clusters[].circuit_breaker.failure_rate:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileFailureRate {
    /// Percentage of failures that opens the breaker.
    pub threshold_percent: u32,
    /// Rolling window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Scalar>,
    /// Minimum requests in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u32>,
}

/// `clusters[].admission:` block (absent: admission on its defaults).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmission {
    /// `false` turns admission off for the cluster (default `true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A fixed concurrency limit (instead of the adaptive one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_limit: Option<usize>,
    /// Adaptive limit at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_limit: Option<usize>,
    /// Adaptive lower bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_limit: Option<usize>,
    /// Adaptive upper bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_limit: Option<usize>,
    /// Latency multiple the app's concurrency is estimated against (adaptive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Limit recomputation period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_interval: Option<Scalar>,
    /// How often the no-load latency is re-measured (adaptive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rtt_window: Option<Scalar>,
    /// Most queued requests (a memory bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<usize>,
    /// Longest queue wait (a cap above the delay rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_timeout: Option<Scalar>,
    /// Queueing delay a standing queue may impose: a duration, or `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_target: Option<Scalar>,
    /// How long the delay must stay above the target before the queue is standing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_interval: Option<Scalar>,
    /// Header carrying a request's priority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_header: Option<String>,
}

/// `routes[].match:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileMatch {
    /// Host name, `*.suffix`, or `*` for any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Exact path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// One method or a list of methods.
    #[serde(alias = "methods")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<OneOrMany<String>>,
    /// Header name → exact value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<OrderedMap<Scalar>>,
}

/// One entry of `routes[].weighted:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileWeighted {
    /// Cluster name.
    pub cluster: String,
    /// Relative weight.
    pub weight: u32,
}

/// `routes[].retry:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    /// Total tries including the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Retry conditions: names or status codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<OneOrMany<Scalar>>,
    /// Deadline of one try.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Scalar>,
    /// Retry budget as a percentage of regular requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<f64>,
    /// Retries always allowed per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_retries_per_sec: Option<u32>,
    /// Base backoff between tries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Scalar>,
}

/// One entry of `clusters:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// Unique cluster name.
    pub name: String,
    /// `host:port` endpoints.
    pub endpoints: Vec<String>,
    /// Load-balancing policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balancer: Option<FileBalancer>,
    /// HTTP version towards endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<FileProtocol>,
    /// TCP (and TLS) connect deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Scalar>,
    /// Idle pooled connections are closed after this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Scalar>,
    /// Longest silence of a response body between two reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<Scalar>,
    /// Most idle pooled connections per endpoint, per worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_idle_per_endpoint: Option<usize>,
    /// Below this share (percent) of available endpoints, balance over all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<u32>,
    /// Active health checking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<FileHealthCheck>,
    /// Passive outlier ejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<FileOutlier>,
    /// TLS towards endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<FileUpstreamTls>,
    /// Circuit breaking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<FileBreaker>,
    /// Adaptive admission (absent: on, with its defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<FileAdmission>,
    /// Burst mode: the `burst:` overrides of the routes to this cluster apply (set by
    /// the control plane while the cluster's autoscaler is in panic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst_mode: Option<bool>,
}

/// `clusters[].balancer` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileBalancer {
    /// Power of two choices, least requests in flight.
    P2cLeastRequest,
    /// Each endpoint in turn.
    RoundRobin,
}

/// `clusters[].protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2.
    Http2,
}

/// `clusters[].health_check:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Scalar>,
    /// Deadline of one check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Scalar>,
    /// Passes that make an endpoint healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Failures that make an endpoint unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// `Host` header of checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `clusters[].outlier:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutlier {
    /// Consecutive failures that eject an endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// First ejection length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection: Option<Scalar>,
    /// Longest ejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection: Option<Scalar>,
    /// Most endpoints ejected at once, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// `clusters[].upstream_tls:` block.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    /// CA bundle path.
    pub ca: PathBuf,
    /// Server name to verify and send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Client certificate path (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// Client key path (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

/// Parses YAML text into file types; syntax and type errors carry line and column, and
/// the field path (`listeners[0].routes[1].retry.attempts`).
pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    let typed = serde_path_to_error::deserialize(de);
    // A large file that parses is a config (the untyped pass below would cost twice the
    // typed one in time and memory: 10,000 routes, #18).
    if typed.is_ok() && text.len() > UNTYPED_CHECK_MAX {
        return typed.map_err(|e| typed_error(&e));
    }
    // An untyped pass tells an empty file (or one of comments only) from a broken one.
    match serde_norway::from_str::<serde_norway::Value>(text) {
        Ok(serde_norway::Value::Null) => {
            return Err(ConfigError::at(
                "",
                "the config is empty: it needs at least `listeners` and `clusters` \
                 (see configs/demo.yaml for a starting point)",
            ))
        }
        Ok(serde_norway::Value::Mapping(_)) => {}
        Ok(_) => {
            return Err(ConfigError {
                line: Some(1),
                column: Some(1),
                path: String::new(),
                reason: "the top level must be a mapping (`listeners:`, `clusters:`, ...)".into(),
            })
        }
        Err(e) => return Err(second_document(text).unwrap_or_else(|| yaml_error("", &e))),
    }
    typed.map_err(|e| typed_error(&e))
}

/// Files up to this size also get the untyped pass of [`parse`], even when they parse.
const UNTYPED_CHECK_MAX: usize = 64 * 1024;

/// A typed parse error at its field path.
fn typed_error(e: &serde_path_to_error::Error<serde_norway::Error>) -> ConfigError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    yaml_error(&path, e.inner())
}

/// A file of several YAML documents: serde_norway says so without a position, so
/// the line that starts the second one is found by parsing prefixes of the file
/// (a bisection: a handful of parses, on the error path only).
fn second_document(text: &str) -> Option<ConfigError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let several = |k: usize| {
        let prefix: String = lines.get(..k).unwrap_or_default().concat();
        serde_norway::from_str::<serde_norway::Value>(&prefix).is_err_and(|e| {
            e.location().is_none() && e.to_string().contains("more than one document")
        })
    };
    if !several(lines.len()) {
        return None;
    }
    // several(lo) is false (no lines: one empty document), several(hi) is true.
    let (mut lo, mut hi) = (0, lines.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if several(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(ConfigError {
        line: Some(hi),
        column: Some(1),
        path: String::new(),
        reason: "a second YAML document starts here (a `---` line, or a line indented less \
                 than the first one); a config file is one document"
            .into(),
    })
}

/// Turns a serde_norway error into a [`ConfigError`] at `path`, moving the position from
/// the message into `line`/`column` and dropping serde_norway's own path prefix.
fn yaml_error(path: &str, e: &serde_norway::Error) -> ConfigError {
    let location = e.location();
    let mut reason = e.to_string();
    if let Some(loc) = &location {
        reason = reason.replace(
            &format!(" at line {} column {}", loc.line(), loc.column()),
            "",
        );
    }
    // serde_norway prefixes type errors with its own path (`listeners[0].name: ...`);
    // ours comes from serde_path_to_error and is kept separately.
    if let Some((head, rest)) = reason.split_once(": ") {
        let looks_like_path = !head.is_empty()
            && !head.contains(char::is_whitespace)
            && !head.contains('`')
            && !rest.is_empty();
        if looks_like_path {
            reason = rest.to_owned();
        }
    }
    ConfigError {
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file form written as JSON (as the control plane sends it) reads back equal,
    /// for every example config and a route with every kind of field.
    #[test]
    fn the_json_file_form_reads_back_equal() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut texts: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        texts.push(
            "listeners:\n  - name: l\n    listen: 127.0.0.1:0\n    routes:\n      - name: r\n        \
             match: { host: \"*.a.example\", path: /x, method: [GET, POST], headers: { x-canary: \"1\" } }\n        \
             weighted: [{ cluster: c, weight: 3 }]\n        timeout: 5\n        \
             retry: { attempts: 3, on: [connect_failure, 503], budget_percent: 12.5 }\n        \
             rate_limit: { rps: 5, per_key: { key: client_ip, rps: 1 } }\n        \
             cache: { ttl: 1s }\n        priority: critical\n        burst: { priority: sheddable }\n\
             clusters: [{ name: c, endpoints: [\"127.0.0.1:1\"] }]\n"
                .to_owned(),
        );
        // `control*.yaml` are the control plane's own configs, not proxy configs.
        let files: Vec<FileConfig> = texts.iter().filter_map(|t| parse(t).ok()).collect();
        assert!(files.len() >= 5, "{} proxy configs", files.len());
        for file in files {
            let json = serde_json::to_string(&file).unwrap();
            let back: FileConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, file, "{json}");
        }
    }

    const MINIMAL: &str = "
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - name: all
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:9001]
";

    #[test]
    fn parses_minimal_file() {
        let f = parse(MINIMAL).unwrap();
        assert_eq!(f.listeners[0].routes[0].cluster.as_deref(), Some("app"));
        assert_eq!(f.clusters[0].endpoints, vec!["127.0.0.1:9001".to_owned()]);
        assert!(f.admin.is_none());
    }

    /// Found by `tests/fuzz_config.rs`: a file of two documents was an error with
    /// neither a field path nor a line.
    #[test]
    fn a_second_document_is_an_error_at_its_line() {
        let text = format!("# comment\n---\n{MINIMAL}---\nlisteners: []\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(text.lines().count() - 1), "{e:?}");
        assert!(e.reason.contains("second YAML document"), "{e:?}");
        // The fuzzer's case: a first line indented more than the rest.
        let e = parse("    a: 1\nb: 2\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
        // A leading `---` alone is one document.
        assert!(parse(&format!("---\n{MINIMAL}")).is_ok());
    }

    #[test]
    fn empty_file_is_a_clear_error() {
        for text in ["", "   \n", "# only a comment\n"] {
            let e = parse(text).unwrap_err();
            assert!(e.reason.contains("config is empty"), "{e:?}");
        }
        let e = parse("- a\n- b\n").unwrap_err();
        assert!(e.reason.contains("must be a mapping"), "{e:?}");
    }

    #[test]
    fn unknown_field_names_path_and_allowed_fields() {
        let text = MINIMAL.replace(
            "        cluster: app",
            "        cluster: app\n        retries: 3",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.path, "listeners[0].routes[0].retries");
        assert!(e.reason.contains("unknown field `retries`"), "{e:?}");
        assert!(e.reason.contains("`retry`"), "allowed fields listed: {e:?}");
        assert_eq!((e.line, e.column), (Some(8), Some(9)));
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let text = "listeners:\n  - name: web\n    listen: [oops\n";
        let e = parse(text).unwrap_err();
        assert_eq!((e.line, e.column), (Some(4), Some(1)), "{e:?}");
        assert!(
            !e.reason.contains("at line 4 column 1"),
            "position moved out: {e:?}"
        );
        // libyaml's context (where the unclosed list started) stays in the reason.
        assert!(
            e.reason.contains("flow sequence at line 3 column 13"),
            "{e:?}"
        );
        let text = "clusters:\n  - name: a\n   bad: indent\n";
        let e = parse(text).unwrap_err();
        assert_eq!(e.line, Some(3), "{e:?}");
    }

    #[test]
    fn type_error_has_path_and_position() {
        let text = MINIMAL.replace(
            "  - name: app\n",
            "  - name: app\n    max_idle_per_endpoint: lots\n",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.path, "clusters[0].max_idle_per_endpoint");
        assert!(
            e.reason.starts_with("invalid type: string \"lots\""),
            "{e:?}"
        );
        assert_eq!(e.line, Some(10));
    }

    #[test]
    fn missing_required_field_is_named() {
        let text = MINIMAL.replace("    endpoints: [127.0.0.1:9001]\n", "");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.path, "clusters[0]");
        assert!(e.reason.contains("missing field `endpoints`"), "{e:?}");
    }

    #[test]
    fn unknown_enum_value_lists_choices() {
        let text = MINIMAL.replace("  - name: app\n", "  - name: app\n    balancer: random\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.path, "clusters[0].balancer");
        assert!(e.reason.contains("p2c_least_request"), "{e:?}");
    }

    #[test]
    fn one_or_many_and_scalars() {
        let text = MINIMAL.replace(
            "        cluster: app",
            "        cluster: app\n        match: {method: GET, headers: {x-b: 2, x-a: yes}}\n        \
             timeout: 5\n        retry: {on: 503}",
        );
        let f = parse(&text).unwrap();
        let r = &f.listeners[0].routes[0];
        let m = r.matcher.as_ref().unwrap();
        assert_eq!(m.method.as_ref().unwrap().0, vec!["GET".to_owned()]);
        let headers = &m.headers.as_ref().unwrap().0;
        assert_eq!(headers[0], ("x-b".to_owned(), Scalar("2".into())));
        assert_eq!(headers[1], ("x-a".to_owned(), Scalar("yes".into())));
        assert_eq!(r.timeout, Some(Scalar("5".into())));
        assert_eq!(
            r.retry.as_ref().unwrap().on.as_ref().unwrap().0,
            vec![Scalar("503".into())]
        );
    }
}
