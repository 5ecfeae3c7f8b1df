//! Leases of cluster-wide limits (`global_rate_limit`), the proxy's side.
//!
//! The reply to every load report carries this proxy's leases: per route, the
//! share of the route's `rps` it may allow and for how long. A lease counts from
//! the moment its report was **sent** (never later than the control plane
//! granted it), so the proxy never holds a lease longer than the control plane
//! counts it. Until the first lease, and once the last one has run out (the
//! control plane is away), the route's bucket runs at `fallback_rps`; the switch
//! is logged once per route each way. The state here is pure values over the
//! clock passed in; [`Leases::apply`] puts the leases, with their end, into the
//! route limiters, which fall back on time by themselves (no timer needed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stack::rate_limit::GlobalLimiter;
use crate::time::Instant;

/// One lease in a report's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease's id (increasing); the proxy names the one in force in its next report.
    pub id: u64,
    /// Requests per second this proxy may allow on the route.
    pub rps: u32,
    /// How long the lease lasts, from the report's sending, milliseconds.
    pub expires_in_ms: u64,
}

/// The reply to `POST /v1/reports` (fields a proxy does not know are ignored, so
/// an older proxy reads a newer reply; an older control plane sends no leases).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportReply {
    /// Leases by route name.
    #[serde(default)]
    pub leases: BTreeMap<String, Lease>,
}

/// Where a route's share comes from, as `/control` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareSource {
    /// A lease from the control plane, not yet run out.
    Lease,
    /// `fallback_rps`: no lease yet, or the last one ran out.
    Fallback,
}

/// One route's cluster-wide limit on this proxy (`/control` page, `global_limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareView {
    /// The route.
    pub route: String,
    /// The cluster-wide `rps`.
    pub rps: u32,
    /// This proxy's share in force, rps.
    pub share_rps: u32,
    /// Where it comes from.
    pub source: ShareSource,
    /// The lease in force (None on fallback).
    pub lease: Option<u64>,
    /// Time left on it, ms (None on fallback).
    pub lease_expires_in_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    id: u64,
    rps: u32,
    expires: Instant,
}

/// The leases this proxy holds.
#[derive(Debug, Default)]
pub struct Leases {
    held: HashMap<String, Held>,
    /// Routes last seen on a lease (to log the fall back to `fallback_rps` once).
    on_lease: HashMap<String, bool>,
}

impl Leases {
    /// Takes in a reply to a report sent at `sent_at`.
    pub fn accept(&mut self, sent_at: Instant, reply: &ReportReply) {
        for (route, lease) in &reply.leases {
            let expires = sent_at + Duration::from_millis(lease.expires_in_ms);
            self.held.insert(
                route.clone(),
                Held {
                    id: lease.id,
                    rps: lease.rps,
                    expires,
                },
            );
        }
    }

    /// The lease of `route` in force at `now`: id, rps, time left.
    pub fn in_force(&self, route: &str, now: Instant) -> Option<(u64, u32, Duration)> {
        let h = self.held.get(route)?;
        (h.expires > now).then(|| (h.id, h.rps, h.expires - now))
    }

    /// Puts each limiter's share in force at `now` (its lease, else `fallback_rps`),
    /// forgets the leases of routes no longer configured, and returns the view.
    pub fn apply(&mut self, limiters: &[Arc<GlobalLimiter>], now: Instant) -> Vec<ShareView> {
        self.held
            .retain(|route, _| limiters.iter().any(|l| l.route() == route));
        self.on_lease
            .retain(|route, _| limiters.iter().any(|l| l.route() == route));
        let mut out = Vec::with_capacity(limiters.len());
        for l in limiters {
            let route = l.route();
            let lease = self.in_force(route, now);
            let share = lease.map_or(l.config().fallback_rps, |(_, rps, _)| rps);
            l.set_lease(lease.map(|(_, rps, left)| (rps, now + left)));
            let was = self.on_lease.insert(route.to_owned(), lease.is_some());
            match (was, lease.is_some()) {
                (Some(true), false) => tracing::warn!(
                    route,
                    fallback_rps = l.config().fallback_rps,
                    "global rate limit: the lease ran out without a new one; using fallback_rps"
                ),
                (Some(false) | None, true) => {
                    tracing::info!(
                        route,
                        share_rps = share,
                        "global rate limit: lease in force"
                    )
                }
                _ => {}
            }
            out.push(ShareView {
                route: route.to_owned(),
                rps: l.config().rps,
                share_rps: share,
                source: if lease.is_some() {
                    ShareSource::Lease
                } else {
                    ShareSource::Fallback
                },
                lease: lease.map(|(id, _, _)| id),
                lease_expires_in_ms: lease
                    .map(|(_, _, left)| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GlobalRateLimitConfig;

    fn limiter() -> Arc<GlobalLimiter> {
        Arc::new(GlobalLimiter::new(
            "codes",
            GlobalRateLimitConfig {
                rps: 300,
                burst: 300,
                fallback_rps: 20,
            },
        ))
    }

    fn reply(id: u64, rps: u32, ms: u64) -> ReportReply {
        let mut leases = BTreeMap::new();
        leases.insert(
            "codes".to_owned(),
            Lease {
                id,
                rps,
                expires_in_ms: ms,
            },
        );
        ReportReply { leases }
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_then_lease_until_it_runs_out() {
        let l = limiter();
        let mut leases = Leases::default();
        let t0 = crate::time::now();
        let v = leases.apply(std::slice::from_ref(&l), t0);
        assert_eq!((v[0].share_rps, v[0].source), (20, ShareSource::Fallback));
        // The lease counts from the report's sending, not from the reply's arrival.
        tokio::time::advance(Duration::from_millis(100)).await;
        leases.accept(t0, &reply(7, 150, 2000));
        let v = leases.apply(std::slice::from_ref(&l), crate::time::now());
        assert_eq!(v[0].share_rps, 150);
        assert_eq!(v[0].lease, Some(7));
        assert_eq!(v[0].lease_expires_in_ms, Some(1900));
        assert_eq!(l.share(), 150);
        // No reply since: kept until the lease ends, then the fallback.
        tokio::time::advance(Duration::from_millis(1899)).await;
        assert_eq!(
            leases.apply(std::slice::from_ref(&l), crate::time::now())[0].share_rps,
            150
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let v = leases.apply(std::slice::from_ref(&l), crate::time::now());
        assert_eq!((v[0].share_rps, v[0].source), (20, ShareSource::Fallback));
        assert_eq!(l.share(), 20);
    }

    #[test]
    fn the_reply_of_an_older_control_plane_has_no_leases() {
        let r: ReportReply = serde_json::from_str(r#"{"ok":true}"#).unwrap();
        assert!(r.leases.is_empty());
        let r: ReportReply = serde_json::from_str(
            r#"{"ok":true,"leases":{"codes":{"id":1,"rps":5,"expires_in_ms":2000}}}"#,
        )
        .unwrap();
        assert_eq!(r.leases["codes"].rps, 5);
    }
}
