//! File-descriptor exhaustion: the proxy's `RLIMIT_NOFILE` lowered to 128 (with
//! `prlimit` on the running process: the workspace forbids the unsafe `pre_exec`),
//! then more idle connections opened than it has descriptors.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::check::{cpu_time, Expect};
use super::load::{self, Stream};
use super::setup::{Cfg, Proxy};
use crate::common::upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_no_crash_no_busy_loop_service_resumes() {
    let app = upstream("normal").await;
    let p = Proxy::start(
        &Cfg {
            normal: vec![app.endpoint()],
            ..Cfg::default()
        }
        .text(),
    )
    .await;
    let pid = p.bin.pid();
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg("--nofile=128:128")
        .status()
        .expect("prlimit runs");
    assert!(limited.success(), "prlimit --nofile=128 failed");
    let addr = p.bin.listeners["public"];
    let mut episode = (Duration::ZERO, Duration::ZERO);
    let fault = async {
        // Let normal traffic start, then hold 300 idle connections for 1.5 s.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cpu_before = cpu_time(pid);
        let start = Instant::now();
        let mut held = Vec::new();
        for _ in 0..300 {
            if let Ok(s) = TcpStream::connect(addr).await {
                held.push(s);
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        episode = (cpu_time(pid) - cpu_before, start.elapsed());
        drop(held);
    };
    // Fresh connections, so every request needs a descriptor of its own.
    let mut normal = Stream::normal(p.url("/normal/x"), 450, 150);
    normal.fresh_connections = true;
    let expect = Expect {
        min_normal_success: 0.0,
        ..Expect::default()
    };
    let (report, ()) = p
        .case(
            "fd exhaustion (ulimit -n 128, 300 idle connections)",
            vec![normal],
            fault,
            expect,
        )
        .await;
    assert!(
        !p.bin.log_lines("accept failed").is_empty(),
        "the descriptor limit was reached"
    );
    let (cpu, wall) = episode;
    println!("fd exhaustion: the proxy used {cpu:?} of CPU over {wall:?} of exhaustion");
    assert!(
        cpu < wall / 2,
        "no busy loop: {cpu:?} of CPU over {wall:?} of exhaustion"
    );
    // Service resumes: the last requests, sent after the crowd left, all succeed.
    let (_, _, outcomes) = &report.streams[0];
    let tail = &outcomes[outcomes.len() - 50..];
    assert!(tail.iter().all(load::is_success), "{tail:?}");
    assert!(
        p.bin.log_lines("accept failed").len() < 200,
        "accept errors back off"
    );
}
