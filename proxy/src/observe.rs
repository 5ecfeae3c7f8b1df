//! Observability: metric names and the Prometheus recorder (the access log is
//! [`crate::access_log`]).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by route, cluster and status code.
pub const REQUESTS_TOTAL: &str = "floodgate_requests_total";
/// Time from request head received to response head sent.
pub const REQUEST_DURATION: &str = "floodgate_request_duration_seconds";
/// Requests in flight towards a cluster's endpoints.
pub const UPSTREAM_ACTIVE: &str = "floodgate_upstream_active_requests";
/// Upstream connections currently open, by cluster.
pub const UPSTREAM_CONNECTIONS: &str = "floodgate_upstream_connections";
/// Retries sent, by route and reason.
pub const RETRIES_TOTAL: &str = "floodgate_retries_total";
/// Retries refused by the retry budget, by route.
pub const RETRY_BUDGET_EXHAUSTED: &str = "floodgate_retry_budget_exhausted_total";
/// Outlier ejections, by cluster.
pub const OUTLIER_EJECTIONS: &str = "floodgate_outlier_ejections_total";
/// Endpoints passing health checks and not ejected, by cluster.
pub const ENDPOINTS_AVAILABLE: &str = "floodgate_endpoints_available";
/// Config reload attempts, by result (`applied`, `rejected`, `unchanged`).
pub const CONFIG_RELOADS: &str = "floodgate_config_reloads_total";
/// Histogram: seconds from a validated config handed to `apply` to its snapshot
/// serving (build and swap), of the configs applied.
pub const CONFIG_APPLY_SECONDS: &str = "floodgate_config_apply_seconds";
/// The version number of the running configuration.
pub const CONFIG_VERSION: &str = "floodgate_config_version";
/// 1 while a route's `burst:` overrides are in force (its cluster in burst mode), by listener and route.
pub const ROUTE_BURST_ACTIVE: &str = "floodgate_route_burst_active";
/// Downstream connections open, by listener.
pub const DOWNSTREAM_CONNECTIONS: &str = "floodgate_downstream_connections";
/// Downstream connections each worker serves, by listener and worker.
pub const WORKER_CONNECTIONS: &str = "floodgate_worker_connections";
/// Downstream connections the proxy closed on its own, by listener and reason
/// (`idle`, `header_timeout`, `send_timeout`, `rapid_reset`).
pub const LISTENER_CONNECTIONS_CLOSED: &str = "floodgate_listener_connections_closed_total";
/// Idle HTTP/1 keep-alive connections parked (hyper's buffers and state let go), by listener.
pub const LISTENER_PARKS: &str = "floodgate_listener_parks_total";
/// Requests the proxy turned away by itself, by cluster and reason (`overflow`, `circuit_open`, ...).
pub const SHED_TOTAL: &str = "floodgate_shed_total";
/// Circuit-breaker state by cluster: 0 closed, 1 open, 2 half-open.
pub const BREAKER_STATE: &str = "floodgate_breaker_state";

/// Cacheable-route requests by how the micro-cache answered them
/// (`hit`, `miss`, `stale`, `bypass`, `coalesced`), by route.
pub const CACHE_REQUESTS_TOTAL: &str = "floodgate_cache_requests_total";
/// Admission concurrency limit in force, by cluster.
pub const CONCURRENCY_LIMIT: &str = "floodgate_concurrency_limit";
/// Requests waiting in a cluster's admission queue.
pub const QUEUE_DEPTH: &str = "floodgate_queue_depth";
/// Requests that arrived at a cluster's admission, shed or not (offered demand).
pub const ADMISSION_OFFERED_TOTAL: &str = "floodgate_admission_offered_total";
/// Requests a cluster's admission let through, at once or after queueing.
pub const ADMISSION_ADMITTED_TOTAL: &str = "floodgate_admission_admitted_total";
/// Requests that had to wait in a cluster's admission queue.
pub const ADMISSION_QUEUED_TOTAL: &str = "floodgate_admission_queued_total";
/// Queueing delay of a cluster's admission queue (age of the oldest waiter), in seconds.
pub const QUEUE_DELAY: &str = "floodgate_queue_delay_seconds";
/// Histogram: seconds a queued request waited in a cluster's admission queue, by
/// cluster and outcome (`admitted`, or the shed reason); requests admitted or
/// refused at once never queued and are not in it.
pub const ADMISSION_WAIT: &str = "floodgate_admission_wait_seconds";
/// Requests whose client went away before the answer, by cluster and stage
/// (`queued`, `in_service`).
pub const CLIENT_GONE_TOTAL: &str = "floodgate_client_gone_total";
/// Requests refused by a rate limit, by route, scope (`route`, `key`) and shadow
/// (`true`: counted in shadow mode, not refused).
pub const RATE_LIMITED_TOTAL: &str = "floodgate_rate_limited_total";
/// Keys tracked by a route's per-key rate limit.
pub const RATE_LIMIT_KEYS: &str = "floodgate_rate_limit_keys";
/// Per-key decisions made on the shared overflow bucket (key table full), by route.
pub const RATE_LIMIT_OVERFLOW_TOTAL: &str = "floodgate_rate_limit_overflow_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Finer at the bottom than [`LATENCY_BUCKETS`]: a shed waiter's wait is a
/// fraction of a millisecond when the queue works as meant.
const WAIT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const APPLY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(CONFIG_APPLY_SECONDS.to_owned()),
                    APPLY_BUCKETS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(ADMISSION_WAIT.to_owned()), WAIT_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (e.g. by an embedding program);
        // then our handle renders an empty page rather than panicking.
        if metrics::set_global_recorder(recorder).is_ok() {
            spawn_upkeep(handle.clone());
        }
        describe();
        handle
    })
}

/// How often the recorder's histograms are drained into their buckets when nobody
/// scrapes `/metrics` (a render drains them too).
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] on a small thread of its own
/// (not a runtime task: the recorder outlives any runtime). Without it a histogram
/// keeps every sample until the next render: a sidecar nobody scrapes grows by
/// ~15-20 bytes per request, and the first scrape after a million requests is slow.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("floodgate-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histograms drain only when /metrics is scraped");
    }
}

fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests answered, by route, cluster and status code."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head received to response head sent."
    );
    describe_gauge!(
        UPSTREAM_ACTIVE,
        "Requests in flight towards a cluster's endpoints."
    );
    describe_gauge!(
        UPSTREAM_CONNECTIONS,
        "Upstream connections open, by cluster."
    );
    describe_counter!(RETRIES_TOTAL, "Retries sent, by route.");
    describe_counter!(
        RETRY_BUDGET_EXHAUSTED,
        "Retries refused by the retry budget."
    );
    describe_counter!(OUTLIER_EJECTIONS, "Outlier ejections, by cluster.");
    describe_gauge!(
        ENDPOINTS_AVAILABLE,
        "Endpoints healthy and not ejected, by cluster."
    );
    describe_counter!(CONFIG_RELOADS, "Config reload attempts, by result.");
    describe_histogram!(
        CONFIG_APPLY_SECONDS,
        "Seconds from a validated config to its snapshot serving (build and swap)."
    );
    describe_gauge!(
        CONFIG_VERSION,
        "Version number of the running configuration."
    );
    describe_gauge!(
        ROUTE_BURST_ACTIVE,
        "1 while the route's burst overrides are in force, by listener and route."
    );
    describe_gauge!(
        DOWNSTREAM_CONNECTIONS,
        "Downstream connections open, by listener."
    );
    describe_gauge!(
        WORKER_CONNECTIONS,
        "Downstream connections each worker serves, by listener and worker."
    );
    describe_counter!(
        LISTENER_CONNECTIONS_CLOSED,
        "Downstream connections closed by the proxy, by listener and reason."
    );
    describe_counter!(
        LISTENER_PARKS,
        "Idle HTTP/1 keep-alive connections parked (their HTTP state released), by listener."
    );
    describe_counter!(
        CACHE_REQUESTS_TOTAL,
        "Micro-cache answers (hit, miss, stale, bypass, coalesced), by route."
    );
    describe_counter!(
        SHED_TOTAL,
        "Requests turned away by the proxy itself, by cluster and reason."
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit-breaker state by cluster: 0 closed, 1 open, 2 half-open."
    );
    describe_gauge!(
        CONCURRENCY_LIMIT,
        "Admission concurrency limit in force, by cluster."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Requests waiting in the admission queue, by cluster."
    );
    describe_counter!(
        ADMISSION_OFFERED_TOTAL,
        "Requests arriving at admission (offered demand, shed or not), by cluster."
    );
    describe_counter!(
        ADMISSION_ADMITTED_TOTAL,
        "Requests admitted (at once or after queueing), by cluster."
    );
    describe_counter!(
        ADMISSION_QUEUED_TOTAL,
        "Requests that waited in the admission queue, by cluster."
    );
    describe_gauge!(
        QUEUE_DELAY,
        Unit::Seconds,
        "Admission queueing delay (age of the oldest waiter), by cluster."
    );
    describe_histogram!(
        ADMISSION_WAIT,
        Unit::Seconds,
        "Time queued requests waited for admission, by cluster and outcome."
    );
    describe_counter!(
        CLIENT_GONE_TOTAL,
        "Requests whose client went away, by cluster and stage (queued, in_service)."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests over a rate limit, by route, scope and shadow."
    );
    describe_gauge!(RATE_LIMIT_KEYS, "Keys tracked by a per-key rate limit.");
    describe_counter!(
        RATE_LIMIT_OVERFLOW_TOTAL,
        "Per-key rate-limit decisions on the shared overflow bucket."
    );
    describe_counter!(
        UPSTREAM_OVERLOADED,
        "Upstream answers that said busy (429, 503 with Retry-After), by cluster; not failures."
    );
    describe_counter!(
        OUTLIER_SPARED,
        "Ejections not made, by cluster and reason (like_peers, no_peers, max_ejection_percent)."
    );
}

/// The `code` label value for a status, without allocating per request.
pub fn status_label(status: http::StatusCode) -> SharedString {
    static LABELS: OnceLock<Vec<SharedString>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (100u16..600)
            .map(|c| SharedString::from(c.to_string()))
            .collect()
    });
    labels
        .get(usize::from(status.as_u16().saturating_sub(100)))
        .cloned()
        .unwrap_or_else(|| SharedString::from(status.as_u16().to_string()))
}

/// Status codes whose request counters an arm keeps ready, so the common case does
/// no registry lookup (and no label allocation) per request.
const COMMON_CODES: [u16; 12] = [200, 201, 204, 301, 302, 304, 400, 404, 429, 502, 503, 504];

/// The per-request metrics of one route arm (route × cluster), registered once.
pub struct RequestMetrics {
    route: SharedString,
    cluster: SharedString,
    common: [OnceLock<metrics::Counter>; COMMON_CODES.len()],
    /// Registered on the first request, so the recorder holds nothing (key, buckets)
    /// for a route never asked, as most of a 10,000-route table may be.
    duration: OnceLock<metrics::Histogram>,
}

impl RequestMetrics {
    /// Handles for requests of `route` sent to `cluster` (`-` when none).
    pub fn new(route: SharedString, cluster: SharedString) -> Self {
        Self {
            duration: OnceLock::new(),
            route,
            cluster,
            common: Default::default(),
        }
    }

    /// Counts one answered request and records its duration.
    pub fn record(&self, status: http::StatusCode, elapsed: Duration) {
        let code = status.as_u16();
        let register = || {
            metrics::counter!(
                REQUESTS_TOTAL,
                "route" => self.route.clone(),
                "cluster" => self.cluster.clone(),
                "code" => status_label(status)
            )
        };
        match COMMON_CODES.iter().position(|&c| c == code) {
            Some(i) => match self.common.get(i) {
                Some(slot) => slot.get_or_init(register).increment(1),
                None => register().increment(1),
            },
            None => register().increment(1),
        }
        self.duration
            .get_or_init(|| metrics::histogram!(REQUEST_DURATION, "route" => self.route.clone()))
            .record(elapsed.as_secs_f64());
    }
}

/// Counter `{cluster}`: upstream answers that said "busy" (429, or 503 with
/// `Retry-After`); not failures for outlier detection or the breaker.
pub const UPSTREAM_OVERLOADED: &str = "floodgate_upstream_overloaded_total";
/// Counter `{cluster, reason}`: failures over `consecutive_failures` that did not
/// eject (`like_peers`, `no_peers`, `max_ejection_percent`).
pub const OUTLIER_SPARED: &str = "floodgate_outlier_ejections_spared_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_drains_histograms_into_their_buckets_without_losing_samples() {
        let handle = prometheus();
        let h = metrics::histogram!(REQUEST_DURATION, "route" => "upkeep-test");
        for _ in 0..1000 {
            h.record(0.003);
        }
        // What the upkeep thread does every few seconds: the samples move into the
        // buckets (bounded memory), and the next render still counts all of them.
        handle.run_upkeep();
        h.record(0.003);
        let page = handle.render();
        let count = page
            .lines()
            .find(|l| {
                l.starts_with(REQUEST_DURATION) && l.contains("upkeep-test") && l.contains("_count")
            })
            .unwrap_or_default()
            .to_owned();
        assert!(count.ends_with(" 1001"), "{count}");
    }
}
