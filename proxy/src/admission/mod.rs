//! Admission control: a per-cluster concurrency limit (fixed, or adaptive to
//! measured latency) with a bounded, deadline-ed priority queue in front of it.
//!
//! [`AdmissionControl`] is the per-cluster state (it lives in the `Cluster`, so
//! every route to the cluster shares it and it survives reloads that keep the
//! cluster). A request takes a [`Permit`] at once when fewer than `limit`
//! requests are in flight; otherwise it waits in the priority queue
//! (`queue.rs`: one FIFO per [`Priority`], served critical → normal →
//! sheddable, oldest first). A full queue, an expired deadline, or being
//! displaced by a higher-priority arrival sheds the request ([`Shed`]) with 503
//! `overloaded`. A waiter whose client went away leaves the queue at once.
//!
//! The adaptive limit is [`GradientLimit`] (pure arithmetic, in [`gradient`]).
//! The tower layer that applies admission to a route is `stack::admission`.

pub mod gradient;
mod queue;

pub use gradient::GradientLimit;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use tokio::sync::oneshot;

use crate::config::{AdmissionConfig, ConcurrencyLimit, Priority};
use crate::error::{ErrorKind, ProxyError};
use crate::observe;
use crate::time::{self, Instant};
use queue::{Grant, Waiters};

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue was full and no lower-priority waiter could make room.
    QueueFull,
    /// The request waited until its deadline without being admitted.
    QueueTimeout,
    /// A higher-priority arrival took this waiter's place in a full queue.
    Displaced,
}

impl Shed {
    /// The `reason` label of `floodgate_shed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
            Self::Displaced => "displaced",
        }
    }
}

/// The mutable part of [`AdmissionControl`], behind one short lock.
struct State {
    limit: usize,
    in_flight: usize,
    waiters: Waiters,
    gradient: Option<GradientLimit>,
    /// Smoothed RTT in seconds (0: none yet), for the `Retry-After` estimate.
    rtt_ewma: f64,
}

impl State {
    /// Admits one request if there is room and nobody waits.
    fn try_admit(&mut self) -> bool {
        if self.in_flight < self.limit && self.waiters.is_empty() {
            self.admitted();
            return true;
        }
        false
    }

    /// Counts one more request in flight.
    fn admitted(&mut self) {
        self.in_flight += 1;
        if let Some(g) = self.gradient.as_mut() {
            g.note_in_flight(self.in_flight);
        }
    }

    /// Grants queued waiters while there is room under the limit.
    fn grant_waiters(&mut self) {
        while self.in_flight < self.limit {
            let Some(entry) = self.waiters.pop_next() else {
                return;
            };
            if entry.send(Grant::Admitted) {
                self.admitted();
            }
        }
    }
}

/// Metric handles of one cluster, registered once.
struct Metrics {
    limit: metrics::Gauge,
    depth: metrics::Gauge,
    queue_full: metrics::Counter,
    queue_timeout: metrics::Counter,
    displaced: metrics::Counter,
}

impl Metrics {
    fn shed(&self, shed: Shed) -> &metrics::Counter {
        match shed {
            Shed::QueueFull => &self.queue_full,
            Shed::QueueTimeout => &self.queue_timeout,
            Shed::Displaced => &self.displaced,
        }
    }
}

/// A cluster's admission state: the concurrency limit, the requests in flight and
/// the priority queue of waiters.
pub struct AdmissionControl {
    state: Mutex<State>,
    max_queue: usize,
    queue_timeout: Duration,
    priority_header: Option<HeaderName>,
    metrics: Metrics,
}

impl std::fmt::Debug for AdmissionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionControl")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

/// A point-in-time view of a cluster's admission state (admin `/clusters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AdmissionStatus {
    /// The current concurrency limit.
    pub limit: usize,
    /// Requests admitted and not yet answered.
    pub in_flight: usize,
    /// Requests waiting for admission.
    pub queue_depth: usize,
}

impl AdmissionControl {
    /// Builds the admission state of cluster `cluster` from its config.
    pub fn new(config: &AdmissionConfig, cluster: &metrics::SharedString) -> Self {
        let now = time::now();
        let gradient = match &config.limit {
            ConcurrencyLimit::Fixed(_) => None,
            ConcurrencyLimit::Adaptive(params) => Some(GradientLimit::new(params, now)),
        };
        let limit = match (&config.limit, &gradient) {
            (_, Some(g)) => g.limit(),
            (ConcurrencyLimit::Fixed(n), None) => (*n).max(1),
            (ConcurrencyLimit::Adaptive(p), None) => p.initial.max(1),
        };
        let shed = |reason: &'static str| metrics::counter!(observe::SHED_TOTAL, "cluster" => cluster.clone(), "reason" => reason);
        let metrics = Metrics {
            limit: metrics::gauge!(observe::CONCURRENCY_LIMIT, "cluster" => cluster.clone()),
            depth: metrics::gauge!(observe::QUEUE_DEPTH, "cluster" => cluster.clone()),
            queue_full: shed(Shed::QueueFull.reason()),
            queue_timeout: shed(Shed::QueueTimeout.reason()),
            displaced: shed(Shed::Displaced.reason()),
        };
        metrics.limit.set(limit as f64);
        metrics.depth.set(0.0);
        Self {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                waiters: Waiters::default(),
                gradient,
                rtt_ewma: 0.0,
            }),
            max_queue: config.max_queue,
            queue_timeout: config.queue_timeout,
            priority_header: config.priority_header.clone(),
            metrics,
        }
    }

    /// The short lock; never held across an `.await`. A poisoned lock is still
    /// consistent (no code under it panics), so it is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current concurrency limit.
    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Requests waiting for admission.
    pub fn queue_depth(&self) -> usize {
        self.lock().waiters.len()
    }

    /// Limit, in-flight count and queue depth, read together.
    pub fn status(&self) -> AdmissionStatus {
        let st = self.lock();
        AdmissionStatus {
            limit: st.limit,
            in_flight: st.in_flight,
            queue_depth: st.waiters.len(),
        }
    }

    /// Longest wait in the queue (`queue_timeout`).
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// The priority the request asks for through the configured `priority_header`
    /// (`critical`, `normal` or `sheddable`), if any and valid.
    pub fn header_priority(&self, headers: &HeaderMap) -> Option<Priority> {
        let value = headers.get(self.priority_header.as_ref()?)?.to_str().ok()?;
        match value.trim() {
            v if v.eq_ignore_ascii_case("critical") => Some(Priority::Critical),
            v if v.eq_ignore_ascii_case("normal") => Some(Priority::Normal),
            v if v.eq_ignore_ascii_case("sheddable") => Some(Priority::Sheddable),
            _ => None,
        }
    }

    /// Admits at once if fewer than `limit` requests are in flight and nobody waits.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let admitted = self.lock().try_admit();
        admitted.then(|| Permit::new(Arc::clone(self)))
    }

    /// Admits the request now, or queues it by `priority` until a slot frees up or
    /// `deadline` passes. Dropping the returned future leaves the queue at once.
    pub async fn acquire(
        self: &Arc<Self>,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Permit, Shed> {
        let Some(rx) = self.admit_or_enqueue(priority)? else {
            return Ok(Permit::new(Arc::clone(self)));
        };
        let mut waiter = Waiter {
            admission: self,
            rx: Some(rx),
        };
        let Some(rx) = waiter.rx.as_mut() else {
            return Err(Shed::QueueTimeout);
        };
        let outcome = tokio::time::timeout_at(deadline, rx).await;
        let grant = match outcome {
            Ok(Ok(grant)) => {
                waiter.rx = None;
                Some(grant)
            }
            // The sender went away unheard; cannot happen while `self` is alive.
            Ok(Err(_)) => {
                waiter.rx = None;
                None
            }
            // Deadline: leave the queue, unless admitted or displaced at the last moment.
            Err(_) => waiter.leave(),
        };
        match grant {
            Some(Grant::Admitted) => Ok(Permit::new(Arc::clone(self))),
            Some(Grant::Displaced) => Err(Shed::Displaced),
            None => {
                self.metrics.shed(Shed::QueueTimeout).increment(1);
                Err(Shed::QueueTimeout)
            }
        }
    }

    /// Under one lock: admits at once when there is room (`Ok(None)`), else puts a
    /// waiter in the queue of `priority` (displacing a lower-priority one when the
    /// queue is full), else refuses with `QueueFull`.
    fn admit_or_enqueue(
        &self,
        priority: Priority,
    ) -> Result<Option<oneshot::Receiver<Grant>>, Shed> {
        let mut st = self.lock();
        if st.try_admit() {
            return Ok(None);
        }
        if st.waiters.len() >= self.max_queue {
            let victim = if self.max_queue == 0 {
                None
            } else {
                st.waiters.pop_victim(priority)
            };
            match victim {
                Some(victim) => {
                    let _ = victim.send(Grant::Displaced);
                    self.metrics.shed(Shed::Displaced).increment(1);
                }
                None => {
                    drop(st);
                    self.metrics.shed(Shed::QueueFull).increment(1);
                    return Err(Shed::QueueFull);
                }
            }
        }
        let rx = st.waiters.push(priority);
        self.metrics.depth.set(st.waiters.len() as f64);
        Ok(Some(rx))
    }

    /// Ends one admitted request: records its latency sample, then frees its slot
    /// or hands it to the next waiter.
    fn release(&self, sample: Option<(Instant, Duration)>) {
        let now = time::now();
        let mut st = self.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if let Some((_, rtt)) = sample {
            let secs = rtt.as_secs_f64();
            st.rtt_ewma = if st.rtt_ewma == 0.0 {
                secs
            } else {
                0.9 * st.rtt_ewma + 0.1 * secs
            };
        }
        let in_flight = st.in_flight;
        let new_limit = st.gradient.as_mut().and_then(|g| {
            if let Some((admitted, rtt)) = sample {
                g.record(admitted, rtt);
            }
            g.tick(now, in_flight).then(|| g.limit())
        });
        if let Some(limit) = new_limit {
            st.limit = limit;
            self.metrics.limit.set(limit as f64);
        }
        let before = st.waiters.len();
        st.grant_waiters();
        if st.waiters.len() != before {
            self.metrics.depth.set(st.waiters.len() as f64);
        }
    }

    /// How long a shed client should wait before trying again: the estimated time
    /// for the queue to drain (depth × RTT ÷ limit), at least 1 s, at most 10 s.
    pub fn retry_after(&self) -> Duration {
        let st = self.lock();
        let limit = st.limit.max(1) as f64;
        let drain = st.rtt_ewma * (st.waiters.len() as f64 + 1.0) / limit;
        Duration::from_secs_f64(drain.clamp(1.0, 10.0))
    }

    /// The error a shed request fails with: 503 `overloaded` with `Retry-After`.
    pub fn shed_error(&self, shed: Shed) -> ProxyError {
        ProxyError::with_source(ErrorKind::Overloaded, shed.reason())
            .with_retry_after(self.retry_after())
    }
}

/// A queued request's hold on its queue entry; dropping it leaves the queue.
struct Waiter<'a> {
    admission: &'a AdmissionControl,
    rx: Option<oneshot::Receiver<Grant>>,
}

impl Waiter<'_> {
    /// Leaves the queue now; returns a grant that arrived before we left, if any.
    fn leave(&mut self) -> Option<Grant> {
        let mut rx = self.rx.take()?;
        let mut st = self.admission.lock();
        match rx.try_recv() {
            Ok(grant) => Some(grant),
            Err(oneshot::error::TryRecvError::Empty) => {
                // Still queued: closing the receiver turns the entry into a tombstone.
                rx.close();
                drop(rx);
                st.waiters.left();
                self.admission.metrics.depth.set(st.waiters.len() as f64);
                None
            }
            Err(oneshot::error::TryRecvError::Closed) => None,
        }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if self.leave() == Some(Grant::Admitted) {
            // Granted just as the client went away: pass the slot on.
            self.admission.release(None);
        }
    }
}

/// The right to send one request; dropping it frees the slot for the next waiter.
pub struct Permit {
    admission: Arc<AdmissionControl>,
    admitted: Instant,
    sample: Option<Duration>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("admitted", &self.admitted)
            .finish()
    }
}

impl Permit {
    fn new(admission: Arc<AdmissionControl>) -> Self {
        Self {
            admission,
            admitted: time::now(),
            sample: None,
        }
    }

    /// When the request was admitted.
    pub fn admitted(&self) -> Instant {
        self.admitted
    }

    /// Ends the request, feeding its latency (admission → response head) to the
    /// adaptive limit; `None` when the outcome says nothing about latency.
    pub fn complete(mut self, rtt: Option<Duration>) {
        self.sample = rtt;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let sample = self.sample.take().map(|rtt| (self.admitted, rtt));
        self.admission.release(sample);
    }
}

#[cfg(test)]
mod tests;
