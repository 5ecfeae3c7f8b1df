//! A cluster's connection limits, shared by the pools of its endpoints:
//! `max_connections` open at once, `max_pending_requests` waiting for one
//! (Envoy's circuit-breaker thresholds of the same names, and Envoy's defaults,
//! 1024 each, when a cluster sets none). Refusals are 503 `overflow`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{DEFAULT_CLUSTER_MAX_CONNECTIONS, DEFAULT_CLUSTER_MAX_PENDING_REQUESTS};
use crate::error::{ErrorKind, ProxyError};

/// Cluster-wide connection limits shared by the pools of one cluster:
/// `max_connections` open at once, `max_pending_requests` waiting for one.
pub struct ConnLimits {
    max_connections: Option<usize>,
    max_pending: Option<usize>,
    open: AtomicUsize,
    pending: AtomicUsize,
    freed: Notify,
    overflow: Option<metrics::Counter>,
}

impl ConnLimits {
    /// Limits (`None`: unlimited), counting refusals on `overflow`.
    pub fn new(
        max_connections: Option<usize>,
        max_pending: Option<usize>,
        overflow: Option<metrics::Counter>,
    ) -> Self {
        Self {
            max_connections,
            max_pending,
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            freed: Notify::new(),
            overflow,
        }
    }

    /// No limits (tests; every configured cluster has limits).
    pub fn unlimited() -> Self {
        Self::new(None, None, None)
    }

    /// The default limits of a cluster without a `circuit_breaker` block
    /// ([`DEFAULT_CLUSTER_MAX_CONNECTIONS`], [`DEFAULT_CLUSTER_MAX_PENDING_REQUESTS`]),
    /// counting refusals as `floodgate_shed_total{reason="overflow"}`.
    pub fn for_cluster_defaults(cluster: &str) -> Self {
        let overflow = metrics::counter!(
            crate::observe::SHED_TOTAL,
            "cluster" => cluster.to_owned(),
            "reason" => "overflow"
        );
        Self::new(
            Some(DEFAULT_CLUSTER_MAX_CONNECTIONS),
            Some(DEFAULT_CLUSTER_MAX_PENDING_REQUESTS),
            Some(overflow),
        )
    }

    /// Whether `max_connections` is set (otherwise pools never wait).
    pub fn is_limited(&self) -> bool {
        self.max_connections.is_some()
    }

    /// Connections currently counted.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Requests currently waiting for a connection.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Takes a permit for one new connection, if under `max_connections`.
    pub fn try_open(self: &Arc<Self>) -> Option<ConnPermit> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if self.max_connections.is_some_and(|max| before >= max) {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnPermit {
            limits: Arc::clone(self),
        })
    }

    /// Joins the waiters for a connection, or refuses with `overflow` beyond `max_pending_requests`.
    pub fn enter_pending(self: &Arc<Self>) -> Result<PendingGuard, ProxyError> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        if self.max_pending.is_some_and(|max| before >= max) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if let Some(c) = &self.overflow {
                c.increment(1);
            }
            return Err(ProxyError::new(ErrorKind::Overflow));
        }
        Ok(PendingGuard {
            limits: Arc::clone(self),
        })
    }

    /// The signal a waiter listens on (a connection closed or went back to a pool).
    pub fn freed(&self) -> &Notify {
        &self.freed
    }

    /// Wakes the waiters, if there are any.
    pub fn signal(&self) {
        if self.pending.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }
}

/// One counted connection; released (and waiters woken) when the connection ends.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
        self.limits.signal();
    }
}

/// A request waiting for a connection; leaves the count when dropped.
pub struct PendingGuard {
    limits: Arc<ConnLimits>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.limits.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_limits_count_pending_and_overflow() {
        let l = Arc::new(ConnLimits::new(Some(1), Some(1), None));
        let p = l.try_open().unwrap();
        assert!(l.try_open().is_none());
        let waiting = l.enter_pending().unwrap();
        assert_eq!(l.enter_pending().err().unwrap().kind(), ErrorKind::Overflow);
        assert_eq!((l.open(), l.pending()), (1, 1));
        drop(waiting);
        drop(p);
        assert_eq!((l.open(), l.pending()), (0, 0));
        assert!(l.try_open().is_some());
    }
}
