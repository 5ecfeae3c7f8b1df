//! `control-bench`: how fast `floodgate-control` pushes, and how much memory it holds.
//!
//! Starts the real `floodgate-control` binary on loopback with a temporary configs
//! directory, `--proxies` real `floodgate` processes (each its own node of group
//! `bench`, bootstrap in the temp dir) and N simulated proxies (light async
//! long-pollers in this process that ACK every version they get), then measures
//!
//! - **push**: K times, rewrite the group file; from the write to each poller's ACK
//!   and to each real proxy running the new version (the source's debounce is part
//!   of it);
//! - **registration**: K times, `POST /v1/endpoints` of a new upstream; from the
//!   request to each poller's ACK and to a request through each real proxy answered
//!   by the new endpoint (**registration → routed**); then the same for the `DELETE`;
//! - **no request lost**: load through the real proxies while K pushes, K
//!   register/deregister cycles and one control-plane kill + restart happen; sent,
//!   answered, non-2xx and errors;
//! - **RSS** of the control plane (VmRSS from `/proc/PID/status`): idle, with N
//!   pollers, and with `--rss-pollers` pollers (plus a few pushes at that scale).
//!
//! Loopback only, bounded in count and time; every child is stopped by its PID (its
//! handle) and the temporary directory removed. See `loadtest/README.md`.

mod lossless;
mod real;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const PROXY: &str = "bench-proxy-token-0000001";
const APP: &str = "bench-app-token-000000002";
const OPERATOR: &str = "bench-operator-token-0003";
const GROUP: &str = "bench";
/// The route timeout of the group file's first version; each push adds 1 ms.
const FIRST_TIMEOUT_MS: usize = 2_000;

/// Measures push latency, registration latency and memory of `floodgate-control`.
#[derive(Debug, Parser)]
#[command(name = "control-bench", version, about)]
struct Args {
    /// The `floodgate-control` binary (default: next to this one).
    #[arg(long)]
    control_bin: Option<PathBuf>,
    /// Simulated proxies for the latency runs.
    #[arg(long, default_value_t = 200)]
    pollers: usize,
    /// Group-file changes measured.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Registrations (and deregistrations) measured.
    #[arg(long, default_value_t = 20)]
    registrations: usize,
    /// Pollers for the memory measurement at scale (0 skips it).
    #[arg(long, default_value_t = 1000)]
    rss_pollers: usize,
    /// Group-file changes measured at `--rss-pollers`.
    #[arg(long, default_value_t = 5)]
    scale_changes: usize,
    /// The control plane's `source.debounce`.
    #[arg(long, default_value = "50ms")]
    debounce: String,
    /// Longest wait for every poller to ACK one change.
    #[arg(long, default_value = "10s", value_parser = dur)]
    round_timeout: Duration,
    /// Real `floodgate` proxies beside the simulated pollers (0: none).
    #[arg(long, default_value_t = 3)]
    proxies: usize,
    /// The `floodgate` binary (default: next to this one).
    #[arg(long)]
    floodgate_bin: Option<PathBuf>,
    /// Pushes and register/deregister cycles of the no-request-lost run (0 skips it).
    #[arg(long, default_value_t = 10)]
    no_loss_cycles: usize,
    /// Requests per second through all real proxies during the no-request-lost run.
    #[arg(long, default_value_t = 300)]
    no_loss_rate: u32,
    /// How long the control plane stays down in the no-request-lost run (after every
    /// proxy has noticed), before it is restarted.
    #[arg(long, default_value = "1s", value_parser = dur)]
    outage: Duration,
}

fn dur(s: &str) -> Result<Duration, String> {
    floodgate_loadtest::duration::parse(s).map_err(|e| e.to_string())
}

/// A poller ACKed `version` at `at`.
#[derive(Debug, Clone, Copy)]
struct Acked {
    poller: usize,
    version: u64,
    at: Instant,
}

/// The control-plane process; killed (by its own handle) when dropped.
struct ControlPlane {
    child: Child,
    addr: SocketAddr,
    bin: PathBuf,
    dir: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// Kills it (SIGKILL: no goodbye to anyone), as a crash would.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same directory (a fresh memory).
    fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn_control(&self.bin, &self.dir)?;
        Ok(())
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }
}

/// The temporary directory; removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Version `k` of the group file: listener `web` on a free port of each proxy,
/// cluster `bench` with the static upstream; a push changes the route timeout.
fn group_yaml(static_upstream: SocketAddr, k: usize) -> String {
    format!(
        "server: {{ access_log: false }}\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    \
         routes: [ {{ name: all, cluster: bench, timeout: {}ms }} ]\n\
         clusters:\n  - name: bench\n    endpoints: [\"{static_upstream}\"]\n    connect_timeout: 500ms\n",
        FIRST_TIMEOUT_MS + k
    )
}

/// Writes the group file atomically (a hidden temp file, which the watcher skips, then a rename).
fn write_group(dir: &Path, static_upstream: SocketAddr, k: usize) -> anyhow::Result<()> {
    let tmp = dir.join(".bench.yaml.tmp");
    std::fs::write(&tmp, group_yaml(static_upstream, k))?;
    std::fs::rename(&tmp, dir.join("bench.yaml"))?;
    Ok(())
}

fn start_control(
    args: &Args,
    dir: &Path,
    static_upstream: SocketAddr,
) -> anyhow::Result<ControlPlane> {
    let bin = match &args.control_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this binary")?
            .join("floodgate-control"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build --release -p floodgate-control) or pass --control-bin",
        bin.display()
    );
    let groups = dir.join("groups");
    std::fs::create_dir_all(&groups)?;
    write_group(&groups, static_upstream, 0)?;
    // A free port, released for the control plane to bind (loopback, a tiny window).
    let addr = real::free_addr()?;
    std::fs::write(
        dir.join("control.yaml"),
        format!(
            "listen: {addr}\nconfigs_dir: groups\n\
             tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
             source: {{ debounce: {} }}\n",
            args.debounce
        ),
    )?;
    let child = spawn_control(&bin, dir)?;
    Ok(ControlPlane {
        child,
        addr,
        bin,
        dir: dir.to_owned(),
    })
}

fn spawn_control(bin: &Path, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("control.log"))?;
    Command::new(bin)
        .arg("--config")
        .arg(dir.join("control.yaml"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Waits (≤ 20 s) until the control plane answers with a version of the group.
async fn wait_control(cp: &ControlPlane) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((StatusCode::OK, g)) =
            call(cp.addr, Method::GET, "/v1/groups", OPERATOR, None).await
        {
            if g["groups"][0]["version"].as_u64().is_some() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the control plane did not come up; see {}",
            cp.dir.join("control.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request on a fresh connection (operator calls; pollers keep theirs).
async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (status, bytes) = send(&mut sender, addr, method, path, token, body).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// A simulated proxy: long-polls, ACKs each new version, reports the ACK; reconnects
/// after errors. Runs until the process ends.
async fn poller(id: usize, addr: SocketAddr, events: mpsc::UnboundedSender<Acked>) {
    let node = format!("bench-{id}");
    let mut version = 0u64;
    loop {
        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) = http1::handshake(TokioIo::new(stream)).await else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            let path = format!("/v1/snapshot?group={GROUP}&node={node}&version={version}");
            let polled = tokio::time::timeout(
                Duration::from_secs(45),
                send(&mut sender, addr, Method::GET, &path, PROXY, None),
            )
            .await;
            let (status, body) = match polled {
                Ok(Ok(r)) => r,
                _ => break,
            };
            if status == StatusCode::NOT_MODIFIED {
                continue;
            }
            let Some(v) = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["version"].as_u64())
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let ack = json!({ "group": GROUP, "node": node, "version": v });
            match send(&mut sender, addr, Method::POST, "/v1/ack", PROXY, Some(ack)).await {
                Ok((StatusCode::OK, _)) => {}
                _ => break,
            }
            version = v;
            if events
                .send(Acked {
                    poller: id,
                    version: v,
                    at: Instant::now(),
                })
                .is_err()
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Collects, for pollers `0..n`, the first ACK of a version other than `old` after
/// `t0`; returns the latencies and the new version (None when none came in time).
async fn round(
    events: &mut mpsc::UnboundedReceiver<Acked>,
    n: usize,
    old: Option<u64>,
    t0: Instant,
    timeout: Duration,
) -> (Vec<Duration>, Option<u64>) {
    let mut seen = vec![false; n];
    let mut latencies = Vec::with_capacity(n);
    let mut new = None;
    let deadline = tokio::time::Instant::now() + timeout;
    while latencies.len() < n {
        let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        if Some(e.version) == old || e.poller >= n || seen[e.poller] {
            continue;
        }
        if new.is_some_and(|v| v != e.version) {
            continue;
        }
        new = Some(e.version);
        seen[e.poller] = true;
        latencies.push(e.at.saturating_duration_since(t0));
    }
    (latencies, new)
}

/// p50, p99 and max of a set of latencies (nearest rank).
fn summary(mut v: Vec<Duration>) -> Option<(Duration, Duration, Duration)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((rank(0.50), rank(0.99), v[v.len() - 1]))
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1e3)
}

struct Row {
    name: String,
    expected: usize,
    latencies: Vec<Duration>,
    goal: &'static str,
}

fn print_latency(rows: &[Row]) {
    println!(
        "{:<40} {:>11} {:>9} {:>9} {:>9}  goal",
        "latency", "acked/due", "p50", "p99", "max"
    );
    for r in rows {
        let n = r.latencies.len();
        let (p50, p99, max) = summary(r.latencies.clone())
            .map(|(a, b, c)| (ms(a), ms(b), ms(c)))
            .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
        println!(
            "{:<40} {:>11} {:>9} {:>9} {:>9}  {}",
            r.name,
            format!("{n}/{}", r.expected),
            p50,
            p99,
            max,
            r.goal
        );
    }
}

/// Starts pollers `from..to` and waits until each has ACKed the current version.
async fn add_pollers(
    addr: SocketAddr,
    from: usize,
    to: usize,
    tx: &mpsc::UnboundedSender<Acked>,
    rx: &mut mpsc::UnboundedReceiver<Acked>,
) -> anyhow::Result<u64> {
    for id in from..to {
        tokio::spawn(poller(id, addr, tx.clone()));
    }
    let mut seen = vec![false; to];
    let mut count = 0;
    let mut version = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count < to - from {
        let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("only {count} of {} new pollers got the snapshot", to - from);
        };
        if e.poller >= from && e.poller < to && !seen[e.poller] {
            seen[e.poller] = true;
            count += 1;
            version = e.version;
        }
    }
    Ok(version)
}

/// What a series of changes measured: pollers' ACKs, real proxies' latencies (and
/// how many real proxies missed the timeout), the last version.
struct Measured {
    pollers: Vec<Duration>,
    real: Vec<Duration>,
    real_missed: usize,
    version: u64,
}

/// One group of changes under measurement.
struct Env<'a> {
    control: SocketAddr,
    groups: &'a Path,
    static_upstream: SocketAddr,
    proxies: &'a [real::RealProxy],
    timeout: Duration,
}

async fn pushes(
    env: &Env<'_>,
    ks: std::ops::Range<usize>,
    pollers: usize,
    mut version: u64,
    rx: &mut mpsc::UnboundedReceiver<Acked>,
) -> anyhow::Result<Measured> {
    let mut m = Measured {
        pollers: Vec::new(),
        real: Vec::new(),
        real_missed: 0,
        version,
    };
    for k in ks {
        // Let every poller park in its long poll again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        let watchers = real::watch_versions(env.proxies, Some(version), t0, env.timeout);
        write_group(env.groups, env.static_upstream, k)?;
        let (lat, new) = round(rx, pollers, Some(version), t0, env.timeout).await;
        m.pollers.extend(lat);
        let (got, missed) = real::gather(watchers).await;
        m.real.extend(got);
        m.real_missed += missed;
        version = new.unwrap_or(version);
    }
    m.version = version;
    Ok(m)
}

/// K registrations and deregistrations of new upstreams: pollers' ACKs, and for the
/// real proxies registration → routed and deregistration → running.
async fn registrations(
    env: &Env<'_>,
    k: usize,
    pollers: usize,
    mut version: u64,
    rx: &mut mpsc::UnboundedReceiver<Acked>,
) -> anyhow::Result<(Measured, Measured)> {
    let empty = || Measured {
        pollers: Vec::new(),
        real: Vec::new(),
        real_missed: 0,
        version: 0,
    };
    let (mut reg, mut dereg) = (empty(), empty());
    for i in 0..k {
        let name = format!("registered-{i}");
        let upstream = real::Upstream::start(name.clone()).await?;
        let address = upstream.addr.to_string();
        for register in [true, false] {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (method, body) = if register {
                (
                    Method::POST,
                    json!({ "cluster": "bench", "address": address, "ttl": "60s" }),
                )
            } else {
                (
                    Method::DELETE,
                    json!({ "cluster": "bench", "address": address }),
                )
            };
            let t0 = Instant::now();
            let watchers = if register {
                real::watch_routed(env.proxies, &name, t0, env.timeout)
            } else {
                real::watch_versions(env.proxies, Some(version), t0, env.timeout)
            };
            let (status, answer) =
                call(env.control, method, "/v1/endpoints", APP, Some(body)).await?;
            anyhow::ensure!(status.is_success(), "registry refused: {status} {answer}");
            let (lat, new) = round(rx, pollers, Some(version), t0, env.timeout).await;
            let (got, missed) = real::gather(watchers).await;
            let sink = if register { &mut reg } else { &mut dereg };
            sink.pollers.extend(lat);
            sink.real.extend(got);
            sink.real_missed += missed;
            version = new.unwrap_or(version);
        }
    }
    reg.version = version;
    dereg.version = version;
    Ok((reg, dereg))
}

/// How many results a row expects: pollers, real proxies, changes.
#[derive(Clone, Copy)]
struct Due {
    pollers: usize,
    proxies: usize,
    changes: usize,
}

/// The rows of one measurement: the pollers' ACKs, then (with real proxies) `real_what`.
fn rows_for(
    rows: &mut Vec<Row>,
    what: &str,
    m: &Measured,
    due: Due,
    goal: &'static str,
    real_what: &str,
) {
    rows.push(Row {
        name: format!("{what} -> ACK ({} pollers)", due.pollers),
        expected: due.pollers * due.changes,
        latencies: m.pollers.clone(),
        goal,
    });
    if due.proxies > 0 {
        rows.push(Row {
            name: format!("{what} -> {real_what} ({} real)", due.proxies),
            expected: due.proxies * due.changes,
            latencies: m.real.clone(),
            goal,
        });
    }
}

/// The group's current version, from `/v1/groups`.
async fn group_version(cp: &ControlPlane) -> anyhow::Result<u64> {
    let (_, g) = call(cp.addr, Method::GET, "/v1/groups", OPERATOR, None).await?;
    g["groups"][0]["version"]
        .as_u64()
        .context("the group has no version")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = TempDir(std::env::temp_dir().join(format!("control-bench-{}", std::process::id())));
    let static_upstream = real::Upstream::start("static".into()).await?;
    let mut cp = start_control(&args, &dir.0, static_upstream.addr)?;
    let groups = dir.0.join("groups");
    wait_control(&cp).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = cp.rss_kib()?;
    println!(
        "control-bench: floodgate-control pid {} on {}, {} pollers, {} real proxies, debounce {}",
        cp.child.id(),
        cp.addr,
        args.pollers,
        args.proxies,
        args.debounce
    );

    let mut proxies = Vec::new();
    if args.proxies > 0 {
        let bin = real::floodgate_bin(args.floodgate_bin.as_ref())?;
        for i in 0..args.proxies {
            proxies.push(real::start_proxy(&bin, &dir.0, i, cp.addr, GROUP, PROXY).await?);
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let n = args.pollers;
    let version = add_pollers(cp.addr, 0, n, &tx, &mut rx).await?;
    let rss_n = cp.rss_kib()?;
    let env = Env {
        control: cp.addr,
        groups: &groups,
        static_upstream: static_upstream.addr,
        proxies: &proxies,
        timeout: args.round_timeout,
    };
    let mut rows = Vec::new();

    let due = |changes| Due {
        pollers: n,
        proxies: proxies.len(),
        changes,
    };
    let push = pushes(&env, 1..1 + args.changes, n, version, &mut rx).await?;
    rows_for(
        &mut rows,
        "push: file write",
        &push,
        due(args.changes),
        "p99 <= 100ms",
        "running",
    );
    let (reg, dereg) = registrations(&env, args.registrations, n, push.version, &mut rx).await?;
    let regs = due(args.registrations);
    rows_for(
        &mut rows,
        "registration",
        &reg,
        regs,
        "p99 <= 100ms",
        "routed",
    );
    rows_for(&mut rows, "deregistration", &dereg, regs, "", "running");
    let mut version = dereg.version;
    let missed = push.real_missed + reg.real_missed + dereg.real_missed;

    let (_, nodes) = call(cp.addr, Method::GET, "/v1/nodes", OPERATOR, None).await?;
    let on_last = nodes["nodes"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["version"] == version).count())
        .unwrap_or(0);

    let mut loss = None;
    if !proxies.is_empty() && args.no_loss_cycles > 0 {
        let first = 1 + args.changes;
        loss = Some(
            lossless::run(
                &mut cp,
                &env,
                lossless::Plan {
                    first,
                    cycles: args.no_loss_cycles,
                    rate: args.no_loss_rate,
                    outage: args.outage,
                },
            )
            .await?,
        );
        wait_control(&cp).await?;
        // The pollers resync after the restart to the new current version.
        version = group_version(&cp).await?;
    }

    let mut rss_m = None;
    let m = args.rss_pollers;
    if m > n {
        add_pollers(cp.addr, n, m, &tx, &mut rx).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_m = Some(cp.rss_kib()?);
        // ACKs no round has read (the resync after the restart) are not this round's.
        while rx.try_recv().is_ok() {}
        let first = 1 + args.changes + args.no_loss_cycles;
        let scale = pushes(
            &Env {
                proxies: &[],
                ..env
            },
            first..first + args.scale_changes,
            m,
            version,
            &mut rx,
        )
        .await?;
        rows.push(Row {
            name: format!("push: file write -> ACK ({m} pollers)"),
            expected: m * args.scale_changes,
            latencies: scale.pollers,
            goal: "",
        });
    }

    println!();
    print_latency(&rows);
    if missed > 0 {
        println!(
            "real proxies that missed the {:?} round timeout: {missed}",
            args.round_timeout
        );
    }
    println!();
    println!("{:<40} {:>11}  goal", "control plane memory (VmRSS)", "MiB");
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    println!(
        "{:<40} {:>11}  <= 30 MiB",
        "idle (no pollers)",
        mib(rss_idle)
    );
    println!("{:<40} {:>11}", format!("{n} pollers"), mib(rss_n));
    if let Some(r) = rss_m {
        println!("{:<40} {:>11}  <= 100 MiB", format!("{m} pollers"), mib(r));
    }
    println!();
    println!(
        "/v1/nodes: {on_last} of {} nodes report the last version ACKed",
        n + proxies.len()
    );
    if let Some(l) = loss {
        println!();
        l.print();
        anyhow::ensure!(l.lost() == 0, "requests were lost");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.pollers > 0, "--pollers must be at least 1");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}
