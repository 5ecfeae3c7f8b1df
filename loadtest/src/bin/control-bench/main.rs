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

mod control;
mod lossless;
mod pollers;
mod real;
mod rows;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use http::Method;
use serde_json::json;
use tokio::sync::mpsc;

use control::{
    call, group_version, start_control, wait_control, write_group, ControlPlane, TempDir,
};
use pollers::{add_pollers, round, Acked};
use rows::{print_latency, rows_for, Due, Measured, Row};

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

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = TempDir(std::env::temp_dir().join(format!("control-bench-{}", std::process::id())));
    let static_upstream = real::Upstream::start("static".into()).await?;
    let mut cp = start_control(
        args.control_bin.as_deref(),
        &args.debounce,
        &dir.0,
        static_upstream.addr,
    )?;
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
