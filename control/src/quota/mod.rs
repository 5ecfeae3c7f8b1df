//! Cluster-wide rate limits (`routes[].global_rate_limit`): each route's `rps`
//! split among the proxies serving it, by demand, as leases carried in the
//! replies to their load reports (`docs/control-plane.md`, "Cluster-wide rate
//! limits"). The split itself is pure ([`allocate`]); this board keeps one per
//! route behind a mutex held only for that synchronous work, and serves
//! `GET /v1/quotas` and the gauges.

pub mod allocate;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use floodgate::control_client::quota::Lease;
use floodgate::control_client::report::LoadReport;
use serde::Serialize;

use allocate::RouteQuota;

/// Gauge: a route's cluster-wide `rps` in force.
pub const QUOTA_LIMIT: &str = "floodgate_control_quota_limit_rps";
/// Gauge: what all proxies hold of a route's limit.
pub const QUOTA_HELD: &str = "floodgate_control_quota_held_rps";
/// Gauge: what one proxy holds of a route's limit, by route and node.
pub const QUOTA_SHARE: &str = "floodgate_control_quota_share_rps";

/// Most routes with a global limit taken from one report.
pub const MAX_ROUTES: usize = 1000;

/// Every route's split.
pub struct QuotaBoard {
    inner: Mutex<Inner>,
}

struct Inner {
    routes: BTreeMap<String, RouteQuota>,
    started_ms: u64,
    next_id: u64,
}

/// One proxy's part of a route, for `GET /v1/quotas`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyQuotaView {
    /// `group/node`.
    pub node: String,
    /// Reported within three of its intervals.
    pub live: bool,
    /// Its demand over its last interval, rps.
    pub demand_rps: f64,
    /// What it holds now (its largest lease not expired nor superseded), rps.
    pub share_rps: u32,
    /// Its latest lease.
    pub lease: Option<u64>,
    /// Time left on that lease, ms.
    pub lease_expires_in_ms: Option<u64>,
}

/// One route, for `GET /v1/quotas`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteQuotaView {
    /// The route's name.
    pub route: String,
    /// The cluster-wide `rps` in force (None: no live proxy).
    pub rps: Option<u32>,
    /// What all proxies hold now (never above `rps`).
    pub held_rps: u64,
    /// The proxies serving it.
    pub proxies: Vec<ProxyQuotaView>,
}

impl QuotaBoard {
    /// An empty board started at `now_ms` (lease ids start at `now_ms × 1000`, so a
    /// restarted control plane's ids follow its predecessor's).
    pub fn new(now_ms: u64) -> Self {
        QuotaBoard {
            inner: Mutex::new(Inner {
                routes: BTreeMap::new(),
                started_ms: now_ms,
                next_id: now_ms.saturating_mul(1000),
            }),
        }
    }

    /// An empty board started now (the system clock).
    pub fn starting_now() -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::new(now_ms)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in a report's `routes` at `now_ms` and returns the reporter's new leases.
    pub fn on_report(&self, report: &LoadReport, now_ms: u64) -> BTreeMap<String, Lease> {
        let node = format!("{}/{}", report.group, report.node);
        let mut leases = BTreeMap::new();
        let mut inner = self.lock();
        let Inner {
            routes,
            started_ms,
            next_id,
        } = &mut *inner;
        for d in report.routes.iter().take(MAX_ROUTES) {
            let quota = routes.entry(d.route.clone()).or_default();
            quota.observe(&node, d, report.interval_ms, now_ms);
            *next_id += 1;
            if let Some(g) = quota.grant(&node, now_ms, *started_ms, *next_id) {
                leases.insert(
                    d.route.clone(),
                    Lease {
                        id: g.id,
                        rps: g.rps,
                        expires_in_ms: g.expires_ms.saturating_sub(now_ms),
                    },
                );
            }
        }
        routes.retain(|_, q| !q.forget_gone(now_ms));
        publish_gauges(routes, now_ms);
        leases
    }

    /// Every route's split at `now_ms`.
    pub fn view(&self, now_ms: u64) -> Vec<RouteQuotaView> {
        let inner = self.lock();
        inner
            .routes
            .iter()
            .map(|(route, q)| RouteQuotaView {
                route: route.clone(),
                rps: q.limit(now_ms),
                held_rps: q.held_total(now_ms),
                proxies: q
                    .members
                    .iter()
                    .map(|(node, m)| {
                        let latest = m.latest(now_ms);
                        ProxyQuotaView {
                            node: node.clone(),
                            live: m.is_live(now_ms),
                            demand_rps: m.demand_rps,
                            share_rps: m.held(now_ms),
                            lease: latest.map(|g| g.id),
                            lease_expires_in_ms: latest
                                .map(|g| g.expires_ms.saturating_sub(now_ms)),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

fn publish_gauges(routes: &BTreeMap<String, RouteQuota>, now_ms: u64) {
    for (route, q) in routes {
        let limit = q.limit(now_ms).map_or(0.0, f64::from);
        metrics::gauge!(QUOTA_LIMIT, "route" => route.clone()).set(limit);
        metrics::gauge!(QUOTA_HELD, "route" => route.clone()).set(q.held_total(now_ms) as f64);
        for (node, m) in &q.members {
            metrics::gauge!(QUOTA_SHARE, "route" => route.clone(), "node" => node.clone())
                .set(f64::from(m.held(now_ms)));
        }
    }
}
