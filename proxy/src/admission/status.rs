//! What `/clusters` shows of a cluster's admission: plain view types, filled by
//! `AdmissionControl::status`.

/// A point-in-time view of a cluster's admission state (admin `/clusters`).
/// The counters are monotonic (rates are the reader's business); at any time
/// `offered = admitted + shed.total + client_gone.queued + queue_depth`, give or
/// take requests between two steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AdmissionStatus {
    /// The current concurrency limit.
    pub limit: usize,
    /// Requests admitted and not yet answered.
    pub in_flight: usize,
    /// Requests waiting for admission.
    pub queue_depth: usize,
    /// Queueing delay now: age of the oldest waiter, in milliseconds.
    pub queue_delay_ms: f64,
    /// The delay a standing queue may impose before it sheds, in milliseconds.
    pub queue_target_ms: f64,
    /// True while the queue is standing (newest served first, old waiters shed).
    pub queue_standing: bool,
    /// Smoothed latency of admitted requests, in milliseconds (0: none yet).
    pub latency_ms: f64,
    /// The adaptive limit's no-load latency (its floor), in milliseconds, once known.
    pub min_rtt_ms: Option<f64>,
    /// True while the adaptive limit is lowered to re-measure its floor.
    pub probing: bool,
    /// Requests that arrived at admission, shed or not.
    pub offered: u64,
    /// Requests admitted, at once or after waiting.
    pub admitted: u64,
    /// Requests that had to wait in the queue.
    pub queued: u64,
    /// Requests shed, in total and by reason.
    pub shed: ShedCounts,
    /// Requests whose client went away, by stage.
    pub client_gone: GoneCounts,
}

/// Shed requests by reason (the `reason` labels of `floodgate_shed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShedCounts {
    /// All reasons together.
    pub total: u64,
    /// `max_queue` waiters and none ranked below the arrival.
    pub queue_full: u64,
    /// Waited until the deadline (`queue_timeout` or the route's `timeout`).
    pub queue_timeout: u64,
    /// Waited longer than the target in a standing queue.
    pub queue_delay: u64,
    /// Made room for a higher-priority arrival.
    pub displaced: u64,
    /// Made room for a newer arrival in a full standing queue.
    pub superseded: u64,
}

/// Requests whose client went away, by stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GoneCounts {
    /// While waiting in the queue.
    pub queued: u64,
    /// While admitted, before the response head.
    pub in_service: u64,
}
