//! Idle HTTP/1.1 keep-alive connections are parked (hyper's buffers and state let
//! go, `listener/park.rs`) and served again when bytes arrive: the next request is
//! answered, pipelined requests across the park are answered in order, and the
//! idle timeout and the drain still close parked connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One listener `name` with a short head deadline (`header`), so the watchdog
/// ticks every `header / 2` and a quiet connection is parked within `header`.
fn config(app: &Upstream, name: &str, header: &str, idle_timeout: &str) -> String {
    format!(
        r#"
server: {{ access_log: false, drain_timeout: 30s }}
listeners:
  - name: {name}
    listen: 127.0.0.1:0
    headers: {{ forwarded: false, request_id: false }}
    limits: {{ header_read_timeout: {header}, idle_timeout: {idle_timeout} }}
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["{}"] }}
"#,
        app.endpoint()
    )
}

async fn metrics(p: &TestProxy) -> String {
    get(&p.admin_url("/metrics")).await.body
}

async fn parks(p: &TestProxy, listener: &str) -> f64 {
    metric(
        &metrics(p).await,
        &format!("floodgate_listener_parks_total{{listener=\"{listener}\"}}"),
    )
}

/// Waits until the listener has parked `n` connections in all.
async fn parked(p: &TestProxy, listener: &str, n: f64) {
    eventually(Duration::from_secs(10), "connection parked", || async {
        parks(p, listener).await >= n
    })
    .await;
}

/// Reads whole responses (each with `content-length`) until `n` have arrived;
/// returns their bodies in order.
async fn read_responses(s: &mut TcpStream, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let mut bodies = Vec::new();
    let mut buf = [0u8; 4096];
    while bodies.len() < n {
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(read > 0, "closed after {} responses", bodies.len());
        got.extend_from_slice(&buf[..read]);
        while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(!head.contains("connection: close"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("content-length");
            if got.len() < end + 4 + len {
                break;
            }
            bodies.push(String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned());
            got.drain(..end + 4 + len);
        }
    }
    assert!(got.is_empty(), "stray bytes {got:?}");
    bodies
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

#[tokio::test]
async fn a_parked_connection_serves_its_next_request() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app, "park_next", "200ms", "60s")).await;
    let mut s = TcpStream::connect(p.addr("park_next")).await.unwrap();
    for (i, path) in ["/one", "/two", "/three"].into_iter().enumerate() {
        s.write_all(get_req(path).as_bytes()).await.unwrap();
        let bodies = read_responses(&mut s, 1).await;
        assert!(
            bodies[0].contains(&format!("\"path\":\"{path}\"")),
            "{bodies:?}"
        );
        // Quiet now: parked once more than before, then woken by the next request.
        parked(&p, "park_next", (i + 1) as f64).await;
    }
    assert_eq!(app.hits(), 3);
}

#[tokio::test]
async fn pipelined_requests_across_the_park_are_answered_in_order() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app, "park_pipe", "2s", "60s")).await;
    let mut s = TcpStream::connect(p.addr("park_pipe")).await.unwrap();
    s.write_all(get_req("/first").as_bytes()).await.unwrap();
    read_responses(&mut s, 1).await;
    parked(&p, "park_pipe", 1.0).await;
    // Three requests at once into a parked connection (which reads a few bytes
    // itself and hands them to hyper), the last one unfinished.
    let burst = format!("{}{}GET /d HTTP/1.1\r\nHo", get_req("/b"), get_req("/c"));
    s.write_all(burst.as_bytes()).await.unwrap();
    let bodies = read_responses(&mut s, 2).await;
    assert!(bodies[0].contains("\"path\":\"/b\""), "{bodies:?}");
    assert!(bodies[1].contains("\"path\":\"/c\""), "{bodies:?}");
    // The unfinished head arrived while /b was in flight: it stays in hyper's buffer
    // and is handed back when the connection is parked again (served again at once,
    // its head deadline of 2 s running from then); then it is finished.
    parked(&p, "park_pipe", 2.0).await;
    s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let last = read_responses(&mut s, 1).await;
    assert!(last[0].contains("\"path\":\"/d\""), "{last:?}");
    assert_eq!(app.hits(), 4);
}

#[tokio::test]
async fn the_idle_timeout_closes_a_parked_connection() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app, "park_idle", "200ms", "1s")).await;
    let mut s = TcpStream::connect(p.addr("park_idle")).await.unwrap();
    s.write_all(get_req("/a").as_bytes()).await.unwrap();
    read_responses(&mut s, 1).await;
    parked(&p, "park_idle", 1.0).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "parked idle connection still open after 10 s"
    );
    assert!(rest.is_empty(), "{rest:?}");
    let page = metrics(&p).await;
    assert_eq!(
        metric(
            &page,
            "floodgate_listener_connections_closed_total{listener=\"park_idle\",reason=\"idle\"}"
        ),
        1.0,
        "{page}"
    );
}

#[tokio::test]
async fn the_drain_closes_parked_connections_at_once() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app, "park_drain", "200ms", "60s")).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(p.addr("park_drain")).await.unwrap();
        s.write_all(get_req("/a").as_bytes()).await.unwrap();
        read_responses(&mut s, 1).await;
        idle.push(s);
    }
    parked(&p, "park_drain", 3.0).await;
    // drain_timeout is 30 s: the drain ends long before unless the parked
    // connections close as soon as it starts.
    tokio::time::timeout(Duration::from_secs(10), p.proxy.drain())
        .await
        .expect("the drain waited for parked connections");
    for mut s in idle {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "a parked connection still open after the drain"
        );
        assert!(rest.is_empty(), "{rest:?}");
    }
}
