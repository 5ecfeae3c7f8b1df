//! One upstream endpoint: its address, its connection pool, and the state that
//! decides whether it gets traffic (health verdict, outlier ejection, load).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::breaker::RequestSlot;
use super::outcome::Outcome;
use crate::config::EndpointAddr;
use crate::time::Instant;
use crate::upstream::Pool;

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
    /// Overload answers (429, 503 with `Retry-After`) since the endpoint was added.
    overloaded: AtomicU64,
    /// Recent outcome ratios, two EWMAs of 0/1 samples that also decay with time,
    /// packed as two `f32` so one load reads both: failure (low 32 bits) and
    /// overload (high 32 bits). Each outcome is a sample for both, so their sum is
    /// at most 1.
    ratios: AtomicU64,
    /// Milliseconds since `epoch` of the last EWMA update.
    ratios_at_ms: AtomicU64,
}

/// Weight of one outcome in the EWMAs (memory of roughly the last 4–8 outcomes).
const EWMA_WEIGHT: f32 = 0.25;
/// Half-life of the EWMAs without new outcomes, so an avoided endpoint is tried again.
const EWMA_HALF_LIFE_MS: f64 = 1000.0;
/// How many requests in flight a fully failing (or fully busy) endpoint weighs
/// like, beyond its own.
pub const FAILURE_PENALTY: f64 = 20.0;

/// The two ratios packed into one word.
fn pack(failure: f32, overload: f32) -> u64 {
    u64::from(failure.to_bits()) | (u64::from(overload.to_bits()) << 32)
}

/// The two ratios of a packed word: (failure, overload).
fn unpack(word: u64) -> (f32, f32) {
    (
        f32::from_bits((word & 0xffff_ffff) as u32),
        f32::from_bits((word >> 32) as u32),
    )
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
            overloaded: AtomicU64::new(0),
            ratios: AtomicU64::new(0),
            ratios_at_ms: AtomicU64::new(0),
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

    /// The recent (failure, overload) ratios at `now`, time decay applied.
    fn ratios(&self, now: Instant) -> (f64, f64) {
        let word = self.ratios.load(Ordering::Relaxed);
        if word == 0 {
            return (0.0, 0.0);
        }
        let (failure, overload) = unpack(word);
        let at = self.ratios_at_ms.load(Ordering::Relaxed);
        let d = decay(self.millis(now).saturating_sub(at));
        (f64::from(failure) * d, f64::from(overload) * d)
    }

    /// The recent failure ratio at `now` (0 = none, 1 = every recent outcome failed).
    pub fn failure_ratio(&self, now: Instant) -> f64 {
        self.ratios(now).0
    }

    /// The recent overload ratio at `now` (share of recent answers that said "busy").
    pub fn overload_ratio(&self, now: Instant) -> f64 {
        self.ratios(now).1
    }

    /// The P2C load score:
    /// `(active + 1) × (1 + FAILURE_PENALTY × (failure_ratio + overload_ratio))`.
    /// Lower is better. Outcomes, not only load, steer the choice: an endpoint that
    /// fails fast, or answers "busy" fast, has few requests in flight but a high score.
    pub fn load_score(&self, now: Instant) -> f64 {
        let (failure, overload) = self.ratios(now);
        (self.active() as f64 + 1.0) * (1.0 + FAILURE_PENALTY * (failure + overload))
    }

    /// Folds one outcome into both EWMAs (a heuristic: concurrent updates may lose
    /// one another, which only makes them a little less precise).
    fn update_ratios(&self, now: Instant, outcome: Outcome) {
        let (failure, overload) = self.ratios(now);
        if failure == 0.0 && overload == 0.0 && outcome == Outcome::Success {
            return;
        }
        let step = |current: f64, hit: bool| {
            let current = current as f32;
            let sample = if hit { 1.0 } else { 0.0 };
            let next = current + (sample - current) * EWMA_WEIGHT;
            if next < 1e-3 {
                0.0
            } else {
                next
            }
        };
        let word = pack(
            step(failure, outcome == Outcome::Failure),
            step(overload, outcome == Outcome::Overloaded),
        );
        self.ratios.store(word, Ordering::Relaxed);
        self.ratios_at_ms.store(self.millis(now), Ordering::Relaxed);
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
            slot: None,
        }
    }

    /// Records a successful outcome: ends the failure streak, and once an ejection
    /// has expired, the ejection backoff too.
    pub(super) fn record_success(&self, now: Instant) {
        self.update_ratios(now, Outcome::Success);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until != 0 && self.millis(now) >= until {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed outcome; returns the new length of the failure streak.
    pub(super) fn record_failure(&self, now: Instant) -> u32 {
        self.update_ratios(now, Outcome::Failure);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records an overload answer: it weighs in the load score and is counted, but
    /// neither extends nor ends the failure streak, and ends no ejection.
    pub(super) fn record_overloaded(&self, now: Instant) {
        self.update_ratios(now, Outcome::Overloaded);
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    /// Failures in a row so far.
    pub(super) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Ejects the endpoint for `duration`; returns how many ejections in a row this is.
    pub(super) fn eject(&self, now: Instant, duration: std::time::Duration) -> u32 {
        let until = self.millis(now + duration).max(1);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ejections in a row so far (the next ejection lasts one base longer).
    pub(super) fn ejections(&self) -> u32 {
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
            consecutive_failures: self.consecutive_failures(),
            active_requests: self.active(),
            open_connections: self.pool.open_connections(),
            idle_connections: self.pool.idle_connections(),
            requests_total: self.requests.load(Ordering::Relaxed),
            failures_total: self.failures.load(Ordering::Relaxed),
            overloaded_total: self.overloaded.load(Ordering::Relaxed),
            failure_ratio: (self.failure_ratio(now) * 1000.0).round() / 1000.0,
            overload_ratio: (self.overload_ratio(now) * 1000.0).round() / 1000.0,
        }
    }
}

/// Marks a request finished when dropped (keeps the in-flight count exact on every path).
pub struct RequestGuard {
    endpoint: Arc<Endpoint>,
    slot: Option<RequestSlot>,
}

impl RequestGuard {
    /// Also holds the cluster's `max_requests` slot until the request is finished.
    pub fn hold(&mut self, slot: Option<RequestSlot>) {
        self.slot = slot;
    }

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
    /// The current failure streak (overload answers neither extend nor end it).
    pub consecutive_failures: u32,
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
    /// Overload answers (429, 503 with `Retry-After`) since the endpoint was added;
    /// not failures.
    pub overloaded_total: u64,
    /// Recent failure ratio (time-decayed EWMA) that weighs in the P2C choice and
    /// in the ejection comparison with peers.
    pub failure_ratio: f64,
    /// Recent overload ratio (time-decayed EWMA) that weighs in the P2C choice.
    pub overload_ratio: f64,
}

/// The EWMA's time decay after `ms` without outcomes.
fn decay(ms: u64) -> f64 {
    if ms == 0 {
        return 1.0;
    }
    (-(ms as f64) / EWMA_HALF_LIFE_MS * std::f64::consts::LN_2).exp()
}

/// An endpoint at `127.0.0.1:port` with a pool that never connects (for tests
/// of the balancer and outlier detection).
#[cfg(test)]
pub(super) fn for_tests(port: u16, epoch: Instant) -> Arc<Endpoint> {
    use crate::config::UpstreamProtocol;
    use crate::upstream::{ConnLimits, PoolSettings, Siblings};
    use std::time::Duration;
    let addr = EndpointAddr {
        host: "127.0.0.1".into(),
        port,
    };
    let settings = Arc::new(PoolSettings {
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(60),
        max_idle: 1,
        protocol: UpstreamProtocol::Http1,
        tls: None,
        limits: Arc::new(ConnLimits::unlimited()),
        siblings: Siblings::default(),
    });
    let pool = Arc::new(Pool::new(addr.clone(), settings));
    Arc::new(Endpoint::new(addr, pool, epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn endpoint() -> (Arc<Endpoint>, Instant) {
        let epoch = Instant::now();
        (for_tests(1, epoch), epoch)
    }

    #[test]
    fn failures_raise_the_score_and_successes_and_time_lower_it() {
        let (e, t0) = endpoint();
        assert_eq!(e.load_score(t0), 1.0);
        for _ in 0..10 {
            e.record_failure(t0);
        }
        let failing = e.load_score(t0);
        assert!(failing > 15.0, "score {failing}");
        // One second later the ratio has halved.
        let later = t0 + Duration::from_secs(1);
        let ratio = e.failure_ratio(later);
        assert!((ratio - e.failure_ratio(t0) / 2.0).abs() < 0.01, "{ratio}");
        // Successes pull it down fast.
        for _ in 0..10 {
            e.record_success(later);
        }
        assert!(e.load_score(later) < 2.0, "{}", e.load_score(later));
        // In-flight requests still count.
        let _g = e.start_request();
        assert!(e.load_score(later) >= 2.0);
    }

    #[test]
    fn overload_answers_weigh_in_the_score_but_not_in_the_streak() {
        let (e, t0) = endpoint();
        e.record_failure(t0);
        e.record_failure(t0);
        for _ in 0..10 {
            e.record_overloaded(t0);
        }
        // The streak is neither extended nor ended by "busy" answers.
        assert_eq!(e.consecutive_failures(), 2);
        assert!(e.overload_ratio(t0) > 0.9, "{}", e.overload_ratio(t0));
        // Overload samples are not failures: the failure ratio fell.
        assert!(e.failure_ratio(t0) < 0.05, "{}", e.failure_ratio(t0));
        // A busy endpoint weighs like a failing one in P2C.
        assert!(e.load_score(t0) > 15.0, "{}", e.load_score(t0));
        let status = e.status(t0);
        assert_eq!((status.overloaded_total, status.failures_total), (10, 2));
        // Both ratios decay with time and with successes.
        let later = t0 + Duration::from_secs(2);
        assert!((e.overload_ratio(later) - e.overload_ratio(t0) / 4.0).abs() < 0.01);
        for _ in 0..10 {
            e.record_success(later);
        }
        assert!(e.load_score(later) < 1.5, "{}", e.load_score(later));
    }
}
