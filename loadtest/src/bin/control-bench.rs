//! `control-bench`: how fast `floodgate-control` pushes, and how much memory it holds.
//!
//! Starts the real `floodgate-control` binary on loopback with a temporary configs
//! directory, connects N simulated proxies (light async long-pollers in this process,
//! each a node of group `bench` that ACKs every version it gets), then measures
//!
//! - **push**: K times, rewrite the group file; from the write to each poller's ACK
//!   of the new version (the source's debounce is part of it);
//! - **registration**: K times, `POST /v1/endpoints`; from the request to each poller's
//!   ACK of the version that carries the endpoint; then the same for the `DELETE`;
//! - **RSS** of the control plane (VmRSS from `/proc/PID/status`): idle, with N
//!   pollers, and with `--rss-pollers` pollers (plus a few pushes at that scale).
//!
//! Loopback only, bounded in count and time; the control plane is stopped by its PID
//! (the child handle) and the temporary directory removed. See `loadtest/README.md`.

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
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
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

fn group_yaml(endpoint_port: u32) -> String {
    format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: bench }} ]\n\
         clusters:\n  - name: bench\n    endpoints: [\"127.0.0.1:{endpoint_port}\"]\n"
    )
}

/// Writes the group file atomically (a hidden temp file, which the watcher skips, then a rename).
fn write_group(dir: &Path, endpoint_port: u32) -> anyhow::Result<()> {
    let tmp = dir.join(".bench.yaml.tmp");
    std::fs::write(&tmp, group_yaml(endpoint_port))?;
    std::fs::rename(&tmp, dir.join("bench.yaml"))?;
    Ok(())
}

fn start_control(args: &Args, dir: &Path) -> anyhow::Result<ControlPlane> {
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
    write_group(&groups, 20_000)?;
    // A free port, released for the control plane to bind (loopback, a tiny window).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = dir.join("control.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {addr}\nconfigs_dir: groups\n\
             tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
             source: {{ debounce: {} }}\n",
            args.debounce
        ),
    )?;
    let log = std::fs::File::create(dir.join("control.log"))?;
    let child = Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(ControlPlane { child, addr })
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

async fn pushes(
    dir: &Path,
    changes: usize,
    first_port: u32,
    pollers: usize,
    mut version: u64,
    timeout: Duration,
    rx: &mut mpsc::UnboundedReceiver<Acked>,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let mut all = Vec::new();
    for k in 0..changes {
        // Let every poller park in its long poll again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = Instant::now();
        write_group(dir, first_port + k as u32)?;
        let (lat, new) = round(rx, pollers, Some(version), t0, timeout).await;
        all.extend(lat);
        version = new.unwrap_or(version);
    }
    Ok((all, version))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = TempDir(std::env::temp_dir().join(format!("control-bench-{}", std::process::id())));
    let cp = start_control(&args, &dir.0)?;
    let groups = dir.0.join("groups");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((StatusCode::OK, g)) =
            call(cp.addr, Method::GET, "/v1/groups", OPERATOR, None).await
        {
            if g["groups"][0]["version"].as_u64().is_some() {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the control plane did not come up; see {}",
            dir.0.join("control.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = cp.rss_kib()?;
    println!(
        "control-bench: floodgate-control pid {} on {}, {} pollers, debounce {}",
        cp.child.id(),
        cp.addr,
        args.pollers,
        args.debounce
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let n = args.pollers;
    let mut version = add_pollers(cp.addr, 0, n, &tx, &mut rx).await?;
    let rss_n = cp.rss_kib()?;
    let mut rows = Vec::new();

    let (push, v) = pushes(
        &groups,
        args.changes,
        20_001,
        n,
        version,
        args.round_timeout,
        &mut rx,
    )
    .await?;
    version = v;
    rows.push(Row {
        name: format!("push: file write -> ACK ({n} pollers)"),
        expected: n * args.changes,
        latencies: push,
        goal: "p99 <= 100ms",
    });

    let (mut reg, mut dereg) = (Vec::new(), Vec::new());
    for k in 0..args.registrations {
        let address = format!("127.0.0.1:{}", 30_000 + k);
        for (register, sink) in [(true, &mut reg), (false, &mut dereg)] {
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
            let (status, answer) = call(cp.addr, method, "/v1/endpoints", APP, Some(body)).await?;
            anyhow::ensure!(status.is_success(), "registry refused: {status} {answer}");
            let (lat, new) = round(&mut rx, n, Some(version), t0, args.round_timeout).await;
            sink.extend(lat);
            version = new.unwrap_or(version);
        }
    }
    rows.push(Row {
        name: "registration -> ACK of its snapshot".into(),
        expected: n * args.registrations,
        latencies: reg,
        goal: "p99 <= 100ms",
    });
    rows.push(Row {
        name: "deregistration -> ACK of its snapshot".into(),
        expected: n * args.registrations,
        latencies: dereg,
        goal: "",
    });

    let (_, nodes) = call(cp.addr, Method::GET, "/v1/nodes", OPERATOR, None).await?;
    let on_last = nodes["nodes"]
        .as_array()
        .map(|a| a.iter().filter(|x| x["version"] == version).count())
        .unwrap_or(0);

    let mut rss_m = None;
    let m = args.rss_pollers;
    if m > n {
        add_pollers(cp.addr, n, m, &tx, &mut rx).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_m = Some(cp.rss_kib()?);
        let (scale, _) = pushes(
            &groups,
            args.scale_changes,
            21_001,
            m,
            version,
            args.round_timeout,
            &mut rx,
        )
        .await?;
        rows.push(Row {
            name: format!("push: file write -> ACK ({m} pollers)"),
            expected: m * args.scale_changes,
            latencies: scale,
            goal: "",
        });
    }

    println!();
    print_latency(&rows);
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
    println!("/v1/nodes: {on_last} of {n} nodes report the last version ACKed");
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
