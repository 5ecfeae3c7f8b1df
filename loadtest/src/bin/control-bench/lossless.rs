//! The no-request-lost run of `control-bench`: paced load through every real proxy
//! while the control plane pushes K config changes, registers and deregisters K new
//! upstreams (each stopped once every proxy has dropped it), and is killed and
//! restarted once. Every request is counted: answered 2xx, answered otherwise, or
//! failed (no answer at all). The goal is zero of the last two.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;

use super::real::{self, Conn, RealProxy};
use super::{call, write_group, ControlPlane, Env, APP};

/// Concurrent request loops per real proxy.
const LOOPS_PER_PROXY: usize = 2;

/// What the load saw.
#[derive(Default)]
pub struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    non_2xx: AtomicU64,
    errors: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
    first_error: Mutex<Option<String>>,
}

/// The result of the run.
pub struct Loss {
    tally: Arc<Tally>,
    actions: Vec<String>,
    took: Duration,
}

impl Loss {
    /// Requests not answered 2xx.
    pub fn lost(&self) -> u64 {
        self.tally.non_2xx.load(Ordering::Relaxed) + self.tally.errors.load(Ordering::Relaxed)
    }

    /// Prints the table.
    pub fn print(&self) {
        let t = &self.tally;
        println!(
            "no request lost ({:.1}s under load: {})",
            self.took.as_secs_f64(),
            self.actions.join(", ")
        );
        println!(
            "{:>10} {:>10} {:>10} {:>10}  goal",
            "sent", "2xx", "non-2xx", "errors"
        );
        println!(
            "{:>10} {:>10} {:>10} {:>10}  0 non-2xx, 0 errors",
            t.sent.load(Ordering::Relaxed),
            t.ok.load(Ordering::Relaxed),
            t.non_2xx.load(Ordering::Relaxed),
            t.errors.load(Ordering::Relaxed)
        );
        if let Ok(s) = t.statuses.lock() {
            if !s.is_empty() {
                println!("non-2xx statuses: {s:?}");
            }
        }
        if let Ok(Some(e)) = t.first_error.lock().as_deref() {
            println!("first error: {e}");
        }
    }
}

/// One paced request loop through `web` (a keep-alive connection) until `stop`.
async fn load_loop(
    web: std::net::SocketAddr,
    interval: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut conn = Conn::new(web);
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match conn.get("/", None).await {
            Ok((status, _)) if status.is_success() => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, _)) => {
                tally.non_2xx.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = tally.statuses.lock() {
                    *s.entry(status.as_u16()).or_default() += 1;
                }
            }
            Err(e) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = tally.first_error.lock() {
                    first.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        next += interval;
        tokio::time::sleep_until(next).await;
    }
}

/// Waits (≤ `timeout`) until every proxy runs a version other than `old`.
async fn all_moved_on(
    proxies: &[RealProxy],
    old: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (_, missed) =
        real::gather(real::watch_versions(proxies, old, Instant::now(), timeout)).await;
    anyhow::ensure!(
        missed == 0,
        "{missed} proxies did not apply the change in {timeout:?}"
    );
    Ok(())
}

/// The version every proxy runs (the first proxy's; they agree once settled).
async fn current(proxies: &[RealProxy]) -> Option<u64> {
    let p = proxies.first()?;
    real::running_version(&mut Conn::new(p.admin)).await
}

/// Waits (≤ 20 s) until every proxy's `/control` says `connected == want`.
async fn all_connected(proxies: &[RealProxy], want: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for p in proxies {
        let mut conn = Conn::new(p.admin);
        while real::connected(&mut conn).await != want {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} never became connected={want}",
                p.node
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

/// What the run does.
pub struct Plan {
    /// The first group-file version `k` to write (`first..first + cycles`).
    pub first: usize,
    /// Pushes, and register/deregister cycles.
    pub cycles: usize,
    /// Requests per second through all proxies.
    pub rate: u32,
    /// How long the control plane stays down once every proxy noticed.
    pub outage: Duration,
}

/// Runs the load and the changes.
pub async fn run(cp: &mut ControlPlane, env: &Env<'_>, plan: Plan) -> anyhow::Result<Loss> {
    let proxies = env.proxies;
    let loops = proxies.len() * LOOPS_PER_PROXY;
    let interval = Duration::from_secs_f64(loops as f64 / f64::from(plan.rate.max(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for p in proxies {
        for _ in 0..LOOPS_PER_PROXY {
            tasks.push(tokio::spawn(load_loop(
                p.web,
                interval,
                Arc::clone(&stop),
                Arc::clone(&tally),
            )));
        }
    }
    let started = Instant::now();
    let result = changes(cp, env, &plan).await;
    // A little load after the last change, then stop and wait for every loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let took = started.elapsed();
    Ok(Loss {
        tally,
        actions: result?,
        took,
    })
}

async fn changes(cp: &mut ControlPlane, env: &Env<'_>, plan: &Plan) -> anyhow::Result<Vec<String>> {
    let proxies = env.proxies;
    let timeout = env.timeout;
    let cycles = plan.cycles;
    for k in plan.first..plan.first + cycles {
        let old = current(proxies).await;
        write_group(env.groups, env.static_upstream, k)?;
        all_moved_on(proxies, old, timeout).await?;
    }
    for i in 0..cycles {
        let name = format!("no-loss-{i}");
        let upstream = real::Upstream::start(name.clone()).await?;
        let address = upstream.addr.to_string();
        let (status, body) = call(
            env.control,
            Method::POST,
            "/v1/endpoints",
            APP,
            Some(json!({ "cluster": "bench", "address": address, "ttl": "60s" })),
        )
        .await?;
        anyhow::ensure!(status.is_success(), "registry refused: {status} {body}");
        let (_, missed) =
            real::gather(real::watch_routed(proxies, &name, Instant::now(), timeout)).await;
        anyhow::ensure!(missed == 0, "{name} was not routed by every proxy");
        let old = current(proxies).await;
        let (status, body) = call(
            env.control,
            Method::DELETE,
            "/v1/endpoints",
            APP,
            Some(json!({ "cluster": "bench", "address": address })),
        )
        .await?;
        anyhow::ensure!(
            status.is_success(),
            "deregistration refused: {status} {body}"
        );
        all_moved_on(proxies, old, timeout).await?;
        // Every proxy runs the version without it: it stops accepting (what an app
        // does after deregistering); requests it is serving complete.
        drop(upstream);
    }
    // The control plane crashes: proxies keep serving; it comes back with an empty
    // memory and new versions; they resync.
    let old = current(proxies).await;
    cp.kill();
    all_connected(proxies, false).await?;
    tokio::time::sleep(plan.outage).await;
    cp.restart()?;
    all_connected(proxies, true).await?;
    all_moved_on(proxies, old, Duration::from_secs(20)).await?;
    Ok(vec![
        format!("{cycles} pushes"),
        format!("{cycles} register/deregister cycles"),
        format!("1 control-plane kill, {:?} down, restart", plan.outage),
    ])
}
