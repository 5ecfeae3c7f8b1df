//! Load reports: every `control_plane.report_interval` (default 500 ms) the proxy
//! POSTs, per cluster, **cumulative** counters (arrivals at admission, admitted,
//! answers by class, 429s, 503s by reason, the latency sum and count) and gauges
//! (in flight, queue depth, admission limit, latency p50/p99 over the interval) to
//! `POST /v1/reports`. Counters are monotonic, so a lost report loses only
//! freshness: the control plane takes deltas (and treats a counter that went
//! down — a rebuilt cluster, a restarted proxy — as a reset). A report is skipped,
//! never queued, while the control plane is away: the next one carries the totals.
//!
//! Routes with a `global_rate_limit` add their demand (arrivals at the limiter,
//! refused ones included, cumulative) and the share in force to `routes`; the
//! reply carries their new leases ([`super::quota`]), put in force at once.
//!
//! The reading ([`collect`]) is pure over the clusters' state; the loop ([`run`])
//! only times and sends it, on one kept-alive connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http::{ControlHttp, ReportConnection};
use super::quota::{Leases, ReportReply};
use super::status::Status;
use crate::balance::Cluster;
use crate::load::{self, Classes, UnavailableCounts};
use crate::stack::rate_limit::GlobalLimiter;
use crate::state::Proxy;

/// One proxy's report (`POST /v1/reports` body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadReport {
    /// The proxy's node group.
    pub group: String,
    /// The proxy's node id.
    pub node: String,
    /// The report interval, milliseconds: the control plane drops a node that has
    /// not reported for three of them.
    pub interval_ms: u64,
    /// Reports sent by this process so far (a restarted proxy starts again at 0).
    pub seq: u64,
    /// One entry per cluster of the running config.
    pub clusters: Vec<ClusterLoad>,
    /// One entry per route with a `global_rate_limit` (left out when there is none,
    /// so an older control plane, which refuses unknown fields, still takes the report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteDemand>,
}

/// One route's cluster-wide limit as one proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDemand {
    /// The route's name.
    pub route: String,
    /// The configured cluster-wide `rps`.
    pub rps: u32,
    /// Counter: requests that arrived at the limit, refused ones included.
    pub offered: u64,
    /// Gauge: the share in force, rps (a lease's, or `fallback_rps`).
    pub share_rps: u32,
    /// The id of the lease in force (None: on `fallback_rps`); it acknowledges it.
    pub lease: Option<u64>,
    /// Time left on that lease, ms.
    pub lease_expires_in_ms: Option<u64>,
}

/// One cluster's load as one proxy sees it. Counters are cumulative since the
/// cluster was built; gauges are the value now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterLoad {
    /// The cluster's name.
    pub cluster: String,
    /// Counter: requests that arrived at admission, shed ones included (with
    /// admission off: every answer of the cluster's routes).
    pub offered: u64,
    /// Counter: requests admitted (with admission off: equal to `offered`).
    pub admitted: u64,
    /// Counter: requests shed by admission control.
    pub shed: u64,
    /// Counter: answers by class (the cluster's routes; the proxy's own included).
    pub completed: Classes,
    /// Counter: 429 answers (route rate limits, and the app's own).
    pub too_many_requests: u64,
    /// Counter: 503 answers by reason.
    pub unavailable: UnavailableCounts,
    /// Counter: answers the app gave (not the proxy, not the cache) whose latency is timed.
    pub latency_count: u64,
    /// Counter: the sum of those latencies, microseconds.
    pub latency_sum_us: u64,
    /// Gauge: requests admitted and not yet answered (with admission off: active upstream requests).
    pub in_flight: u64,
    /// Gauge: requests waiting for admission.
    pub queue_depth: u64,
    /// Gauge: the admission concurrency limit (None with admission off).
    pub limit: Option<u64>,
    /// Latency median over the last interval, milliseconds (None: no answer).
    pub latency_p50_ms: Option<f64>,
    /// Latency p99 over the last interval, milliseconds (None: no answer).
    pub latency_p99_ms: Option<f64>,
    /// Gauge: endpoints this proxy finds healthy and not ejected (the control plane
    /// counts a replica ready only once a proxy does). Absent from older proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_endpoints: Option<u64>,
}

/// The latency buckets of the previous report, per cluster, for interval quantiles.
#[derive(Debug, Default)]
pub struct Previous {
    buckets: HashMap<String, Vec<u64>>,
}

/// Reads one cluster's counters and gauges; `prev` keeps its latency buckets.
pub fn cluster_load(cluster: &Cluster, prev: &mut Previous) -> ClusterLoad {
    let counts = cluster.load().snapshot();
    let answers =
        counts.completed.ok + counts.completed.client_error + counts.completed.server_error;
    let admission = cluster.admission().map(|a| a.status());
    let (offered, admitted, shed, in_flight, queue_depth, limit) = match &admission {
        Some(a) => (
            a.offered,
            a.admitted,
            a.shed.total,
            a.in_flight as u64,
            a.queue_depth as u64,
            Some(a.limit as u64),
        ),
        None => {
            let active = cluster.status().active_requests as u64;
            (answers, answers, 0, active, 0, None)
        }
    };
    let before = prev.buckets.get(cluster.name());
    let delta: Vec<u64> = counts
        .buckets
        .iter()
        .enumerate()
        .map(|(i, now)| {
            let was = before.and_then(|b| b.get(i)).copied().unwrap_or(0);
            // A counter that went down is a rebuilt cluster: all of it is new.
            if *now >= was {
                now - was
            } else {
                *now
            }
        })
        .collect();
    let p50 = load::quantile_ms(&delta, 0.5);
    let p99 = load::quantile_ms(&delta, 0.99);
    prev.buckets
        .insert(cluster.name().to_owned(), counts.buckets);
    ClusterLoad {
        cluster: cluster.name().to_owned(),
        offered,
        admitted,
        shed,
        completed: counts.completed,
        too_many_requests: counts.too_many_requests,
        unavailable: counts.unavailable,
        latency_count: counts.latency_count,
        latency_sum_us: counts.latency_sum_us,
        in_flight,
        queue_depth,
        limit,
        latency_p50_ms: p50,
        latency_p99_ms: p99,
        available_endpoints: Some(cluster.available_endpoints() as u64),
    }
}

/// The report of every cluster of the running config.
pub fn collect(
    proxy: &Proxy,
    group: &str,
    node: &str,
    interval: Duration,
    seq: u64,
    prev: &mut Previous,
) -> LoadReport {
    let snapshot = proxy.snapshot();
    let clusters: Vec<ClusterLoad> = snapshot.clusters().map(|c| cluster_load(c, prev)).collect();
    prev.buckets
        .retain(|name, _| clusters.iter().any(|c| &c.cluster == name));
    LoadReport {
        group: group.to_owned(),
        node: node.to_owned(),
        interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        seq,
        clusters,
        routes: Vec::new(),
    }
}

/// The cluster-wide limiters of the running config's routes.
pub fn global_limiters(proxy: &Proxy) -> Vec<Arc<GlobalLimiter>> {
    let snapshot = proxy.snapshot();
    snapshot
        .listeners()
        .flat_map(|(_, l)| l.router.routes())
        .filter_map(|r| r.state.global_limiter().cloned())
        .collect()
}

/// The `routes` entries: each limiter's demand and the share `leases` hold at `now`.
pub fn route_demand(
    limiters: &[Arc<GlobalLimiter>],
    leases: &Leases,
    now: crate::time::Instant,
) -> Vec<RouteDemand> {
    limiters
        .iter()
        .map(|l| {
            let lease = leases.in_force(l.route(), now);
            RouteDemand {
                route: l.route().to_owned(),
                rps: l.config().rps,
                offered: l.offered(),
                share_rps: l.share(),
                lease: lease.map(|(id, _, _)| id),
                lease_expires_in_ms: lease
                    .map(|(_, _, left)| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            }
        })
        .collect()
}

/// Sends a report now and then every `interval`, until the task is aborted. A
/// report that fails (control plane away, refused) is dropped; the failure is
/// logged once until one succeeds again. A send that takes longer than the
/// interval is cut off, so reports never pile up.
pub async fn run(
    proxy: Arc<Proxy>,
    http: Arc<ControlHttp>,
    status: Arc<Status>,
    target: (String, String),
    interval: Duration,
) {
    let (group, node) = target;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prev = Previous::default();
    let mut failing = false;
    let mut conn = ReportConnection::default();
    let mut leases = Leases::default();
    for seq in 0u64.. {
        ticker.tick().await;
        // Shares first: a lease that ran out gives way to `fallback_rps` now.
        let limiters = global_limiters(&proxy);
        let sent_at = crate::time::now();
        status.set_shares(leases.apply(&limiters, sent_at));
        let mut report = collect(&proxy, &group, &node, interval, seq, &mut prev);
        report.routes = route_demand(&limiters, &leases, sent_at);
        if report.clusters.is_empty() && report.routes.is_empty() {
            continue;
        }
        let sent = match serde_json::to_vec(&report) {
            Ok(json) => {
                http.send_report(&mut conn, json, interval.max(Duration::from_secs(1)))
                    .await
            }
            Err(e) => Err(super::http::HttpError::Request(e.to_string())),
        };
        match sent {
            Ok(body) => {
                // A reply without leases (an older control plane) changes nothing.
                match serde_json::from_slice::<ReportReply>(&body) {
                    Ok(reply) => leases.accept(sent_at, &reply),
                    Err(e) => tracing::debug!(error = %e, "report reply not understood"),
                }
                if !limiters.is_empty() {
                    status.set_shares(leases.apply(&limiters, crate::time::now()));
                }
                if failing {
                    tracing::info!("load reports delivered again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "load report not delivered; skipped (the next carries the totals)");
                }
                failing = true;
                metrics::counter!(REPORTS_DROPPED).increment(1);
            }
        }
    }
}

/// Counter: load reports not delivered (skipped).
pub const REPORTS_DROPPED: &str = "floodgate_control_reports_dropped_total";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Answered;

    fn cluster(admission: &str) -> Arc<Cluster> {
        let text = format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
             clusters:\n  - name: app\n    endpoints: [\"127.0.0.1:1\"]\n{admission}"
        );
        let config = crate::config::parse_str(&text, "t.yaml", std::path::Path::new(".")).unwrap();
        Cluster::new(config.clusters[0].clone()).unwrap()
    }

    #[tokio::test]
    async fn admission_counters_answers_and_interval_quantiles() {
        let c = cluster("");
        let admission = c.admission().expect("admission is on by default").clone();
        let permit = admission.try_acquire().unwrap();
        let ms = Duration::from_millis;
        c.load().record(200, Answered::Upstream, None, ms(10));
        c.load()
            .record(503, Answered::Proxy, Some(b"overloaded"), ms(0));
        c.load()
            .record(429, Answered::Proxy, Some(b"rate_limited"), ms(0));
        let mut prev = Previous::default();
        let first = cluster_load(&c, &mut prev);
        assert_eq!((first.offered, first.admitted, first.in_flight), (1, 1, 1));
        assert!(first.limit.is_some());
        assert_eq!(first.completed.ok, 1);
        assert_eq!(first.unavailable.overloaded, 1);
        assert_eq!(first.too_many_requests, 1);
        assert_eq!((first.latency_count, first.latency_sum_us), (1, 10_000));
        // One endpoint, not health-checked and not ejected: available.
        assert_eq!(first.available_endpoints, Some(1));
        assert!(first
            .latency_p50_ms
            .is_some_and(|p| (10.0..12.0).contains(&p)));
        drop(permit);
        // Nothing new in the next interval: counters stay, quantiles are empty.
        let second = cluster_load(&c, &mut prev);
        assert_eq!((second.offered, second.in_flight), (1, 0));
        assert_eq!(second.latency_p99_ms, None);
        // The JSON the control plane reads back.
        let report = LoadReport {
            group: "g".into(),
            node: "n".into(),
            interval_ms: 500,
            seq: 1,
            clusters: vec![second],
            routes: Vec::new(),
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"2xx\":1"), "{json}");
        // No global limit, no `routes` field: an older control plane takes it.
        assert!(!json.contains("routes"), "{json}");
        assert_eq!(serde_json::from_str::<LoadReport>(&json).unwrap(), report);
    }

    #[tokio::test]
    async fn without_admission_answers_are_the_offered_load() {
        let c = cluster("    admission: { enabled: false }\n");
        assert!(c.admission().is_none());
        c.load()
            .record(200, Answered::Upstream, None, Duration::from_millis(1));
        c.load().record(200, Answered::Cache, None, Duration::ZERO);
        let l = cluster_load(&c, &mut Previous::default());
        assert_eq!((l.offered, l.admitted, l.limit), (2, 2, None));
        // The cache's answer is not the app's latency.
        assert_eq!(l.latency_count, 1);
    }
}
