//! One open-loop run: the scheduler, the in-flight cap and the connection pool.
//!
//! The scheduler walks the [`Schedule`] and, at each intended instant, offers a request
//! to the [`Recorder`]; if fewer than `max_in_flight` are in flight it is queued, else it
//! is counted as `dropped`. Connections take queued requests in FIFO order. A request's
//! latency clock starts at its intended time, whether or not a connection was free.
//!
//! The scheduler runs on a thread of its own and sleeps with the OS timer (tens of
//! microseconds late), not on the runtime's timer: that one fires on whole milliseconds,
//! so every request would be sent up to 1 ms after its intended instant (0.8 ms at the
//! median, counted in its latency, the same for every peer) and a 5,000 rps load would
//! arrive in clumps of five each millisecond instead of spread over it.
//!
//! Every run ends by itself: the scheduler stops at the end of the profile (or
//! `max_requests`), in-flight requests get `drain` to finish, and at
//! `profile end + drain` (the hard stop) whatever is left is abandoned and reported as
//! unanswered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant as TokioInstant;

use crate::client::{self, Conn, ErrorKind};
use crate::keys::KeySampler;
use crate::profile::{KeySpec, Protocol, Segment};
use crate::recorder::{Recorded, Recorder};
use crate::schedule::Schedule;
use crate::target::Target;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No targets were given.
    #[error("no targets to send to")]
    NoTargets,
    /// All target weights are zero.
    #[error("all target weights are zero")]
    ZeroWeights,
    /// A numeric setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The histograms could not be created.
    #[error("histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Request templates.
    pub targets: Vec<Target>,
    /// The key space for `{id}`.
    pub keys: KeySpec,
    /// HTTP/1.1 or HTTP/2.
    pub protocol: Protocol,
    /// Number of connections (per target address).
    pub connections: usize,
    /// Cap on requests accepted but not finished.
    pub max_in_flight: usize,
    /// Per-request timeout from the actual send.
    pub timeout: Duration,
    /// Grace after the profile ends before the hard stop.
    pub drain: Duration,
    /// The profile, compiled.
    pub segments: Vec<Segment>,
    /// Stop after this many requests.
    pub max_requests: Option<u64>,
}

impl RunConfig {
    /// Length of the profile.
    pub fn profile_duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

/// One queued request.
#[derive(Debug, Clone, Copy)]
struct Job {
    intended: Duration,
    target: usize,
    id: u64,
}

/// Shared, read-only state of a run.
#[derive(Debug)]
struct Shared {
    cfg: RunConfig,
    recorder: Recorder,
    hard_stop: TokioInstant,
}

/// Delay between creating the pool and the first intended send, so connections are warm.
const WARMUP: Duration = Duration::from_millis(100);

/// Runs the load and returns what was recorded.
pub async fn run(cfg: RunConfig) -> Result<Recorded, RunError> {
    if cfg.targets.is_empty() {
        return Err(RunError::NoTargets);
    }
    if cfg.targets.iter().all(|t| t.weight == 0) {
        return Err(RunError::ZeroWeights);
    }
    if cfg.connections == 0 || cfg.connections > 100_000 {
        return Err(RunError::Invalid("connections must be 1..=100000".into()));
    }
    if cfg.max_in_flight == 0 {
        return Err(RunError::Invalid("max_in_flight must be at least 1".into()));
    }
    let start = Instant::now() + WARMUP;
    let tstart = TokioInstant::from_std(start);
    let end = cfg.profile_duration();
    let hard_stop = tstart + end + cfg.drain;
    let max_seconds = (end + cfg.drain).as_secs() as usize + 2;
    let shared = Arc::new(Shared {
        recorder: Recorder::new(start, max_seconds)?,
        cfg,
        hard_stop,
    });

    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let mut workers = tokio::task::JoinSet::new();
    match shared.cfg.protocol {
        Protocol::Http1 => {
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..shared.cfg.connections {
                workers.spawn(h1_worker(shared.clone(), rx.clone()));
            }
        }
        Protocol::Http2 => {
            workers.spawn(h2_dispatcher(shared.clone(), rx));
        }
    }

    let scheduler = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || schedule(&shared, start, tx))
    };
    // The scheduler stops by itself at the end of the schedule or the hard stop.
    let _ = scheduler.await;

    // Wait for the pool to finish, never past the hard stop (+ a moment to unwind).
    let wait = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout_at(hard_stop + Duration::from_millis(200), wait)
        .await
        .is_err()
    {
        workers.abort_all();
    }
    Ok(shared.recorder.finish())
}

/// Offers every scheduled request at its intended time (a blocking loop: run it on a
/// thread of its own).
fn schedule(shared: &Shared, start: Instant, tx: mpsc::UnboundedSender<Job>) {
    let cfg = &shared.cfg;
    let hard_stop = shared.hard_stop.into_std();
    let mut keys = KeySampler::new(&cfg.keys);
    let weights: Vec<u64> = cfg.targets.iter().map(|t| u64::from(t.weight)).collect();
    let total_weight: u64 = weights.iter().sum();
    let mut rng = StdRng::seed_from_u64(cfg.keys.seed ^ 0x5eed);
    let sched = Schedule::new(cfg.segments.clone(), cfg.max_requests);
    for intended in sched {
        let due = start + intended;
        if due >= hard_stop {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if !shared.recorder.offer(intended, cfg.max_in_flight) {
            continue;
        }
        let target = pick(&weights, total_weight, &mut rng);
        let job = Job {
            intended,
            target,
            id: keys.next_id(),
        };
        if tx.send(job).is_err() {
            break;
        }
    }
}

/// Picks a target index by weight.
fn pick(weights: &[u64], total: u64, rng: &mut StdRng) -> usize {
    if weights.len() == 1 || total == 0 {
        return 0;
    }
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    0
}

/// Executes one job on `conn`, recording send and outcome.
async fn execute(shared: &Shared, conn: &mut Conn, job: Job, sent: Duration) {
    let cfg = &shared.cfg;
    let outcome = match cfg.targets[job.target].request(job.id, cfg.protocol) {
        Ok(req) => conn.execute(req, cfg.timeout).await,
        Err(_) => Err(ErrorKind::Other),
    };
    shared.recorder.finished(job.intended, sent, outcome);
}

/// An HTTP/1.1 connection slot: takes one queued job at a time, keeps its connections
/// (one per target address) alive and reconnects when the server closes them.
async fn h1_worker(shared: Arc<Shared>, rx: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>) {
    let cfg = &shared.cfg;
    let mut conns: HashMap<SocketAddr, Conn> = HashMap::new();
    // Warm one connection per address before the first request is due.
    for t in &cfg.targets {
        if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(t.addr) {
            if let Ok(c) = client::connect(t.addr, cfg.protocol, cfg.timeout).await {
                e.insert(c);
            }
        }
    }
    loop {
        let next = async { rx.lock().await.recv().await };
        let job = match tokio::time::timeout_at(shared.hard_stop, next).await {
            Ok(Some(job)) => job,
            Ok(None) | Err(_) => break,
        };
        let sent = shared.recorder.sent(job.intended);
        let addr = cfg.targets[job.target].addr;
        let reusable = conns.get(&addr).is_some_and(Conn::is_open);
        if !reusable {
            conns.remove(&addr);
            match client::connect(addr, cfg.protocol, cfg.timeout).await {
                Ok(c) => {
                    conns.insert(addr, c);
                }
                Err(e) => {
                    shared.recorder.finished(job.intended, sent, Err(e));
                    continue;
                }
            }
        }
        let Some(conn) = conns.get_mut(&addr) else {
            continue;
        };
        let run = execute(&shared, conn, job, sent);
        if tokio::time::timeout_at(shared.hard_stop, run)
            .await
            .is_err()
        {
            break;
        }
    }
}

/// HTTP/2: `connections` multiplexed connections per address, used round-robin; every
/// job runs as its own task on a clone of a connection handle.
async fn h2_dispatcher(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let cfg = &shared.cfg;
    let n = cfg.connections;
    let mut pools: HashMap<SocketAddr, Vec<Arc<Mutex<Option<Conn>>>>> = HashMap::new();
    for t in &cfg.targets {
        if pools.contains_key(&t.addr) {
            continue;
        }
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let c = client::connect(t.addr, cfg.protocol, cfg.timeout)
                .await
                .ok();
            slots.push(Arc::new(Mutex::new(c)));
        }
        pools.insert(t.addr, slots);
    }
    let mut next = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let job = match tokio::time::timeout_at(shared.hard_stop, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) | Err(_) => break,
        };
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let addr = cfg.targets[job.target].addr;
        let Some(slot) = pools.get(&addr).and_then(|p| p.get(next % n)).cloned() else {
            continue;
        };
        next = next.wrapping_add(1);
        let shared = shared.clone();
        tasks.spawn(async move {
            let sent = shared.recorder.sent(job.intended);
            let conn = {
                let mut guard = slot.lock().await;
                if !guard.as_ref().is_some_and(Conn::is_open) {
                    *guard = client::connect(addr, shared.cfg.protocol, shared.cfg.timeout)
                        .await
                        .ok();
                }
                guard.as_ref().and_then(Conn::clone_h2)
            };
            match conn {
                Some(mut c) => {
                    let run = execute(&shared, &mut c, job, sent);
                    let _ = tokio::time::timeout_at(shared.hard_stop, run).await;
                }
                None => shared
                    .recorder
                    .finished(job.intended, sent, Err(ErrorKind::Connect)),
            }
        });
    }
    let wait = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout_at(shared.hard_stop, wait)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}
