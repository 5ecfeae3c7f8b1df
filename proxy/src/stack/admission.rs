//! Admission control: a per-cluster concurrency limit (fixed, or adaptive to
//! measured latency) with a bounded, deadline-ed priority queue in front of it.
//!
//! [`Admission`] is the per-cluster state (it lives in the `Cluster`, so every
//! route to the cluster shares it and it survives reloads that keep the
//! cluster). A request takes a [`Permit`] at once when fewer than `limit`
//! requests are in flight; otherwise it waits in one of three FIFO queues, one per
//! [`Priority`], and is served critical → normal → sheddable, oldest first. A full
//! queue, an expired deadline, or being displaced by a higher-priority arrival
//! sheds the request ([`Shed`]) with 503 `overloaded`. A waiter whose client went
//! away leaves the queue at once.
//!
//! The adaptive limit ([`GradientLimit`]) follows the gradient idea of Netflix's
//! concurrency-limits and Envoy's adaptive concurrency filter: compare the recent
//! latency with the minimum latency and shrink the limit when latency rises above
//! `tolerance` × minimum, grow it (by √limit) when it does not.
//!
//! [`AdmissionLayer`] applies it to a route stack.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, Request, Response};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::body::Body;
use crate::config::{AdaptiveLimit, AdmissionConfig, ConcurrencyLimit, Priority};
use crate::error::{ErrorKind, ProxyError};
use crate::observe;

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

/// What a queued waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Admitted,
    Displaced,
}

/// One queued waiter. A closed sender (the waiter left) is a tombstone that the
/// next pop skips; `State::depth` already stopped counting it.
struct Entry {
    tx: oneshot::Sender<Grant>,
}

impl Entry {
    fn is_live(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The mutable part of [`Admission`], behind one short lock.
struct State {
    limit: usize,
    in_flight: usize,
    /// Live waiters (tombstones excluded).
    depth: usize,
    /// Tombstones still stored in the queues.
    tombstones: usize,
    /// One FIFO per priority, indexed by [`class`].
    queues: [VecDeque<Entry>; 3],
    gradient: Option<GradientLimit>,
    /// Smoothed RTT in seconds (0: none yet), for the `Retry-After` estimate.
    rtt_ewma: f64,
}

/// Queue index of a priority: 0 critical, 1 normal, 2 sheddable.
fn class(p: Priority) -> usize {
    match p {
        Priority::Critical => 0,
        Priority::Normal => 1,
        Priority::Sheddable => 2,
    }
}

impl State {
    /// Pops the next live waiter, highest priority first, oldest first.
    fn pop_next(&mut self) -> Option<Entry> {
        for q in 0..self.queues.len() {
            while let Some(entry) = self.queues.get_mut(q).and_then(VecDeque::pop_front) {
                if entry.is_live() {
                    self.depth = self.depth.saturating_sub(1);
                    return Some(entry);
                }
                self.tombstones = self.tombstones.saturating_sub(1);
            }
        }
        None
    }

    /// Pops the newest live waiter of the lowest class strictly below `than`.
    fn pop_victim(&mut self, than: usize) -> Option<Entry> {
        for q in (than + 1..self.queues.len()).rev() {
            while let Some(entry) = self.queues.get_mut(q).and_then(VecDeque::pop_back) {
                if entry.is_live() {
                    self.depth = self.depth.saturating_sub(1);
                    return Some(entry);
                }
                self.tombstones = self.tombstones.saturating_sub(1);
            }
        }
        None
    }

    /// Drops tombstones once they outnumber live waiters (amortised O(1) per waiter).
    fn compact(&mut self) {
        if self.tombstones > 64 && self.tombstones > self.depth {
            for q in &mut self.queues {
                q.retain(Entry::is_live);
            }
            self.tombstones = 0;
        }
    }

    /// Grants queued waiters while there is room under the limit.
    fn grant_waiters(&mut self) {
        while self.in_flight < self.limit {
            let Some(entry) = self.pop_next() else {
                return;
            };
            if entry.tx.send(Grant::Admitted).is_ok() {
                self.in_flight += 1;
                if let Some(g) = self.gradient.as_mut() {
                    g.note_in_flight(self.in_flight);
                }
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
pub struct Admission {
    state: Mutex<State>,
    max_queue: usize,
    queue_timeout: Duration,
    priority_header: Option<HeaderName>,
    metrics: Metrics,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
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

impl Admission {
    /// Builds the admission state of cluster `cluster` from its config.
    pub fn new(config: &AdmissionConfig, cluster: &metrics::SharedString) -> Self {
        let now = Instant::now();
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
                depth: 0,
                tombstones: 0,
                queues: Default::default(),
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
        self.lock().depth
    }

    /// Limit, in-flight count and queue depth, read together.
    pub fn status(&self) -> AdmissionStatus {
        let st = self.lock();
        AdmissionStatus {
            limit: st.limit,
            in_flight: st.in_flight,
            queue_depth: st.depth,
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
        let mut st = self.lock();
        if st.in_flight < st.limit && st.depth == 0 {
            st.in_flight += 1;
            let in_flight = st.in_flight;
            if let Some(g) = st.gradient.as_mut() {
                g.note_in_flight(in_flight);
            }
            drop(st);
            return Some(Permit::new(Arc::clone(self)));
        }
        None
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
        if st.in_flight < st.limit && st.depth == 0 {
            st.in_flight += 1;
            let in_flight = st.in_flight;
            if let Some(g) = st.gradient.as_mut() {
                g.note_in_flight(in_flight);
            }
            return Ok(None);
        }
        let class = class(priority);
        if st.depth >= self.max_queue {
            let victim = if self.max_queue == 0 {
                None
            } else {
                st.pop_victim(class)
            };
            match victim {
                Some(victim) => {
                    let _ = victim.tx.send(Grant::Displaced);
                    self.metrics.shed(Shed::Displaced).increment(1);
                }
                None => {
                    drop(st);
                    self.metrics.shed(Shed::QueueFull).increment(1);
                    return Err(Shed::QueueFull);
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        if let Some(q) = st.queues.get_mut(class) {
            q.push_back(Entry { tx });
            st.depth += 1;
        }
        self.metrics.depth.set(st.depth as f64);
        Ok(Some(rx))
    }

    /// Ends one admitted request: records its latency sample, then frees its slot
    /// or hands it to the next waiter.
    fn release(&self, sample: Option<(Instant, Duration)>) {
        let now = Instant::now();
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
        let before = st.depth;
        st.grant_waiters();
        if st.depth != before {
            self.metrics.depth.set(st.depth as f64);
        }
    }

    /// How long a shed client should wait before trying again: the estimated time
    /// for the queue to drain (depth × RTT ÷ limit), at least 1 s, at most 10 s.
    pub fn retry_after(&self) -> Duration {
        let st = self.lock();
        let limit = st.limit.max(1) as f64;
        let drain = st.rtt_ewma * (st.depth as f64 + 1.0) / limit;
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
    admission: &'a Admission,
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
                st.depth = st.depth.saturating_sub(1);
                st.tombstones += 1;
                st.compact();
                self.admission.metrics.depth.set(st.depth as f64);
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
    admission: Arc<Admission>,
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
    fn new(admission: Arc<Admission>) -> Self {
        Self {
            admission,
            admitted: Instant::now(),
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

/// Samples a window needs before it closes early (see [`GradientLimit::tick`]).
const MIN_WINDOW_SAMPLES: u64 = 10;

/// The gradient concurrency limit, as pure arithmetic over latency samples.
///
/// Every `update_interval` the window's mean RTT is compared with `min_rtt`:
/// `gradient = clamp(tolerance × min_rtt / rtt, 0.5, 1)`, `computed = limit ×
/// gradient + √limit` (the √limit headroom only when the window used at least
/// half the limit, so an idle cluster does not grow), and the limit moves a fifth
/// of the way there (`0.8 × old + 0.2 × computed`), within `[min, max]`.
///
/// `min_rtt` is measured with the limit held at `min` (as Envoy does): at start
/// and again every `min_rtt_window`, for at least one interval and until a request
/// admitted during it has completed; the mean RTT of those requests becomes
/// `min_rtt`, and the limit returns to where it was. Between measurements a lower
/// window mean lowers `min_rtt`.
#[derive(Debug, Clone)]
pub struct GradientLimit {
    params: AdaptiveLimit,
    limit: f64,
    min_rtt: Option<f64>,
    min_rtt_at: Instant,
    /// `Some(since)` while measuring `min_rtt`; only requests admitted after count.
    probing: Option<Instant>,
    window_start: Instant,
    sum: f64,
    count: u64,
    peak: usize,
}

impl GradientLimit {
    /// Starts at `params.initial`, measuring `min_rtt` first.
    pub fn new(params: &AdaptiveLimit, now: Instant) -> Self {
        let min = params.min.max(1) as f64;
        let max = (params.max as f64).max(min);
        Self {
            limit: (params.initial as f64).clamp(min, max),
            params: params.clone(),
            min_rtt: None,
            min_rtt_at: now,
            probing: Some(now),
            window_start: now,
            sum: 0.0,
            count: 0,
            peak: 0,
        }
    }

    /// The limit in force now (`min` while measuring `min_rtt`).
    pub fn limit(&self) -> usize {
        let min = self.params.min.max(1);
        if self.probing.is_some() {
            return min;
        }
        (self.limit.round() as usize).clamp(min, self.params.max.max(min))
    }

    /// The measured minimum RTT, once known.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(Duration::from_secs_f64)
    }

    /// True while the limit is held at `min` to measure `min_rtt`.
    pub fn is_probing(&self) -> bool {
        self.probing.is_some()
    }

    /// Notes the number of requests in flight after an admission.
    pub fn note_in_flight(&mut self, in_flight: usize) {
        self.peak = self.peak.max(in_flight);
    }

    /// Adds one completed request's RTT to the current window.
    pub fn record(&mut self, admitted: Instant, rtt: Duration) {
        if self.probing.is_some_and(|since| admitted < since) {
            return;
        }
        self.sum += rtt.as_secs_f64();
        self.count += 1;
    }

    /// Closes the window if `update_interval` has passed and recomputes the limit;
    /// true when [`limit`](Self::limit) may have changed.
    pub fn tick(&mut self, now: Instant, in_flight: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.params.update_interval {
            return false;
        }
        // A window needs a few samples before its mean means anything: one fast answer
        // (a health endpoint, a 404) must not become `min_rtt` and pin the limit at
        // `min`. At low traffic the window stretches, up to ten intervals.
        if self.count < MIN_WINDOW_SAMPLES
            && elapsed < self.params.update_interval.saturating_mul(10)
        {
            return false;
        }
        let sample = (self.count > 0).then(|| self.sum / self.count as f64);
        let peak = self.peak.max(in_flight);
        self.window_start = now;
        self.sum = 0.0;
        self.count = 0;
        self.peak = in_flight;
        let Some(sample) = sample else {
            return false;
        };
        if self.probing.take().is_some() {
            self.min_rtt = Some(sample);
            self.min_rtt_at = now;
            return true;
        }
        if now.saturating_duration_since(self.min_rtt_at) >= self.params.min_rtt_window {
            self.probing = Some(now);
            return true;
        }
        let min_rtt = self.min_rtt.map_or(sample, |m| m.min(sample));
        self.min_rtt = Some(min_rtt);
        let gradient = if sample > 0.0 {
            (self.params.tolerance * min_rtt / sample).clamp(0.5, 1.0)
        } else {
            1.0
        };
        let used = peak.saturating_mul(2) >= self.limit();
        let mut computed = self.limit * gradient;
        if used {
            computed += self.limit.sqrt();
        } else {
            computed = computed.min(self.limit);
        }
        let min = self.params.min.max(1) as f64;
        let max = (self.params.max as f64).max(min);
        self.limit = (0.8 * self.limit + 0.2 * computed).clamp(min, max);
        true
    }
}

/// Wraps a service with [`AdmissionService`].
#[derive(Clone)]
pub struct AdmissionLayer {
    admission: Option<Arc<Admission>>,
    priority: Priority,
    route_timeout: Option<Duration>,
}

impl AdmissionLayer {
    /// Admits through `admission` (none: pass through) at the route's default
    /// `priority`; a queued request waits at most the shorter of the queue timeout
    /// and the route's timeout.
    pub fn new(
        admission: Option<Arc<Admission>>,
        priority: Priority,
        route_timeout: Option<Duration>,
    ) -> Self {
        Self {
            admission,
            priority,
            route_timeout,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> AdmissionService<S> {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
            priority: self.priority,
            route_timeout: self.route_timeout,
        }
    }
}

/// A service that sends only admitted requests and sheds the rest with 503.
#[derive(Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Option<Arc<Admission>>,
    priority: Priority,
    route_timeout: Option<Duration>,
}

impl<S> Service<Request<Body>> for AdmissionService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = BoxFuture<'static, Result<Response<Body>, ProxyError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone is the one that was driven to readiness (tower's take-the-ready idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(admission) = self.admission.clone() else {
            return Box::pin(inner.call(req));
        };
        let priority = admission
            .header_priority(req.headers())
            .unwrap_or(self.priority);
        let wait = match self.route_timeout {
            Some(route) => admission.queue_timeout().min(route),
            None => admission.queue_timeout(),
        };
        Box::pin(async move {
            let deadline = Instant::now() + wait;
            let permit = admission
                .acquire(priority, deadline)
                .await
                .map_err(|shed| admission.shed_error(shed))?;
            let result = inner.call(req).await;
            let rtt = permit.admitted().elapsed();
            permit.complete(latency_sample(&result, rtt));
            result
        })
    }
}

/// The RTT sample an outcome gives: answers that are not 5xx, and timeouts (whose
/// long wait is exactly the signal); other failures say nothing about latency.
fn latency_sample(result: &Result<Response<Body>, ProxyError>, rtt: Duration) -> Option<Duration> {
    match result {
        Ok(response) if !response.status().is_server_error() => Some(rtt),
        Ok(_) => None,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::UpstreamTimeout | ErrorKind::RequestTimeout | ErrorKind::ConnectTimeout
        )
        .then_some(rtt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    fn fixed(limit: usize, max_queue: usize) -> Arc<Admission> {
        let config = AdmissionConfig {
            limit: ConcurrencyLimit::Fixed(limit),
            max_queue,
            queue_timeout: Duration::from_secs(1),
            priority_header: Some(HeaderName::from_static("x-priority")),
        };
        Arc::new(Admission::new(
            &config,
            &metrics::SharedString::from("test"),
        ))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Yields until the queue holds `depth` waiters (spawned tasks run on yield).
    async fn until_depth(adm: &Admission, depth: usize) {
        for _ in 0..1000 {
            if adm.queue_depth() == depth {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("queue depth {} never became {depth}", adm.queue_depth());
    }

    type Granted = tokio::sync::mpsc::UnboundedReceiver<(&'static str, Result<Permit, Shed>)>;

    /// Spawns waiters in the given order, each reporting its label and result.
    async fn spawn_waiters(adm: &Arc<Admission>, waiters: &[(&'static str, Priority)]) -> Granted {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for (label, priority) in waiters.iter().copied() {
            let (adm2, tx) = (Arc::clone(adm), tx.clone());
            let before = adm.queue_depth();
            tokio::spawn(async move {
                let result = adm2.acquire(priority, far()).await;
                let _ = tx.send((label, result));
            });
            until_depth(adm, before + 1).await;
        }
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_by_priority_then_fifo() {
        let adm = fixed(1, 10);
        let first = adm.acquire(Priority::Normal, far()).await.unwrap();
        let mut granted = spawn_waiters(
            &adm,
            &[
                ("s1", Priority::Sheddable),
                ("n1", Priority::Normal),
                ("c1", Priority::Critical),
                ("s2", Priority::Sheddable),
                ("n2", Priority::Normal),
                ("c2", Priority::Critical),
            ],
        )
        .await;
        assert_eq!(adm.queue_depth(), 6);
        drop(first);
        let mut order = Vec::new();
        for _ in 0..6 {
            let (label, permit) = granted.recv().await.unwrap();
            order.push(label);
            assert_eq!(adm.in_flight(), 1, "one at a time");
            drop(permit.unwrap());
        }
        assert_eq!(order, ["c1", "c2", "n1", "n2", "s1", "s2"]);
        assert_eq!((adm.in_flight(), adm.queue_depth()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_sheds_or_displaces_the_newest_lower_priority_waiter() {
        let adm = fixed(1, 2);
        let first = adm.acquire(Priority::Normal, far()).await.unwrap();
        let mut granted = spawn_waiters(
            &adm,
            &[("s1", Priority::Sheddable), ("s2", Priority::Sheddable)],
        )
        .await;
        // Full, and nothing below sheddable to displace.
        assert_eq!(
            adm.acquire(Priority::Sheddable, far()).await.unwrap_err(),
            Shed::QueueFull
        );
        // A critical arrival takes the place of the newest sheddable waiter.
        let critical = tokio::spawn({
            let adm = Arc::clone(&adm);
            async move { adm.acquire(Priority::Critical, far()).await.map(drop) }
        });
        let (label, result) = granted.recv().await.unwrap();
        assert_eq!((label, result.unwrap_err()), ("s2", Shed::Displaced));
        until_depth(&adm, 2).await;
        drop(first);
        critical.await.unwrap().unwrap();
        let (label, result) = granted.recv().await.unwrap();
        assert_eq!(label, "s1");
        drop(result.unwrap());
        assert_eq!((adm.in_flight(), adm.queue_depth()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn no_queue_sheds_at_once() {
        let adm = fixed(1, 0);
        let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
        assert_eq!(
            adm.acquire(Priority::Critical, far()).await.unwrap_err(),
            Shed::QueueFull
        );
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_sheds_and_leaves_the_queue() {
        let adm = fixed(1, 10);
        let first = adm.acquire(Priority::Normal, far()).await.unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(100);
        let err = adm.acquire(Priority::Normal, deadline).await.unwrap_err();
        assert_eq!(err, Shed::QueueTimeout);
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 0));
        drop(first);
        assert_eq!(adm.in_flight(), 0, "no slot handed to the gone waiter");
        let _again = adm.try_acquire().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiter_leaves_the_queue_at_once() {
        let adm = fixed(1, 10);
        let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
        let task = tokio::spawn({
            let adm = Arc::clone(&adm);
            async move { adm.acquire(Priority::Normal, far()).await.map(drop) }
        });
        until_depth(&adm, 1).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(adm.queue_depth(), 0);
        assert_eq!(adm.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_to_a_dropped_waiter_passes_on() {
        let adm = fixed(1, 10);
        let first = adm.acquire(Priority::Normal, far()).await.unwrap();
        let mut w1 = Box::pin(adm.acquire(Priority::Critical, far()));
        assert!((&mut w1).now_or_never().is_none());
        let mut w2 = Box::pin(adm.acquire(Priority::Normal, far()));
        assert!((&mut w2).now_or_never().is_none());
        assert_eq!(adm.queue_depth(), 2);
        // The slot goes to w1, whose client leaves before it looks.
        drop(first);
        assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 1));
        drop(w1);
        // w2 got the slot instead of it being lost.
        let permit = (&mut w2).now_or_never().expect("w2 granted").unwrap();
        assert_eq!((adm.in_flight(), adm.queue_depth()), (1, 0));
        drop(permit);
        assert_eq!(adm.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn tombstones_are_compacted() {
        let adm = fixed(1, 1000);
        let _first = adm.acquire(Priority::Normal, far()).await.unwrap();
        for _ in 0..500 {
            let mut w = Box::pin(adm.acquire(Priority::Sheddable, far()));
            assert!((&mut w).now_or_never().is_none());
        }
        assert_eq!(adm.queue_depth(), 0);
        let st = adm.lock();
        assert!(st.queues.iter().map(VecDeque::len).sum::<usize>() <= 65);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fixed_limit_holds_under_concurrent_load() {
        let adm = fixed(5, 1000);
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (adm, now, max) = (Arc::clone(&adm), Arc::clone(&now), Arc::clone(&max));
            let priority = [Priority::Critical, Priority::Normal, Priority::Sheddable][i % 3];
            tasks.spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                let permit = adm.acquire(priority, deadline).await.unwrap();
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_micros(200)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let max = max.load(Ordering::SeqCst);
        assert!((1..=5).contains(&max), "max in flight {max}");
        assert_eq!((adm.in_flight(), adm.queue_depth()), (0, 0));
    }

    #[test]
    fn priority_header_is_read_when_configured_and_valid() {
        let adm = fixed(1, 1);
        let mut h = HeaderMap::new();
        assert_eq!(adm.header_priority(&h), None);
        h.insert("x-priority", http::HeaderValue::from_static(" Critical "));
        assert_eq!(adm.header_priority(&h), Some(Priority::Critical));
        h.insert("x-priority", http::HeaderValue::from_static("sheddable"));
        assert_eq!(adm.header_priority(&h), Some(Priority::Sheddable));
        h.insert("x-priority", http::HeaderValue::from_static("urgent"));
        assert_eq!(adm.header_priority(&h), None);
    }

    #[tokio::test(start_paused = true)]
    async fn layer_sheds_with_503_overloaded_and_retry_after() {
        let adm = fixed(1, 0);
        let slow = tower::service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, ProxyError>(Response::new(crate::body::empty()))
        });
        let svc = AdmissionLayer::new(Some(Arc::clone(&adm)), Priority::Normal, None).layer(slow);
        let held = tokio::spawn(svc.clone().oneshot(Request::new(crate::body::empty())));
        while adm.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let err = svc
            .clone()
            .oneshot(Request::new(crate::body::empty()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Overloaded);
        let response = err.to_response(None);
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        assert!(held.await.unwrap().is_ok());
        assert_eq!(adm.in_flight(), 0, "permit released with the response");
    }

    fn params(min: usize, initial: usize, max: usize, tolerance: f64) -> AdaptiveLimit {
        AdaptiveLimit {
            initial,
            min,
            max,
            tolerance,
            update_interval: Duration::from_millis(100),
            min_rtt_window: Duration::from_secs(10),
        }
    }

    /// Runs `steps` update intervals with the limit saturated by load; each request
    /// takes `rtt(in_flight)`. Returns the limit after each step.
    fn simulate(
        g: &mut GradientLimit,
        start: Instant,
        steps: u32,
        rtt: impl Fn(usize) -> Duration,
    ) -> Vec<usize> {
        let mut now = start;
        let mut limits = Vec::new();
        for _ in 0..steps {
            let in_flight = g.limit();
            g.note_in_flight(in_flight);
            let interval = Duration::from_millis(100);
            now += interval;
            let r = rtt(in_flight);
            for _ in 0..in_flight {
                g.record(now - interval, r);
            }
            g.tick(now, in_flight);
            limits.push(g.limit());
        }
        limits
    }

    #[test]
    fn flat_latency_grows_the_limit_to_max() {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(4, 20, 100, 2.0), start);
        assert!(g.is_probing());
        assert_eq!(g.limit(), 4, "min_rtt is measured at the minimum limit");
        let limits = simulate(&mut g, start, 95, |_| Duration::from_millis(20));
        // The probe at limit 4 needs ten samples: three intervals of four requests.
        assert_eq!(
            &limits[..2],
            &[4, 4],
            "a window closes only with enough samples"
        );
        assert_eq!(limits[2], 20, "back to initial once min_rtt is known");
        assert_eq!(g.min_rtt(), Some(Duration::from_millis(20)));
        assert!(limits.windows(2).all(|w| w[1] >= w[0] || w[1] == 4));
        assert_eq!(*limits.last().unwrap(), 100);
    }

    #[test]
    fn latency_rising_past_n_workers_settles_the_limit_near_n() {
        for (workers, tolerance) in [(10usize, 1.5f64), (10, 2.0), (40, 1.5)] {
            let start = Instant::now();
            let mut g = GradientLimit::new(&params(2, 20, 1000, tolerance), start);
            let service = Duration::from_millis(20);
            // An app with `workers` workers: queueing starts past that concurrency.
            let limits = simulate(&mut g, start, 400, |in_flight| {
                service.mul_f64((in_flight as f64 / workers as f64).max(1.0))
            });
            let settled: Vec<usize> = limits[150..].iter().copied().filter(|&l| l > 2).collect();
            let n = workers as f64;
            let high = (tolerance * n + (tolerance * n).sqrt() + 2.0).ceil() as usize;
            assert!(settled.len() > 200, "mostly out of min_rtt probes");
            for l in settled {
                assert!(
                    (workers..=high).contains(&l),
                    "{workers} workers, tolerance {tolerance}: limit {l} outside {workers}..={high}"
                );
            }
        }
    }

    #[test]
    fn idle_cluster_does_not_grow() {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(4, 20, 100, 2.0), start);
        let mut now = start;
        for _ in 0..50 {
            g.note_in_flight(2);
            now += Duration::from_millis(100);
            g.record(now - Duration::from_millis(50), Duration::from_millis(5));
            g.tick(now, 0);
        }
        assert_eq!(g.limit(), 20);
    }

    #[test]
    fn bounds_are_respected() {
        let start = Instant::now();
        let mut g = GradientLimit::new(&params(3, 50, 60, 2.0), start);
        // Latency explodes with any concurrency: the limit falls to min, not below.
        let limits = simulate(&mut g, start, 200, |in_flight| {
            Duration::from_millis(10 * in_flight as u64 * in_flight as u64)
        });
        assert!(limits.iter().all(|&l| (3..=60).contains(&l)));
        assert!(limits[100..].iter().all(|&l| l <= 6), "{limits:?}");
        // And a flat one never passes max.
        let mut g = GradientLimit::new(&params(3, 50, 60, 2.0), start);
        let limits = simulate(&mut g, start, 200, |_| Duration::from_millis(1));
        assert!(limits.iter().all(|&l| (3..=60).contains(&l)));
    }

    #[tokio::test(start_paused = true)]
    async fn adaptive_admission_publishes_the_limit_and_admits_more_waiters() {
        let config = AdmissionConfig {
            limit: ConcurrencyLimit::Adaptive(params(1, 3, 10, 2.0)),
            max_queue: 10,
            queue_timeout: Duration::from_secs(10),
            priority_header: None,
        };
        let adm = Arc::new(Admission::new(&config, &metrics::SharedString::from("t")));
        assert_eq!(adm.limit(), 1, "probing min_rtt");
        let first = adm.acquire(Priority::Normal, far()).await.unwrap();
        let mut granted = spawn_waiters(
            &adm,
            &[
                ("a", Priority::Normal),
                ("b", Priority::Normal),
                ("c", Priority::Normal),
            ],
        )
        .await;
        tokio::time::advance(Duration::from_millis(1050)).await;
        // Completing the first request ends the probe (a lone sample closes a window
        // only after ten intervals): the limit returns to 3 and three waiters are
        // admitted by the one release.
        first.complete(Some(Duration::from_millis(1050)));
        assert_eq!(adm.limit(), 3);
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(granted.recv().await.unwrap().1.unwrap());
        }
        assert_eq!((adm.in_flight(), adm.queue_depth()), (3, 0));
    }
}
