//! One upstream endpoint: its address, its connection pool, and the state that
//! decides whether it gets traffic (health verdict, outlier ejection, load).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::pool::Pool;
use crate::config::EndpointAddr;

/// An endpoint of a cluster.
pub struct Endpoint {
    addr: EndpointAddr,
    pool: Arc<Pool>,
    /// Requests sent and not yet finished (response body done or dropped).
    active: AtomicUsize,
    /// Verdict of active health checking (true when no checks are configured).
    healthy: AtomicBool,
    /// Consecutive failed requests, for outlier ejection.
    consecutive_failures: AtomicU32,
    /// Ejections in a row, for the ejection backoff.
    ejections: AtomicU32,
    /// Milliseconds since `epoch` until which the endpoint is ejected (0: not ejected).
    ejected_until_ms: AtomicU64,
    epoch: Instant,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Endpoint {
    /// A new endpoint, healthy and not ejected.
    pub fn new(addr: EndpointAddr, pool: Arc<Pool>, epoch: Instant) -> Self {
        Self {
            addr,
            pool,
            active: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            epoch,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The endpoint's address.
    pub fn addr(&self) -> &EndpointAddr {
        &self.addr
    }

    /// The endpoint's connection pool.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Requests in flight.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether active health checks pass.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records the verdict of active health checking; returns true if it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Whether outlier detection has ejected the endpoint at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.millis(now) < until
    }

    /// Healthy and not ejected: eligible for new requests.
    pub fn is_available(&self, now: Instant) -> bool {
        self.is_healthy() && !self.is_ejected(now)
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks a request as started; the guard marks it finished when dropped.
    pub fn start_request(self: &Arc<Self>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard {
            endpoint: Arc::clone(self),
        }
    }

    /// Records a successful outcome: ends the failure streak, and once an ejection
    /// has expired, the ejection backoff too.
    pub(crate) fn record_success(&self, now: Instant) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until != 0 && self.millis(now) >= until {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed outcome; returns the new length of the failure streak.
    pub(crate) fn record_failure(&self) -> u32 {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ejects the endpoint for `duration`; returns how many ejections in a row this is.
    pub(crate) fn eject(&self, now: Instant, duration: std::time::Duration) -> u32 {
        let until = self.millis(now + duration).max(1);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ejections in a row so far (the next ejection lasts one base longer).
    pub(crate) fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// A point-in-time view for the admin `/clusters` page.
    pub fn status(&self, now: Instant) -> EndpointStatus {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let ejected = self.is_ejected(now);
        EndpointStatus {
            address: self.addr.to_string(),
            healthy: self.is_healthy(),
            ejected,
            ejected_for_ms: if ejected {
                until.saturating_sub(self.millis(now))
            } else {
                0
            },
            ejections_in_a_row: self.ejections(),
            active_requests: self.active(),
            open_connections: self.pool.open_connections(),
            idle_connections: self.pool.idle_connections(),
            requests_total: self.requests.load(Ordering::Relaxed),
            failures_total: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// Marks a request finished when dropped (keeps the in-flight count exact on every path).
pub struct RequestGuard {
    endpoint: Arc<Endpoint>,
}

impl RequestGuard {
    /// The endpoint this request went to.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An endpoint's state as shown by the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// `host:port`.
    pub address: String,
    /// Active health-check verdict.
    pub healthy: bool,
    /// Currently ejected by outlier detection.
    pub ejected: bool,
    /// Milliseconds of ejection left.
    pub ejected_for_ms: u64,
    /// Ejections in a row (drives the ejection backoff).
    pub ejections_in_a_row: u32,
    /// Requests in flight.
    pub active_requests: usize,
    /// Connections open to this endpoint.
    pub open_connections: usize,
    /// Of those, idle in the pool.
    pub idle_connections: usize,
    /// Requests sent since the endpoint was added.
    pub requests_total: u64,
    /// Failed requests since the endpoint was added.
    pub failures_total: u64,
}
