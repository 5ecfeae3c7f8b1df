//! The split of one route's cluster-wide limit among the proxies serving it, as
//! pure values over the clock passed in (Unix ms): no I/O, no clock read.
//!
//! **Demand** is each proxy's arrivals at the limit (refused ones included) per
//! second over its last report interval. **The fair share** ([`fair_share`]) of a
//! live proxy (one that reported within [`LIVE_INTERVALS`] of its intervals) is a
//! floor ([`FLOOR_PART`] of an equal split, so a proxy that turns busy has room to
//! show it), plus the rest of `rps` in proportion to demand (split equally when
//! nobody has any).
//!
//! **Leases.** Every grant is a lease of [`LEASE_INTERVALS`] report intervals. A
//! proxy counts as holding, at any moment, the largest of its grants that have
//! neither expired nor been superseded by a later grant it acknowledged (its
//! report names the lease in force): a reply may be lost, so until then it may
//! still run on an older, larger one. A grant is the smaller of the fair share and
//! what is free NOW: `rps` minus what every other proxy holds. So the holdings
//! never add up to more than `rps` (by induction: each grant keeps the sum within
//! it), and a shrinking proxy's capacity moves to the others once it acknowledged
//! the smaller lease (one report interval) or its old lease ran out.
//!
//! **Restarts.** A proxy the split does not know yet (a restarted control plane)
//! is taken to hold the lease it reports, and nothing is granted on a route until
//! [`LIVE_INTERVALS`] of its longest report interval have passed since the start,
//! by when every live proxy has reported what it holds.

use std::collections::BTreeMap;

use floodgate::control_client::report::RouteDemand;

/// A lease lasts this many of the proxy's report intervals (2 s at the 500 ms default).
pub const LEASE_INTERVALS: u64 = 4;
/// A proxy is live while it reported within this many of its report intervals.
pub const LIVE_INTERVALS: u64 = 3;
/// A live proxy's floor: this part of an equal split of `rps`.
pub const FLOOR_PART: f64 = 0.1;

/// One lease granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Its id (increasing over the control plane's life).
    pub id: u64,
    /// Requests per second.
    pub rps: u32,
    /// When it runs out, Unix ms.
    pub expires_ms: u64,
}

/// One proxy serving the route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// The route's `rps` in this proxy's config.
    pub limit_rps: u32,
    /// Its report interval, ms.
    pub interval_ms: u64,
    /// Its last report, Unix ms.
    pub last_ms: u64,
    /// Its demand over its last interval, rps.
    pub demand_rps: f64,
    /// Grants not expired and not superseded by an acknowledged later one, oldest first.
    pub grants: Vec<Grant>,
    last_offered: Option<u64>,
}

impl Member {
    /// What the proxy may be running on at `now_ms`: its largest outstanding grant.
    pub fn held(&self, now_ms: u64) -> u32 {
        self.grants
            .iter()
            .filter(|g| g.expires_ms > now_ms)
            .map(|g| g.rps)
            .max()
            .unwrap_or(0)
    }

    /// Whether it reported within [`LIVE_INTERVALS`] of its intervals.
    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms <= self.last_ms + LIVE_INTERVALS * self.interval_ms
    }

    /// The latest outstanding grant.
    pub fn latest(&self, now_ms: u64) -> Option<Grant> {
        self.grants
            .iter()
            .rev()
            .find(|g| g.expires_ms > now_ms)
            .copied()
    }
}

/// `limit` split: the share of the proxy at `index` among live proxies with
/// `demands` (rps). Floor plus the rest in proportion to demand (equal without).
pub fn fair_share(limit: u32, demands: &[f64], index: usize) -> u32 {
    let n = demands.len().max(1) as f64;
    let limit_f = f64::from(limit);
    let floor = (limit_f * FLOOR_PART / n).floor();
    let rest = (limit_f - floor * n).max(0.0);
    let total: f64 = demands.iter().filter(|d| d.is_finite()).sum();
    let mine = demands.get(index).copied().unwrap_or(0.0);
    let extra = if total > 0.0 {
        rest * mine / total
    } else {
        rest / n
    };
    let share = (floor + extra).floor().clamp(0.0, limit_f);
    share as u32
}

/// One route's split.
#[derive(Debug, Clone, Default)]
pub struct RouteQuota {
    /// The proxies serving it, by `group/node`.
    pub members: BTreeMap<String, Member>,
}

impl RouteQuota {
    /// The limit in force: the smallest `rps` the live proxies have (they agree
    /// unless a config change is rolling out); None without a live proxy.
    pub fn limit(&self, now_ms: u64) -> Option<u32> {
        self.members
            .values()
            .filter(|m| m.is_live(now_ms))
            .map(|m| m.limit_rps)
            .min()
    }

    /// What all the proxies hold at `now_ms` (live or not: a lease is a lease).
    pub fn held_total(&self, now_ms: u64) -> u64 {
        self.members
            .values()
            .map(|m| u64::from(m.held(now_ms)))
            .sum()
    }

    /// Takes in one proxy's report of the route at `now_ms`: demand, the lease it
    /// acknowledges, and (for a proxy not known yet) the lease it holds.
    pub fn observe(&mut self, node: &str, d: &RouteDemand, interval_ms: u64, now_ms: u64) {
        let known = self.members.contains_key(node);
        let m = self.members.entry(node.to_owned()).or_default();
        if !known {
            if let (Some(id), Some(left)) = (d.lease, d.lease_expires_in_ms) {
                m.grants.push(Grant {
                    id,
                    rps: d.share_rps,
                    expires_ms: now_ms.saturating_add(left),
                });
            }
        }
        m.demand_rps = match m.last_offered {
            Some(before) if d.offered >= before && now_ms > m.last_ms => {
                (d.offered - before) as f64 * 1000.0 / (now_ms - m.last_ms) as f64
            }
            // Two reports in one millisecond: nothing new to measure.
            Some(before) if d.offered >= before => m.demand_rps,
            // A counter that went down (a restarted proxy): all of it is new, over
            // about one interval (Prometheus' reset rule).
            Some(_) => d.offered as f64 * 1000.0 / interval_ms.max(1) as f64,
            // The first report: unknown yet.
            None => 0.0,
        };
        m.last_offered = Some(d.offered);
        m.last_ms = now_ms;
        m.interval_ms = interval_ms.max(1);
        m.limit_rps = d.rps;
        if let Some(acked) = d.lease {
            m.grants.retain(|g| g.id >= acked);
        }
        m.grants.retain(|g| g.expires_ms > now_ms);
    }

    /// A new lease for `node` (which just reported) at `now_ms`, with id `id`; None
    /// before warm-up ends (`started_ms` + [`LIVE_INTERVALS`] of the longest interval)
    /// or for a node not known.
    pub fn grant(&mut self, node: &str, now_ms: u64, started_ms: u64, id: u64) -> Option<Grant> {
        let longest = self.members.values().map(|m| m.interval_ms).max()?;
        if now_ms < started_ms.saturating_add(LIVE_INTERVALS * longest) {
            return None;
        }
        let limit = self.limit(now_ms)?;
        let live: Vec<(&String, f64)> = self
            .members
            .iter()
            .filter(|(_, m)| m.is_live(now_ms))
            .map(|(k, m)| (k, m.demand_rps))
            .collect();
        let index = live.iter().position(|(k, _)| k.as_str() == node)?;
        let demands: Vec<f64> = live.iter().map(|(_, d)| *d).collect();
        let fair = fair_share(limit, &demands, index);
        let others: u64 = self
            .members
            .iter()
            .filter(|(k, _)| k.as_str() != node)
            .map(|(_, m)| u64::from(m.held(now_ms)))
            .sum();
        let free = u64::from(limit).saturating_sub(others);
        let rps = u32::try_from(u64::from(fair).min(free)).unwrap_or(0);
        let m = self.members.get_mut(node)?;
        let grant = Grant {
            id,
            rps,
            expires_ms: now_ms.saturating_add(LEASE_INTERVALS * m.interval_ms),
        };
        m.grants.push(grant);
        Some(grant)
    }

    /// Drops the proxies that are neither live nor holding anything; returns them.
    pub fn forget_gone(&mut self, now_ms: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.is_live(now_ms) && m.held(now_ms) == 0)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.members.remove(k);
        }
        gone
    }
}

#[cfg(test)]
mod tests;
