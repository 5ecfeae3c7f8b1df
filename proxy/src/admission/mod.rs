//! Admission control: a per-cluster concurrency limit (fixed, or adaptive to
//! measured latency) with a priority queue in front of it that is bounded by
//! waiting time, not by count.
//!
//! [`AdmissionControl`] is the per-cluster state (it lives in the `Cluster`, so
//! every route to the cluster shares it and it survives reloads that keep the
//! cluster). A request takes a [`Permit`] at once when fewer than `limit`
//! requests are in flight and nobody waits; otherwise it waits in the priority
//! queue (`queue.rs`: one queue per [`Priority`], served critical → normal →
//! sheddable). The queue is watched CoDel-style (`codel.rs`): once its queueing
//! delay has stayed above a target for a whole interval it is *standing*; then
//! it holds only what the limit serves in about a millisecond (a backlog keeps
//! its newest waiters), refuses an arrival it has no room for at once, and sheds
//! waiters older than the target (the room, the drain time and `Retry-After`:
//! `room.rs`). A full queue (`max_queue`, a memory bound), the hard cap
//! `queue_timeout`, or being displaced by a higher-priority arrival also sheds
//! ([`Shed`]) with 503 `overloaded`. A waiter whose client went away leaves the
//! queue at once and is counted (`floodgate_client_gone_total`).
//!
//! Every arrival is counted (offered), and so are admissions, queueings, sheds by
//! reason and clients gone: demand is measured even when most of it is shed.
//!
//! The adaptive limit is [`GradientLimit`] (pure arithmetic, in [`gradient`]).
//! The tower layer that applies admission to a route is `stack::admission`.

mod codel;
pub mod gradient;
mod queue;
mod room;
mod status;

pub use gradient::GradientLimit;
pub use status::{AdmissionStatus, GoneCounts, ShedCounts};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use tokio::sync::oneshot;

use crate::config::{AdmissionConfig, ConcurrencyLimit, Priority};
use crate::error::{ErrorKind, ProxyError};
use crate::observe;
use crate::time::{self, Instant};
use codel::{auto_target, Codel, MinLatency};
use queue::{Grant, Waiters};

/// How long the minimum latency behind the automatic queue target is remembered
/// (one to two of these windows).
const MIN_LATENCY_WINDOW: Duration = Duration::from_secs(10);

/// A drop this close to a waiter's deadline is taken for the deadline (timers
/// fire on millisecond ticks), not for a client that went away.
const DEADLINE_SLACK: Duration = Duration::from_millis(1);

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The queue held `max_queue` waiters (standing: its room) and none ranked
    /// below the arrival; refused at once.
    QueueFull,
    /// The request waited until its deadline (`queue_timeout` or the route's).
    QueueTimeout,
    /// The queue was standing and the request had waited longer than the target.
    QueueDelay,
    /// A higher-priority arrival took this waiter's place in a full queue.
    Displaced,
    /// The queue was standing and held more than its room (a backlog from before
    /// it stood, or from a higher limit): this, an older waiter, was shed so that
    /// the newest are served.
    Superseded,
}

impl Shed {
    /// Every reason, in index order.
    pub const ALL: [Shed; 5] = [
        Self::QueueFull,
        Self::QueueTimeout,
        Self::QueueDelay,
        Self::Displaced,
        Self::Superseded,
    ];

    /// The `reason` label of `floodgate_shed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
            Self::QueueDelay => "queue_delay",
            Self::Displaced => "displaced",
            Self::Superseded => "superseded",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::QueueFull => 0,
            Self::QueueTimeout => 1,
            Self::QueueDelay => 2,
            Self::Displaced => 3,
            Self::Superseded => 4,
        }
    }
}

/// Where a request was when its client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting in the admission queue.
    Queued,
    /// Admitted, waiting for the upstream's response head.
    InService,
}

impl Stage {
    /// The `stage` label of `floodgate_client_gone_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InService => "in_service",
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
    /// Is the queue standing; its delay; its target.
    codel: Codel,
    /// The minimum latency the automatic target follows.
    min_latency: MinLatency,
}

impl State {
    /// Admits one request if there is room and nobody waits.
    fn try_admit(&mut self, now: Instant) -> bool {
        if self.in_flight < self.limit && self.waiters.is_empty() {
            if self.codel.is_standing() {
                // Room and nobody waiting: whatever stood has drained.
                self.codel.observe(now, None);
            }
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
}

/// Monotonic counters of one cluster, mirrored in its metrics and read by
/// `/clusters` (each read on its own: a view, not a snapshot).
#[derive(Default)]
struct Counts {
    offered: AtomicU64,
    admitted: AtomicU64,
    queued: AtomicU64,
    shed: [AtomicU64; 5],
    gone_queued: AtomicU64,
    gone_in_service: AtomicU64,
}

/// Metric handles of one cluster, registered once.
struct Metrics {
    limit: metrics::Gauge,
    depth: metrics::Gauge,
    delay: metrics::Gauge,
    offered: metrics::Counter,
    admitted: metrics::Counter,
    queued: metrics::Counter,
    shed: [metrics::Counter; 5],
    gone_queued: metrics::Counter,
    gone_in_service: metrics::Counter,
    /// How long queued requests waited: admitted ones, and shed ones by reason.
    wait_admitted: metrics::Histogram,
    wait_shed: [metrics::Histogram; 5],
}

/// A cluster's admission state: the concurrency limit, the requests in flight and
/// the priority queue of waiters, with its counters.
pub struct AdmissionControl {
    state: Mutex<State>,
    max_queue: usize,
    queue_timeout: Duration,
    /// A configured queue target; `None`: follow the measured minimum latency.
    queue_target: Option<Duration>,
    priority_header: Option<HeaderName>,
    counts: Counts,
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

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
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
        let label = || cluster.clone();
        let shed = |s: Shed| metrics::counter!(observe::SHED_TOTAL, "cluster" => label(), "reason" => s.reason());
        let wait = |outcome: &'static str| metrics::histogram!(observe::ADMISSION_WAIT, "cluster" => label(), "outcome" => outcome);
        let gone = |s: Stage| metrics::counter!(observe::CLIENT_GONE_TOTAL, "cluster" => label(), "stage" => s.label());
        let metrics = Metrics {
            limit: metrics::gauge!(observe::CONCURRENCY_LIMIT, "cluster" => label()),
            depth: metrics::gauge!(observe::QUEUE_DEPTH, "cluster" => label()),
            delay: metrics::gauge!(observe::QUEUE_DELAY, "cluster" => label()),
            offered: metrics::counter!(observe::ADMISSION_OFFERED_TOTAL, "cluster" => label()),
            admitted: metrics::counter!(observe::ADMISSION_ADMITTED_TOTAL, "cluster" => label()),
            queued: metrics::counter!(observe::ADMISSION_QUEUED_TOTAL, "cluster" => label()),
            shed: Shed::ALL.map(shed),
            gone_queued: gone(Stage::Queued),
            gone_in_service: gone(Stage::InService),
            wait_admitted: wait("admitted"),
            wait_shed: Shed::ALL.map(|s| wait(s.reason())),
        };
        metrics.limit.set(limit as f64);
        metrics.depth.set(0.0);
        metrics.delay.set(0.0);
        let target = config
            .queue_target
            .unwrap_or_else(|| auto_target(None, config.queue_timeout));
        let mut codel = Codel::new(target, config.queue_interval);
        codel.hold(gradient.as_ref().is_some_and(GradientLimit::is_probing));
        Self {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                waiters: Waiters::default(),
                gradient,
                rtt_ewma: 0.0,
                codel,
                min_latency: MinLatency::new(MIN_LATENCY_WINDOW, now),
            }),
            max_queue: config.max_queue,
            queue_timeout: config.queue_timeout,
            queue_target: config.queue_target,
            priority_header: config.priority_header.clone(),
            counts: Counts::default(),
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

    /// Limit, in-flight count, queue state and counters.
    pub fn status(&self) -> AdmissionStatus {
        let (limit, in_flight, queue_depth, delay, target, standing, rtt, floor, probing) = {
            let mut st = self.lock();
            let now = time::now();
            let oldest = st.waiters.oldest();
            let delay = oldest.map_or(Duration::ZERO, |o| now.saturating_duration_since(o));
            let g = st.gradient.as_ref();
            (
                st.limit,
                st.in_flight,
                st.waiters.len(),
                delay,
                st.codel.target(),
                st.codel.is_standing(),
                st.rtt_ewma,
                g.and_then(GradientLimit::min_rtt),
                g.is_some_and(GradientLimit::is_probing),
            )
        };
        let c = &self.counts;
        let shed = |s: Shed| c.shed.get(s.index()).map_or(0, load);
        AdmissionStatus {
            limit,
            in_flight,
            queue_depth,
            queue_delay_ms: delay.as_secs_f64() * 1000.0,
            queue_target_ms: target.as_secs_f64() * 1000.0,
            queue_standing: standing,
            latency_ms: rtt * 1000.0,
            min_rtt_ms: floor.map(|f| f.as_secs_f64() * 1000.0),
            probing,
            offered: load(&c.offered),
            admitted: load(&c.admitted),
            queued: load(&c.queued),
            shed: ShedCounts {
                total: Shed::ALL.into_iter().map(shed).sum(),
                queue_full: shed(Shed::QueueFull),
                queue_timeout: shed(Shed::QueueTimeout),
                queue_delay: shed(Shed::QueueDelay),
                displaced: shed(Shed::Displaced),
                superseded: shed(Shed::Superseded),
            },
            client_gone: GoneCounts {
                queued: load(&c.gone_queued),
                in_service: load(&c.gone_in_service),
            },
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

    /// Admits at once if fewer than `limit` requests are in flight and nobody
    /// waits. Only a success is counted (offered and admitted): a caller that then
    /// queues through [`acquire`](Self::acquire) is counted there.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let admitted = self.lock().try_admit(time::now());
        if admitted {
            self.count_offered();
            self.count_admitted();
        }
        admitted.then(|| Permit::new(Arc::clone(self)))
    }

    /// Admits the request now, or queues it by `priority` until a slot frees up,
    /// the standing queue sheds it, or `deadline` passes. Dropping the returned
    /// future leaves the queue at once (counted as a client gone, or as a
    /// `queue_timeout` when dropped at the deadline, e.g. by the route timeout).
    pub async fn acquire(
        self: &Arc<Self>,
        priority: Priority,
        deadline: Instant,
    ) -> Result<Permit, Shed> {
        let Some((rx, check_at, queued_at)) = self.admit_or_enqueue(priority)? else {
            return Ok(Permit::new(Arc::clone(self)));
        };
        let mut waiter = Waiter {
            admission: self,
            rx: Some(rx),
            deadline,
        };
        let grant = waiter.wait(check_at).await;
        let waited = time::now().saturating_duration_since(queued_at);
        let outcome = match grant {
            Some(Grant::Admitted) => {
                self.metrics.wait_admitted.record(waited);
                self.count_admitted();
                return Ok(Permit::new(Arc::clone(self)));
            }
            Some(Grant::Displaced) => Shed::Displaced,
            Some(Grant::Superseded) => Shed::Superseded,
            Some(Grant::Expired) => Shed::QueueDelay,
            None => {
                self.count_shed(Shed::QueueTimeout);
                Shed::QueueTimeout
            }
        };
        if let Some(h) = self.metrics.wait_shed.get(outcome.index()) {
            h.record(waited);
        }
        Err(outcome)
    }

    /// Under one lock: admits at once when there is room (`Ok(None)`), else puts a
    /// waiter in the queue of `priority` (displacing a lower-priority one when the
    /// queue is full), else refuses with `QueueFull`. Counts the arrival. A queued
    /// waiter also learns when it will have waited longer than the target, and
    /// when it was queued.
    fn admit_or_enqueue(
        &self,
        priority: Priority,
    ) -> Result<Option<(oneshot::Receiver<Grant>, Instant, Instant)>, Shed> {
        self.count_offered();
        let now = time::now();
        let mut st = self.lock();
        if st.try_admit(now) {
            drop(st);
            self.count_admitted();
            return Ok(None);
        }
        // Shed what a standing queue would not serve in time before judging room.
        self.shed_expired(&mut st, now);
        let room = if st.codel.is_standing() {
            // A backlog from before the queue stood (or from a higher limit) keeps
            // its newest waiters only.
            let room = self.standing_room(&st);
            self.trim(&mut st, room);
            room
        } else {
            self.max_queue
        };
        while st.waiters.len() >= room {
            // Full: only a lower class makes room for an arrival; otherwise the
            // arrival is refused at once (it has waited for nothing).
            let victim = match room {
                0 => None,
                _ => st.waiters.pop_victim(priority),
            };
            let Some(victim) = victim else {
                drop(st);
                self.count_shed(Shed::QueueFull);
                return Err(Shed::QueueFull);
            };
            if victim.send(Grant::Displaced) {
                self.count_shed(Shed::Displaced);
            }
        }
        let rx = st.waiters.push(priority, now);
        self.observe(&mut st, now);
        let drain = room::drain_time(st.waiters.len(), st.limit, st.rtt_ewma);
        if !st.codel.is_standing() && drain > st.codel.interval().as_secs_f64() {
            // Longer than the app serves in an interval: it cannot drain within one.
            st.codel.stand(now);
            let room = self.standing_room(&st);
            self.trim(&mut st, room);
        }
        let check_at = now + st.codel.target() + DEADLINE_SLACK;
        drop(st);
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        self.metrics.queued.increment(1);
        Ok(Some((rx, check_at, now)))
    }

    /// The most waiters the queue holds while standing (`max_queue` if smaller).
    fn standing_room(&self, st: &State) -> usize {
        room::standing_room(st.limit, st.rtt_ewma).min(self.max_queue)
    }

    /// Sheds the oldest waiters (`superseded`), lowest class first, until at most
    /// `room` remain: served in time are the newest, whose clients still wait.
    fn trim(&self, st: &mut State, room: usize) {
        let mut shed = 0;
        while st.waiters.len() > room {
            let Some(entry) = st.waiters.pop_oldest_at_or_below(Priority::Critical) else {
                break;
            };
            if entry.send(Grant::Superseded) {
                shed += 1;
            }
        }
        if shed > 0 {
            self.count_shed_n(Shed::Superseded, shed);
        }
    }

    /// Re-reads the queue's delay (standing or not) and publishes depth and delay.
    fn observe(&self, st: &mut State, now: Instant) {
        let oldest = st.waiters.oldest();
        st.codel.observe(now, oldest);
        self.metrics.depth.set(st.waiters.len() as f64);
        self.metrics.delay.set(st.codel.delay().as_secs_f64());
    }

    /// While the queue is standing, sheds (`queue_delay`) every waiter that waited
    /// longer than the target, oldest of each class first.
    fn shed_expired(&self, st: &mut State, now: Instant) {
        // An empty queue says nothing here: it may have been emptied by shedding.
        let Some(oldest) = st.waiters.oldest() else {
            return;
        };
        st.codel.observe(now, Some(oldest));
        let Some(cutoff) = st.codel.cutoff(now) else {
            return;
        };
        let mut shed = 0;
        while let Some(entry) = st.waiters.pop_older_than(cutoff) {
            if entry.send(Grant::Expired) {
                shed += 1;
            }
        }
        if shed > 0 {
            self.count_shed_n(Shed::QueueDelay, shed);
            if st.waiters.is_empty() {
                // Emptied by shedding, not by service: still standing.
                st.codel.emptied_by_shedding(now);
                self.metrics.depth.set(0.0);
                self.metrics.delay.set(0.0);
            } else {
                self.observe(st, now);
            }
        }
    }

    /// Grants queued waiters while there is room under the limit: first sheds what
    /// a standing queue would not serve in time, then serves by priority, newest
    /// first while a standing queue holds more than its room (a backlog: e.g. the
    /// limit fell), oldest first otherwise (a standing queue within its room is
    /// served within about a millisecond in any order, and oldest first none of
    /// its waiters is left behind to be shed).
    fn grant_waiters(&self, st: &mut State, now: Instant) {
        if st.waiters.is_empty() {
            return;
        }
        self.shed_expired(st, now);
        let lifo = st.codel.is_standing() && st.waiters.len() > self.standing_room(st);
        while st.in_flight < st.limit {
            let Some(entry) = st.waiters.pop_next(lifo) else {
                break;
            };
            if entry.send(Grant::Admitted) {
                st.admitted();
            }
        }
        self.observe(st, now);
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
            st.min_latency.record(now, rtt);
            if self.queue_target.is_none() {
                let target = auto_target(st.min_latency.get(), self.queue_timeout);
                st.codel.set_target(target);
            }
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
            let probing = st.gradient.as_ref().is_some_and(GradientLimit::is_probing);
            st.codel.hold(probing);
        }
        self.grant_waiters(&mut st, now);
    }

    /// Sheds a standing queue's overdue waiters now (a waiter's own check, so that
    /// shedding does not wait for the next arrival or completion).
    fn check_queue(&self) {
        let now = time::now();
        let mut st = self.lock();
        self.shed_expired(&mut st, now);
    }

    /// Counts a request whose client went away while admitted (before the response
    /// head); the caller drops its [`Permit`] without a latency sample.
    pub fn client_gone_in_service(&self) {
        self.counts.gone_in_service.fetch_add(1, Ordering::Relaxed);
        self.metrics.gone_in_service.increment(1);
    }

    fn client_gone_queued(&self) {
        self.counts.gone_queued.fetch_add(1, Ordering::Relaxed);
        self.metrics.gone_queued.increment(1);
    }

    fn count_offered(&self) {
        self.counts.offered.fetch_add(1, Ordering::Relaxed);
        self.metrics.offered.increment(1);
    }

    fn count_admitted(&self) {
        self.counts.admitted.fetch_add(1, Ordering::Relaxed);
        self.metrics.admitted.increment(1);
    }

    fn count_shed(&self, shed: Shed) {
        self.count_shed_n(shed, 1);
    }

    fn count_shed_n(&self, shed: Shed, n: u64) {
        if let Some(c) = self.counts.shed.get(shed.index()) {
            c.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(m) = self.metrics.shed.get(shed.index()) {
            m.increment(n);
        }
    }

    /// How long a shed client should wait before trying again: the estimated time
    /// for the queue to drain (depth × RTT ÷ limit), at least 1 s, at most 10 s.
    pub fn retry_after(&self) -> Duration {
        let st = self.lock();
        room::retry_after(st.waiters.len(), st.limit, st.rtt_ewma)
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
    /// When the wait ends with `queue_timeout` (the earlier of the queue's and the route's).
    deadline: Instant,
}

impl Waiter<'_> {
    /// Waits for a grant until the deadline (`None`: the deadline passed). Once
    /// the waiter is older than the target, it checks the queue itself, so that a
    /// standing queue sheds it even if nothing else happens meanwhile.
    async fn wait(&mut self, check_at: Instant) -> Option<Grant> {
        if check_at < self.deadline {
            let rx = self.rx.as_mut()?;
            if let Ok(heard) = tokio::time::timeout_at(check_at, rx).await {
                self.rx = None;
                return heard.ok();
            }
            self.admission.check_queue();
        }
        let rx = self.rx.as_mut()?;
        match tokio::time::timeout_at(self.deadline, rx).await {
            Ok(heard) => {
                self.rx = None;
                // The sender went away unheard: cannot happen while the control is alive.
                heard.ok()
            }
            // Deadline: leave the queue, unless admitted or shed at the last moment.
            Err(_) => self.leave(),
        }
    }

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
        if self.rx.is_none() {
            return;
        }
        // Dropped while waiting: the client went away, or a deadline outside us
        // (the route timeout) fired.
        let at_deadline = time::now() + DEADLINE_SLACK >= self.deadline;
        match self.leave() {
            Some(Grant::Admitted) => {
                // Granted just as the waiter went away: pass the slot on.
                self.admission.release(None);
            }
            // Already shed and counted.
            Some(Grant::Displaced | Grant::Expired | Grant::Superseded) => return,
            None => {}
        }
        if at_deadline {
            self.admission.count_shed(Shed::QueueTimeout);
        } else {
            self.admission.client_gone_queued();
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
