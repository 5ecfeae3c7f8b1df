//! Circuit breaking for one cluster: Envoy-style thresholds and a failure breaker.
//!
//! Thresholds turn excess load away at once with 503 `overflow`:
//! `max_requests` (in flight to the cluster, held until the response body ends),
//! `max_retries` (retries in flight, taken by the retry layer), and — in the pools,
//! through the shared [`ConnLimits`] — `max_connections` (open upstream connections
//! over all endpoints) and `max_pending_requests` (requests waiting for one).
//!
//! The failure breaker is a small state machine:
//!
//! ```text
//! Closed ──(consecutive failures, or failure rate ≥ threshold over ≥ min_requests)──▶ Open
//! Open ──(open_for elapsed; next request)──▶ HalfOpen (lets half_open_probes through)
//! HalfOpen ──(every probe succeeded)──▶ Closed
//! HalfOpen ──(a probe failed)──▶ Open for open_for × 2ⁿ (capped at max_open_for)
//! ```
//!
//! While open every request gets 503 `circuit_open` with a `Retry-After` of the
//! time left. The hot path in the closed state is a few atomics; a short std
//! mutex guards state transitions only, never held across an `.await`. Every
//! time-dependent method has an `_at(now)` form, so tests drive time exactly.

mod window;

use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::config::BreakerConfig;
use crate::error::{ErrorKind, ProxyError};
use crate::observe;
use crate::time::{self, Instant};
use crate::upstream::limits::ConnLimits;
use window::Window;

/// `floodgate_breaker_state` value: closed.
pub const STATE_CLOSED: u8 = 0;
/// `floodgate_breaker_state` value: open.
pub const STATE_OPEN: u8 = 1;
/// `floodgate_breaker_state` value: half-open.
pub const STATE_HALF_OPEN: u8 = 2;

/// The failure breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests are refused until `until`; `reopens` is the backoff exponent.
    Open { until: Instant, reopens: u32 },
    /// Up to `half_open_probes` requests are let through to test the upstream.
    HalfOpen {
        generation: u64,
        admitted: u32,
        succeeded: u32,
        reopens: u32,
    },
}

struct Machine {
    state: State,
    generation: u64,
}

/// Per-cluster circuit breaker; owned by the cluster, so it survives reloads
/// that leave the cluster unchanged.
pub struct Breaker {
    config: BreakerConfig,
    cluster: String,
    /// Mirror of the state for the lock-free fast path (`STATE_*`).
    code: AtomicU8,
    machine: Mutex<Machine>,
    consecutive: AtomicU32,
    window: Option<Window>,
    in_flight: AtomicUsize,
    retries: AtomicUsize,
    conns: Arc<ConnLimits>,
    epoch: Instant,
    gauge: metrics::Gauge,
    shed_overflow: metrics::Counter,
    shed_open: metrics::Counter,
}

impl Breaker {
    /// A closed breaker for `cluster` with the given thresholds.
    pub fn new(cluster: &str, config: &BreakerConfig) -> Arc<Self> {
        let label = metrics::SharedString::from(cluster.to_owned());
        let shed_overflow = metrics::counter!(
            observe::SHED_TOTAL, "cluster" => label.clone(), "reason" => "overflow"
        );
        let gauge = metrics::gauge!(observe::BREAKER_STATE, "cluster" => label.clone());
        gauge.set(f64::from(STATE_CLOSED));
        let epoch = time::now();
        Arc::new(Self {
            window: config.failure_rate.as_ref().map(Window::new),
            conns: Arc::new(ConnLimits::new(
                config.max_connections,
                config.max_pending_requests,
                Some(shed_overflow.clone()),
            )),
            config: config.clone(),
            cluster: cluster.to_owned(),
            code: AtomicU8::new(STATE_CLOSED),
            machine: Mutex::new(Machine {
                state: State::Closed,
                generation: 0,
            }),
            consecutive: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            epoch,
            gauge,
            shed_open: metrics::counter!(
                observe::SHED_TOTAL, "cluster" => label, "reason" => "circuit_open"
            ),
            shed_overflow,
        })
    }

    /// The cluster-wide connection limits the cluster's pools share.
    pub fn conn_limits(&self) -> &Arc<ConnLimits> {
        &self.conns
    }

    /// The breaker's config.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // A poisoned lock only means a panic elsewhere; the state itself is always valid.
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a request now, or refuses it (`circuit_open` or `overflow`).
    pub fn admit(self: &Arc<Self>) -> Result<BreakerTicket, ProxyError> {
        self.admit_at(time::now())
    }

    /// Admits a request at `now`, or refuses it (`circuit_open` or `overflow`).
    pub fn admit_at(self: &Arc<Self>, now: Instant) -> Result<BreakerTicket, ProxyError> {
        let probe = if self.code.load(Ordering::Acquire) == STATE_CLOSED {
            None
        } else {
            self.admit_slow(now)?
        };
        let Some(slot) = self.try_request() else {
            if let Some(generation) = probe {
                self.probe_released(generation);
            }
            self.shed_overflow.increment(1);
            return Err(ProxyError::new(ErrorKind::Overflow));
        };
        Ok(BreakerTicket {
            breaker: Arc::clone(self),
            probe,
            slot: Some(slot),
            done: false,
        })
    }

    /// The locked part of admission: open or half-open. `Some(generation)` for a probe.
    fn admit_slow(&self, now: Instant) -> Result<Option<u64>, ProxyError> {
        let mut m = self.lock();
        self.refresh_locked(&mut m, now);
        match &mut m.state {
            State::Closed => Ok(None),
            State::Open { until, .. } => {
                let left = until.saturating_duration_since(now);
                self.shed_open.increment(1);
                Err(ProxyError::new(ErrorKind::CircuitOpen).with_retry_after(left))
            }
            State::HalfOpen {
                generation,
                admitted,
                ..
            } => {
                if *admitted < self.config.half_open_probes {
                    *admitted += 1;
                    Ok(Some(*generation))
                } else {
                    self.shed_open.increment(1);
                    Err(ProxyError::new(ErrorKind::CircuitOpen))
                }
            }
        }
    }

    /// Moves an expired open state to half-open.
    fn refresh_locked(&self, m: &mut Machine, now: Instant) {
        if let State::Open { until, reopens } = m.state {
            if now >= until {
                m.generation += 1;
                m.state = State::HalfOpen {
                    generation: m.generation,
                    admitted: 0,
                    succeeded: 0,
                    reopens,
                };
                self.publish(STATE_HALF_OPEN);
                tracing::info!(cluster = %self.cluster, "circuit breaker half-open");
            }
        }
    }

    fn publish(&self, code: u8) {
        self.code.store(code, Ordering::Release);
        self.gauge.set(f64::from(code));
    }

    /// Takes a `max_requests` slot (always succeeds when no limit is set).
    fn try_request(self: &Arc<Self>) -> Option<RequestSlot> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.config.max_requests.is_some_and(|max| before >= max) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(RequestSlot {
            breaker: Arc::clone(self),
        })
    }

    /// Takes a `max_retries` slot for one retry, or counts an `overflow` and returns `None`.
    pub fn try_retry(self: &Arc<Self>) -> Option<RetrySlot> {
        let before = self.retries.fetch_add(1, Ordering::AcqRel);
        if self.config.max_retries.is_some_and(|max| before >= max) {
            self.retries.fetch_sub(1, Ordering::AcqRel);
            self.shed_overflow.increment(1);
            return None;
        }
        Some(RetrySlot {
            breaker: Arc::clone(self),
        })
    }

    /// A probe ended without an outcome (e.g. no endpoint was available): free its place.
    fn probe_released(&self, generation: u64) {
        let mut m = self.lock();
        if let State::HalfOpen {
            generation: g,
            admitted,
            ..
        } = &mut m.state
        {
            if *g == generation {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }

    /// Feeds one outcome in (`probe`: the half-open generation it was admitted in).
    fn record_at(&self, now: Instant, probe: Option<u64>, success: bool) {
        if let Some(generation) = probe {
            self.record_probe(now, generation, success);
            return;
        }
        if self.code.load(Ordering::Acquire) != STATE_CLOSED {
            // Answers to requests admitted before the breaker opened decide nothing now.
            return;
        }
        let tick = self.window.as_ref().map(|w| w.tick(self.epoch, now));
        if let (Some(w), Some(tick)) = (&self.window, tick) {
            w.record(tick, !success);
        }
        if success {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            return;
        }
        let streak = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        let by_streak = self
            .config
            .consecutive_failures
            .is_some_and(|n| streak >= n);
        let by_rate = match (&self.window, tick) {
            (Some(w), Some(tick)) => w.over_threshold(tick),
            _ => false,
        };
        if by_streak || by_rate {
            self.trip(now, if by_streak { "consecutive" } else { "rate" });
        }
    }

    fn record_probe(&self, now: Instant, generation: u64, success: bool) {
        let mut m = self.lock();
        let State::HalfOpen {
            generation: g,
            succeeded,
            reopens,
            ..
        } = &mut m.state
        else {
            return;
        };
        if *g != generation {
            return;
        }
        if success {
            *succeeded += 1;
            if *succeeded >= self.config.half_open_probes {
                m.state = State::Closed;
                self.consecutive.store(0, Ordering::Relaxed);
                if let Some(w) = &self.window {
                    w.reset();
                }
                self.publish(STATE_CLOSED);
                tracing::info!(cluster = %self.cluster, "circuit breaker closed");
            }
            return;
        }
        let reopens = reopens.saturating_add(1);
        let open_for = self.open_period(reopens);
        m.state = State::Open {
            until: now + open_for,
            reopens,
        };
        self.publish(STATE_OPEN);
        tracing::warn!(
            cluster = %self.cluster,
            open_for_ms = open_for.as_millis() as u64,
            "circuit breaker re-opened: a half-open probe failed"
        );
    }

    /// `open_for × 2^reopens`, capped at `max_open_for`.
    fn open_period(&self, reopens: u32) -> Duration {
        self.config
            .open_for
            .saturating_mul(1u32 << reopens.min(20))
            .min(self.config.max_open_for)
    }

    fn trip(&self, now: Instant, why: &'static str) {
        let mut m = self.lock();
        if m.state != State::Closed {
            return;
        }
        m.state = State::Open {
            until: now + self.config.open_for,
            reopens: 0,
        };
        self.publish(STATE_OPEN);
        tracing::warn!(
            cluster = %self.cluster,
            cause = why,
            open_for_ms = self.config.open_for.as_millis() as u64,
            "circuit breaker opened"
        );
    }

    /// The state code at `now` (`STATE_*`), moving an expired open state to half-open.
    pub fn state_at(&self, now: Instant) -> u8 {
        let mut m = self.lock();
        self.refresh_locked(&mut m, now);
        self.code.load(Ordering::Acquire)
    }

    /// A point-in-time view for `/clusters`.
    pub fn status(&self) -> BreakerStatus {
        self.status_at(time::now())
    }

    /// A point-in-time view for `/clusters` at `now`.
    pub fn status_at(&self, now: Instant) -> BreakerStatus {
        let (state, half_open_in) = {
            let mut m = self.lock();
            self.refresh_locked(&mut m, now);
            match m.state {
                State::Closed => ("closed", None),
                State::Open { until, .. } => (
                    "open",
                    Some(until.saturating_duration_since(now).as_secs_f64()),
                ),
                State::HalfOpen { .. } => ("half_open", None),
            }
        };
        BreakerStatus {
            state,
            half_open_in_secs: half_open_in,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            in_flight_requests: self.in_flight.load(Ordering::Relaxed),
            max_requests: self.config.max_requests,
            retries_in_flight: self.retries.load(Ordering::Relaxed),
            max_retries: self.config.max_retries,
            pending_requests: self.conns.pending(),
            max_pending_requests: self.config.max_pending_requests,
            open_connections: self.conns.open(),
            max_connections: self.config.max_connections,
        }
    }
}

/// A cluster's breaker as shown by `/clusters`.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerStatus {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Seconds until the open breaker lets probes through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_open_in_secs: Option<f64>,
    /// Current run of failures (closed state).
    pub consecutive_failures: u32,
    /// Requests in flight to the cluster.
    pub in_flight_requests: usize,
    /// Its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<usize>,
    /// Retries in flight to the cluster.
    pub retries_in_flight: usize,
    /// Their limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<usize>,
    /// Requests waiting for a connection.
    pub pending_requests: usize,
    /// Their limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<usize>,
    /// Upstream connections counted against `max_connections`.
    pub open_connections: usize,
    /// Their limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// A request let through the breaker; report its outcome with [`BreakerTicket::finish`].
///
/// Dropped without an outcome (the try was cancelled before the response head,
/// most often by a per-try or route timeout), it counts as a failure.
pub struct BreakerTicket {
    breaker: Arc<Breaker>,
    probe: Option<u64>,
    slot: Option<RequestSlot>,
    done: bool,
}

impl BreakerTicket {
    /// Whether this request is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Reports the outcome (`None`: neither, e.g. no endpoint or a local error) and
    /// hands back the `max_requests` slot, to be held until the response body ends.
    pub fn finish(self, outcome: Option<bool>) -> Option<RequestSlot> {
        self.finish_at(time::now(), outcome)
    }

    /// [`BreakerTicket::finish`] at `now`.
    pub fn finish_at(mut self, now: Instant, outcome: Option<bool>) -> Option<RequestSlot> {
        self.done = true;
        match outcome {
            Some(success) => self.breaker.record_at(now, self.probe, success),
            None => {
                if let Some(generation) = self.probe {
                    self.breaker.probe_released(generation);
                }
            }
        }
        self.slot.take()
    }
}

impl Drop for BreakerTicket {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.record_at(time::now(), self.probe, false);
        }
    }
}

/// One of `max_requests`; freed when dropped.
pub struct RequestSlot {
    breaker: Arc<Breaker>,
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.breaker.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One of `max_retries`, held by the retry layer for one retry; freed when dropped.
pub struct RetrySlot {
    breaker: Arc<Breaker>,
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.breaker.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FailureRateConfig;

    fn config() -> BreakerConfig {
        BreakerConfig {
            max_connections: None,
            max_pending_requests: None,
            max_requests: None,
            max_retries: None,
            consecutive_failures: Some(3),
            failure_rate: None,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(12),
            half_open_probes: 2,
        }
    }

    fn fail(b: &Arc<Breaker>, now: Instant) {
        if let Ok(a) = b.admit_at(now) {
            a.finish_at(now, Some(false));
        }
    }

    fn succeed(b: &Arc<Breaker>, now: Instant) {
        if let Ok(a) = b.admit_at(now) {
            a.finish_at(now, Some(true));
        }
    }

    fn at(b: &Breaker, ms: u64) -> Instant {
        b.epoch + Duration::from_millis(ms)
    }

    /// Opens the breaker at `ms` by consecutive failures.
    fn open(b: &Arc<Breaker>, ms: u64) {
        for _ in 0..3 {
            fail(b, at(b, ms));
        }
        assert_eq!(b.state_at(at(b, ms)), STATE_OPEN);
    }

    #[test]
    fn consecutive_failures_open_and_success_resets_the_streak() {
        let b = Breaker::new("t", &config());
        fail(&b, at(&b, 0));
        fail(&b, at(&b, 1));
        succeed(&b, at(&b, 2));
        fail(&b, at(&b, 3));
        fail(&b, at(&b, 4));
        assert_eq!(b.state_at(at(&b, 4)), STATE_CLOSED);
        fail(&b, at(&b, 5));
        assert_eq!(b.state_at(at(&b, 5)), STATE_OPEN);
        let err = b.admit_at(at(&b, 1005)).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::CircuitOpen);
        let r = err.to_response(None);
        // 4s left until half-open.
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "4");
        assert_eq!(b.status_at(at(&b, 1005)).state, "open");
    }

    #[test]
    fn failure_rate_opens_only_above_min_requests() {
        let mut c = config();
        c.consecutive_failures = None;
        c.failure_rate = Some(FailureRateConfig {
            threshold_percent: 50,
            window: Duration::from_secs(10),
            min_requests: 10,
        });
        let b = Breaker::new("t", &c);
        // 9 requests, all failing: below min_requests, no decision.
        for i in 0..9 {
            fail(&b, at(&b, i));
        }
        assert_eq!(b.state_at(at(&b, 9)), STATE_CLOSED);
        // The 10th (a success) still leaves 9/10 failed but only a failure decides.
        succeed(&b, at(&b, 10));
        assert_eq!(b.state_at(at(&b, 10)), STATE_CLOSED);
        fail(&b, at(&b, 11));
        assert_eq!(b.state_at(at(&b, 11)), STATE_OPEN);
    }

    #[test]
    fn failure_rate_below_threshold_and_old_buckets_do_not_open() {
        let mut c = config();
        c.consecutive_failures = None;
        c.failure_rate = Some(FailureRateConfig {
            threshold_percent: 50,
            window: Duration::from_secs(10),
            min_requests: 4,
        });
        let b = Breaker::new("t", &c);
        // 40% failures: stays closed.
        for i in 0..6 {
            succeed(&b, at(&b, i));
        }
        for i in 0..4 {
            fail(&b, at(&b, 10 + i));
        }
        assert_eq!(b.state_at(at(&b, 20)), STATE_CLOSED);
        // 11 s later the successes have left the window: 2 fresh failures of 3 = 66%.
        succeed(&b, at(&b, 11_000));
        fail(&b, at(&b, 11_001));
        assert_eq!(
            b.state_at(at(&b, 11_001)),
            STATE_CLOSED,
            "below min_requests"
        );
        fail(&b, at(&b, 11_002));
        fail(&b, at(&b, 11_003));
        assert_eq!(b.state_at(at(&b, 11_003)), STATE_OPEN);
    }

    #[test]
    fn open_turns_half_open_after_open_for_and_lets_exactly_the_probes_through() {
        let b = Breaker::new("t", &config());
        open(&b, 0);
        assert!(b.admit_at(at(&b, 4_999)).is_err());
        let p1 = b.admit_at(at(&b, 5_000)).unwrap();
        assert!(p1.is_probe());
        assert_eq!(b.state_at(at(&b, 5_000)), STATE_HALF_OPEN);
        let p2 = b.admit_at(at(&b, 5_001)).unwrap();
        let third = b.admit_at(at(&b, 5_002)).err().unwrap();
        assert_eq!(third.kind(), ErrorKind::CircuitOpen);
        // A probe released without an outcome frees its place.
        p2.finish_at(at(&b, 5_003), None);
        let p3 = b.admit_at(at(&b, 5_004)).unwrap();
        assert!(p3.is_probe());
        assert!(b.admit_at(at(&b, 5_005)).is_err());
        drop(p1.finish_at(at(&b, 5_006), Some(true)));
        assert_eq!(b.state_at(at(&b, 5_006)), STATE_HALF_OPEN);
        p3.finish_at(at(&b, 5_007), Some(true));
        assert_eq!(b.state_at(at(&b, 5_007)), STATE_CLOSED);
        assert_eq!(b.status_at(at(&b, 5_007)).state, "closed");
        assert!(b.admit_at(at(&b, 5_008)).is_ok());
    }

    #[test]
    fn a_failed_probe_reopens_with_doubled_period_capped() {
        let b = Breaker::new("t", &config());
        open(&b, 0);
        // First re-open: 2 × 5 s = 10 s.
        fail(&b, at(&b, 5_000));
        assert_eq!(b.state_at(at(&b, 5_000)), STATE_OPEN);
        assert!(b.admit_at(at(&b, 14_999)).is_err());
        // Second re-open: 4 × 5 s = 20 s, capped at 12 s.
        fail(&b, at(&b, 15_000));
        assert_eq!(b.state_at(at(&b, 15_000)), STATE_OPEN);
        let status = b.status_at(at(&b, 15_000));
        assert_eq!(status.half_open_in_secs, Some(12.0));
        assert!(b.admit_at(at(&b, 26_999)).is_err());
        assert_eq!(b.state_at(at(&b, 27_000)), STATE_HALF_OPEN);
        // Recovery closes and resets the backoff: the next trip opens for 5 s again.
        succeed(&b, at(&b, 27_000));
        succeed(&b, at(&b, 27_001));
        assert_eq!(b.state_at(at(&b, 27_001)), STATE_CLOSED);
        open(&b, 30_000);
        assert_eq!(b.status_at(at(&b, 30_000)).half_open_in_secs, Some(5.0));
    }

    #[test]
    fn outcomes_of_requests_admitted_before_opening_are_ignored() {
        let b = Breaker::new("t", &config());
        let early = b.admit_at(at(&b, 0)).unwrap();
        open(&b, 1);
        // Late answer while open, then while half-open: neither counts as a probe.
        early.finish_at(at(&b, 5_001), Some(true));
        let p = b.admit_at(at(&b, 5_002)).unwrap();
        assert!(p.is_probe());
        assert_eq!(b.state_at(at(&b, 5_002)), STATE_HALF_OPEN);
        drop(p); // cancelled probe counts as a failure
        assert_eq!(b.state_at(at(&b, 5_002)), STATE_OPEN);
    }

    #[test]
    fn max_requests_overflows_and_slots_free_on_drop() {
        let mut c = config();
        c.max_requests = Some(2);
        let b = Breaker::new("t", &c);
        let a1 = b.admit_at(at(&b, 0)).unwrap();
        let a2 = b.admit_at(at(&b, 0)).unwrap();
        let err = b.admit_at(at(&b, 0)).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Overflow);
        assert_eq!(
            err.to_response(None).headers()["x-floodgate-reason"],
            "overflow"
        );
        // The slot outlives the outcome (held by the response body) until dropped.
        let slot = a1.finish_at(at(&b, 1), Some(true));
        assert!(b.admit_at(at(&b, 1)).is_err());
        drop(slot);
        assert_eq!(b.status_at(at(&b, 1)).in_flight_requests, 1);
        assert!(b.admit_at(at(&b, 2)).is_ok());
        drop(a2);
    }

    #[test]
    fn max_retries_caps_retries_in_flight() {
        let mut c = config();
        c.max_retries = Some(1);
        let b = Breaker::new("t", &c);
        let r1 = b.try_retry().unwrap();
        assert!(b.try_retry().is_none());
        drop(r1);
        assert!(b.try_retry().is_some());
        c.max_retries = Some(0);
        assert!(Breaker::new("t", &c).try_retry().is_none());
    }

    #[test]
    fn overflow_does_not_consume_a_probe() {
        let mut c = config();
        c.max_requests = Some(1);
        c.half_open_probes = 1;
        let b = Breaker::new("t", &c);
        let hog = b.admit_at(at(&b, 0)).unwrap();
        let hog_slot = hog.finish_at(at(&b, 0), Some(false));
        fail(&b, at(&b, 0)); // refused (overflow): no outcome
        drop(hog_slot);
        open(&b, 0);
        let busy = b.try_request().unwrap();
        assert_eq!(
            b.admit_at(at(&b, 5_000)).err().unwrap().kind(),
            ErrorKind::Overflow
        );
        drop(busy);
        assert!(b.admit_at(at(&b, 5_001)).unwrap().is_probe());
    }
}
