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

/// Most routes with a global limit in one report.
pub const MAX_ROUTES: usize = 1000;

/// Why a report's `routes` are refused (400, nothing recorded): more than
/// [`MAX_ROUTES`], a route named twice, or an `rps` of 0.
pub fn check(report: &LoadReport) -> Result<(), String> {
    if report.routes.len() > MAX_ROUTES {
        return Err(format!("routes: at most {MAX_ROUTES}"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, d) in report.routes.iter().enumerate() {
        if !seen.insert(d.route.as_str()) {
            return Err(format!("routes[{i}].route: `{}` appears twice", d.route));
        }
        if d.rps == 0 {
            return Err(format!("routes[{i}].rps: must be greater than 0"));
        }
    }
    Ok(())
}

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

    /// Takes in a report's `routes` at `now_ms` and returns the reporter's new leases
    /// (none, without taking the lock, for a report without routes).
    pub fn on_report(&self, report: &LoadReport, now_ms: u64) -> BTreeMap<String, Lease> {
        let mut leases = BTreeMap::new();
        if report.routes.is_empty() {
            return leases;
        }
        let node = format!("{}/{}", report.group, report.node);
        let mut inner = self.lock();
        let Inner {
            routes,
            started_ms,
            next_id,
        } = &mut *inner;
        for d in &report.routes {
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
            publish_gauges(&d.route, &node, quota, now_ms);
        }
        // Proxies gone from any route (this sweep is what forgets them everywhere).
        routes.retain(|route, q| {
            for node in q.forget_gone(now_ms) {
                metrics::gauge!(QUOTA_SHARE, "route" => route.clone(), "node" => node).set(0.0);
            }
            !q.members.is_empty()
        });
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

/// The gauges of one route at a report of `node`: the route's limit and what is
/// held, and the reporter's share (another proxy's changes at its own report).
fn publish_gauges(route: &str, node: &str, q: &RouteQuota, now_ms: u64) {
    let limit = q.limit(now_ms).map_or(0.0, f64::from);
    metrics::gauge!(QUOTA_LIMIT, "route" => route.to_owned()).set(limit);
    metrics::gauge!(QUOTA_HELD, "route" => route.to_owned()).set(q.held_total(now_ms) as f64);
    let held = q.members.get(node).map_or(0, |m| m.held(now_ms));
    metrics::gauge!(QUOTA_SHARE, "route" => route.to_owned(), "node" => node.to_owned())
        .set(f64::from(held));
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate::control_client::report::RouteDemand;

    fn report(node: &str, offered: u64, routes: bool) -> LoadReport {
        LoadReport {
            group: "g".into(),
            node: node.into(),
            interval_ms: 500,
            seq: 0,
            clusters: Vec::new(),
            routes: if routes {
                vec![RouteDemand {
                    route: "codes".into(),
                    rps: 100,
                    offered,
                    share_rps: 5,
                    lease: None,
                    lease_expires_in_ms: None,
                }]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(check(&report("a", 0, true)).is_ok());
        let mut r = report("a", 0, true);
        r.routes.push(r.routes[0].clone());
        assert!(check(&r).unwrap_err().contains("appears twice"));
        r.routes.truncate(1);
        r.routes[0].rps = 0;
        assert!(check(&r).unwrap_err().contains("routes[0].rps"));
    }

    #[test]
    fn leases_after_warm_up_and_the_view() {
        let t0 = 1_000_000;
        let board = QuotaBoard::new(t0);
        assert!(board.on_report(&report("a", 0, false), t0).is_empty());
        assert!(
            board.view(t0).is_empty(),
            "a report without routes adds nothing"
        );
        // Warm-up: 3 report intervals before the first grant.
        assert!(board.on_report(&report("a", 0, true), t0 + 500).is_empty());
        let leases = board.on_report(&report("a", 100, true), t0 + 1_500);
        let lease = leases["codes"];
        assert_eq!((lease.rps, lease.expires_in_ms), (100, 2_000));
        assert!(lease.id > t0 * 1000);
        let view = board.view(t0 + 1_600);
        assert_eq!(view[0].rps, Some(100));
        assert_eq!(view[0].held_rps, 100);
        let p = &view[0].proxies[0];
        assert_eq!((p.node.as_str(), p.live, p.share_rps), ("g/a", true, 100));
        assert_eq!(p.lease_expires_in_ms, Some(1_900));
        // A restarted proxy (its counter went down): the new count, over one interval.
        board.on_report(&report("a", 20, true), t0 + 2_000);
        assert_eq!(board.view(t0 + 2_000)[0].proxies[0].demand_rps, 40.0);
        // Gone and its lease over: forgotten.
        board.on_report(&report("b", 0, true), t0 + 5_000);
        let view = board.view(t0 + 5_000);
        assert_eq!(view[0].proxies.len(), 1, "{view:?}");
        assert_eq!(view[0].proxies[0].node, "g/b");
    }
}
