//! Load-report ingestion: the last reports of every (node, cluster) as a series
//! ([`window::Series`]), and each cluster's load over a window summed over the
//! proxies that report it. A node that has not reported for
//! [`STALE_INTERVALS`] of its report intervals drops out of every sum.
//!
//! The state sits behind [`LoadStore`] so that a shared backend (etcd, with the
//! autoscaler on an elected leader) can replace [`MemoryLoad`], the embedded default.

pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use floodgate::control_client::report::LoadReport;
use serde::Serialize;

use crate::store::StoreError;
use window::{ClusterWindow, NodeWindow, Series};

/// A node is stale after this many report intervals without a report.
pub const STALE_INTERVALS: u64 = 3;
/// Most clusters one report may carry.
pub const MAX_CLUSTERS: usize = 1000;
/// Shortest and longest report interval accepted, ms.
pub const INTERVAL_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=60_000;

/// Why a report was refused (400).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReportError {
    /// The report is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cluster's load over the windows asked for, with the proxies counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterLoadView {
    /// Proxies reporting the cluster (not stale).
    pub nodes: u32,
    /// One entry per window asked for, in the same order.
    pub windows: Vec<ClusterWindow>,
    /// The highest p99 latency of the proxies' last intervals, ms.
    pub p99_ms: Option<f64>,
    /// Arrivals counted in the last window asked for (the shortest, by convention).
    pub fast_arrivals: f64,
    /// The most endpoints any proxy finds available (healthy, not ejected) in its
    /// last report; None when no proxy reports it.
    pub available: Option<u32>,
}

/// A reporting proxy, for `GET /v1/reports`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reporter {
    /// Its group.
    pub group: String,
    /// Its node id.
    pub node: String,
    /// Its report interval, ms.
    pub interval_ms: u64,
    /// When its last report arrived, Unix ms.
    pub last_report_ms: u64,
    /// Whether it counts (reported within [`STALE_INTERVALS`] intervals).
    pub stale: bool,
    /// The clusters it reports.
    pub clusters: Vec<String>,
}

/// Where reports are kept.
pub trait LoadStore: Send + Sync + 'static {
    /// Takes in one report received at `at_ms` (Unix ms).
    fn record(&self, report: &LoadReport, at_ms: u64) -> Result<(), ReportError>;
    /// `cluster`'s load over each of `windows`, from the proxies not stale at `now_ms`.
    fn cluster(
        &self,
        cluster: &str,
        windows: &[Duration],
        now_ms: u64,
    ) -> Result<ClusterLoadView, StoreError>;
    /// Every proxy that reported (stale ones until they are forgotten).
    fn reporters(&self, now_ms: u64) -> Result<Vec<Reporter>, StoreError>;
    /// Drops samples older than `retain` and nodes silent for longer than it.
    fn prune(&self, now_ms: u64, retain: Duration) -> Result<(), StoreError>;
}

/// Checks what the API cannot leave to serde.
pub fn check(report: &LoadReport) -> Result<(), ReportError> {
    if report.node.trim().is_empty() || report.group.trim().is_empty() {
        return Err(ReportError::Invalid(
            "group and node must not be empty".into(),
        ));
    }
    if !INTERVAL_RANGE_MS.contains(&report.interval_ms) {
        return Err(ReportError::Invalid(format!(
            "interval_ms {} is outside {INTERVAL_RANGE_MS:?}",
            report.interval_ms
        )));
    }
    if report.clusters.len() > MAX_CLUSTERS {
        return Err(ReportError::Invalid(format!(
            "more than {MAX_CLUSTERS} clusters"
        )));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Node {
    group: String,
    interval_ms: u64,
    last_ms: u64,
    clusters: HashMap<String, Series>,
}

impl Node {
    fn stale(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_ms) > STALE_INTERVALS * self.interval_ms
    }
}

/// The in-memory [`LoadStore`]: one mutex, held for in-memory work only.
#[derive(Debug, Default)]
pub struct MemoryLoad {
    nodes: Mutex<BTreeMap<(String, String), Node>>,
}

impl MemoryLoad {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Node>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LoadStore for MemoryLoad {
    fn record(&self, report: &LoadReport, at_ms: u64) -> Result<(), ReportError> {
        check(report)?;
        let mut nodes = self.lock();
        let node = nodes
            .entry((report.group.clone(), report.node.clone()))
            .or_default();
        node.group.clone_from(&report.group);
        node.interval_ms = report.interval_ms;
        node.last_ms = at_ms;
        // A cluster the proxy no longer runs stops counting for it.
        node.clusters
            .retain(|name, _| report.clusters.iter().any(|c| &c.cluster == name));
        for c in &report.clusters {
            node.clusters
                .entry(c.cluster.clone())
                .or_default()
                .push(at_ms, c);
        }
        Ok(())
    }

    fn cluster(
        &self,
        cluster: &str,
        windows: &[Duration],
        now_ms: u64,
    ) -> Result<ClusterLoadView, StoreError> {
        let nodes = self.lock();
        let mut per_window: Vec<Vec<NodeWindow>> = vec![Vec::new(); windows.len()];
        let mut view = ClusterLoadView::default();
        for node in nodes.values().filter(|n| !n.stale(now_ms)) {
            let Some(series) = node.clusters.get(cluster) else {
                continue;
            };
            view.nodes += 1;
            let slack = node.interval_ms / 4;
            for (i, w) in windows.iter().enumerate() {
                if let (Some(nw), Some(list)) =
                    (series.window(ms(*w), slack), per_window.get_mut(i))
                {
                    list.push(nw);
                }
            }
            if let Some(p) = series.latest().and_then(|s| s.p99_ms) {
                view.p99_ms = Some(view.p99_ms.map_or(p, |q: f64| q.max(p)));
            }
            if let Some(a) = series.last_load().and_then(|l| l.available_endpoints) {
                let a = u32::try_from(a).unwrap_or(u32::MAX);
                view.available = Some(view.available.map_or(a, |b: u32| b.max(a)));
            }
        }
        view.fast_arrivals = per_window
            .last()
            .map_or(0.0, |l| l.iter().map(|w| w.offered).sum());
        view.windows = per_window.iter().map(ClusterWindow::sum).collect();
        Ok(view)
    }

    fn reporters(&self, now_ms: u64) -> Result<Vec<Reporter>, StoreError> {
        let nodes = self.lock();
        Ok(nodes
            .iter()
            .map(|((group, node), n)| {
                let mut clusters: Vec<String> = n.clusters.keys().cloned().collect();
                clusters.sort();
                Reporter {
                    group: group.clone(),
                    node: node.clone(),
                    interval_ms: n.interval_ms,
                    last_report_ms: n.last_ms,
                    stale: n.stale(now_ms),
                    clusters,
                }
            })
            .collect())
    }

    fn prune(&self, now_ms: u64, retain: Duration) -> Result<(), StoreError> {
        let keep_from = now_ms.saturating_sub(ms(retain));
        let mut nodes = self.lock();
        nodes.retain(|_, n| n.last_ms >= keep_from);
        for n in nodes.values_mut() {
            for s in n.clusters.values_mut() {
                s.prune(keep_from);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate::control_client::report::ClusterLoad;
    use floodgate::load::{Classes, UnavailableCounts};

    fn report(node: &str, offered: u64) -> LoadReport {
        LoadReport {
            group: "g".into(),
            node: node.into(),
            interval_ms: 500,
            seq: 0,
            clusters: vec![ClusterLoad {
                cluster: "app".into(),
                offered,
                admitted: offered,
                shed: 0,
                completed: Classes::default(),
                too_many_requests: 0,
                unavailable: UnavailableCounts::default(),
                latency_count: 0,
                latency_sum_us: 0,
                in_flight: 2,
                queue_depth: 1,
                limit: Some(10),
                latency_p50_ms: None,
                latency_p99_ms: Some(12.0),
                available_endpoints: None,
            }],
            routes: Vec::new(),
        }
    }

    #[test]
    fn sums_nodes_and_drops_stale_ones() {
        let store = MemoryLoad::new();
        let w = [Duration::from_secs(1)];
        for i in 0..=2u64 {
            store.record(&report("a", i * 100), i * 500).unwrap();
            store.record(&report("b", i * 50), i * 500).unwrap();
        }
        let v = store.cluster("app", &w, 1000).unwrap();
        assert_eq!(v.nodes, 2);
        assert_eq!(v.windows[0].offered_rps, 300.0);
        assert_eq!(v.windows[0].concurrency, 6.0);
        assert_eq!(v.p99_ms, Some(12.0));
        // b stops; a goes on. After 3 intervals b no longer counts.
        for i in 3..=6u64 {
            store.record(&report("a", i * 100), i * 500).unwrap();
        }
        let v = store.cluster("app", &w, 3000).unwrap();
        assert_eq!((v.nodes, v.windows[0].offered_rps), (1, 200.0));
        assert!(store
            .reporters(3000)
            .unwrap()
            .iter()
            .any(|r| r.node == "b" && r.stale));
        store.prune(3000, Duration::from_secs(1)).unwrap();
        assert_eq!(store.reporters(3000).unwrap().len(), 1);
        let mut bad = report("a", 0);
        bad.interval_ms = 0;
        assert!(store.record(&bad, 0).is_err());
    }

    #[test]
    fn available_is_the_most_any_fresh_proxy_finds_and_absent_without_reports_of_it() {
        let store = MemoryLoad::new();
        let w = [Duration::from_secs(1)];
        store.record(&report("old-proxy", 10), 0).unwrap();
        assert_eq!(store.cluster("app", &w, 0).unwrap().available, None);
        let mut a = report("a", 10);
        a.clusters[0].available_endpoints = Some(2);
        let mut b = report("b", 10);
        b.clusters[0].available_endpoints = Some(3);
        store.record(&a, 100).unwrap();
        store.record(&b, 100).unwrap();
        assert_eq!(store.cluster("app", &w, 100).unwrap().available, Some(3));
        // b goes stale: only a's view counts.
        a.clusters[0].available_endpoints = Some(1);
        store.record(&a, 2000).unwrap();
        assert_eq!(store.cluster("app", &w, 2000).unwrap().available, Some(1));
    }
}
