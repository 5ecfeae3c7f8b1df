//! The heap a parked connection holds (`listener/park.rs`), counted by dhat's
//! global allocator: many HTTP/1.1 keep-alive connections each make one request and go
//! quiet, and once all are parked the bytes still allocated per connection are
//! compared with a bound; the same for connections that never sent a byte.
//! A count of bytes, not RSS or time: deterministic on any machine. Its own test
//! binary, so no other test allocates while it counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Bytes per connection allocated since `before` (bytes, blocks), printed.
fn per_connection(what: &str, before: (u64, u64), n: usize) -> f64 {
    let now = dhat::HeapStats::get();
    let bytes = (now.curr_bytes as f64 - before.0 as f64) / n as f64;
    let blocks = (now.curr_blocks as f64 - before.1 as f64) / n as f64;
    println!("{what}: {bytes:.0} bytes in {blocks:.2} allocations per connection");
    bytes
}

fn heap() -> (u64, u64) {
    let now = dhat::HeapStats::get();
    (now.curr_bytes as u64, now.curr_blocks as u64)
}

const CONNECTIONS: usize = 400;

fn config(app: &Upstream) -> String {
    format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: heap
    listen: 127.0.0.1:0
    headers: {{ forwarded: false, request_id: false }}
    limits: {{ header_read_timeout: 200ms, idle_timeout: 600s, max_connections: 5000 }}
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["{}"], admission: {{ enabled: false }} }}
"#,
        app.endpoint()
    )
}

/// Opens `n` blocking client connections (no runtime state on the client side);
/// each sends one GET and reads its whole response when `request` is set.
fn open(addr: std::net::SocketAddr, n: usize, request: bool) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            if request {
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                read_response(&mut s);
            }
            s
        })
        .collect()
}

fn read_response(s: &mut std::net::TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("content-length");
        if got.len() >= end + 4 + len {
            return;
        }
    }
}

async fn gauge(p: &TestProxy, name: &str) -> f64 {
    let page = get(&p.admin_url("/metrics")).await.body;
    metric(&page, &format!("{name}{{listener=\"heap\"}}"))
}

/// Waits until every connection counts, then for the allocator to be quiet.
async fn settled(p: &TestProxy, name: &str, at_least: f64) {
    eventually(Duration::from_secs(20), name, || async {
        gauge(p, name).await >= at_least
    })
    .await;
    // Past the watchdog tick (100 ms) that follows, so nothing is in motion.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Opens [`CONNECTIONS`] more connections (each making one request when `request`
/// is set), waits until the metric `until` reaches its count, and returns them with
/// the bytes allocated per connection since they were opened.
async fn held(
    p: &TestProxy,
    what: &str,
    request: bool,
    until: (&str, usize),
) -> (Vec<std::net::TcpStream>, f64) {
    let addr = p.addr("heap");
    let before = heap();
    let streams = tokio::task::spawn_blocking(move || open(addr, CONNECTIONS, request))
        .await
        .unwrap();
    settled(p, until.0, until.1 as f64).await;
    (streams, per_connection(what, before, CONNECTIONS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_holds_little_heap() {
    // With DHAT_PROFILE set, dhat-heap.json holds the allocations still live at
    // the end, with their backtraces (view it with dhat's viewer).
    let profiler = if std::env::var_os("DHAT_PROFILE").is_some() {
        dhat::Profiler::new_heap()
    } else {
        dhat::Profiler::builder().testing().build()
    };
    let app = upstream("app").await;
    let p = start_proxy(&config(&app)).await;
    let addr = p.addr("heap");
    // Warm-up: the upstream pool, the metrics' label sets, the runtime's slabs.
    let warm = tokio::task::spawn_blocking(move || open(addr, 20, true))
        .await
        .unwrap();
    settled(&p, "floodgate_listener_parks_total", 20.0).await;
    drop(warm);
    settled(&p, "floodgate_listener_parks_total", 20.0).await;

    let (parked, per_parked) = held(
        &p,
        "parked after one request",
        true,
        ("floodgate_listener_parks_total", 20 + CONNECTIONS),
    )
    .await;
    let (silent, per_silent) = held(
        &p,
        "never sent a byte",
        false,
        ("floodgate_downstream_connections", 2 * CONNECTIONS),
    )
    .await;
    assert_eq!(app.hits(), 20 + CONNECTIONS);
    drop(profiler);
    drop((parked, silent));
    assert!(per_parked > 0.0 && per_silent > 0.0);
    assert!(
        per_parked <= 1800.0,
        "a parked connection holds {per_parked:.0} bytes"
    );
    assert!(
        per_silent <= 1800.0,
        "a silent connection holds {per_silent:.0} bytes"
    );
}
