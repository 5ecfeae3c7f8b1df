//! Bad input gets a clear 4xx and never a panic or a hang: malformed requests,
//! oversized heads, slow clients; and the proxy keeps serving afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes raw bytes and reads until the server closes or 5 s pass.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn config(app: &Upstream) -> String {
    format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    limits: {{ header_read_timeout: 500ms, max_header_bytes: 8KiB, idle_timeout: 1s }}
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["{}"] }}
"#,
        app.endpoint()
    )
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app)).await;
    let addr = p.addr("public");
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let out = raw(addr, bad).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{bad:?} → {out:?}");
    }
    assert_eq!(app.hits(), 0);
    assert_eq!(get(&p.url("/ok")).await.status, 200, "still serving");
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app)).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let out = raw(p.addr("public"), big.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out:?}");
    assert_eq!(app.hits(), 0);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app)).await;
    let mut s = TcpStream::connect(p.addr("public")).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Never finish the head: the proxy must give up after header_read_timeout.
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "connection not closed within 5 s");
    assert!(start.elapsed() < Duration::from_secs(4));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_trickled_head_is_cut_off_and_later_requests_each_get_the_full_timeout() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app)).await;
    let mut s = TcpStream::connect(p.addr("public")).await.unwrap();
    // Whole requests 300 ms apart on one keep-alive connection: 1.5 s in all, three
    // header timeouts, yet every head on its own arrives at once.
    let mut buf = vec![0u8; 4096];
    for _ in 0..5 {
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then one head a byte every 100 ms (slowloris): the connection is closed
    // within 1.5 × the header timeout of its first byte, well before it ends.
    let start = Instant::now();
    let head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("unexpected answer {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("trickled head never cut off");
    assert!(
        closed_after >= Duration::from_millis(450),
        "{closed_after:?}"
    );
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
    assert_eq!(app.hits(), 5, "the trickled request never reached the app");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let app = upstream("app").await;
    let p = start_proxy(&config(&app)).await;
    let mut s = TcpStream::connect(p.addr("public")).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let start = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection still open after 5 s");
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    let app = upstream("app").await;
    let yaml = config(&app).replace(
        "idle_timeout: 1s }",
        "idle_timeout: 1s, max_request_body_bytes: 1KiB }",
    );
    let p = start_proxy(&yaml).await;
    let chunk = "a".repeat(2048);
    let req = format!(
        "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let out = raw(p.addr("public"), req.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 413") || out.starts_with("HTTP/1.1 502"),
        "a body past the limit is refused: {out:?}"
    );
    assert_eq!(get(&p.url("/ok")).await.status, 200, "still serving");
}

/// Two upstreams behind two virtual hosts of one listener.
async fn two_hosts() -> (Upstream, Upstream, TestProxy) {
    let public = upstream("public").await;
    let admin = upstream("admin").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - {{ name: public, match: {{ host: public.test }}, cluster: public }}
      - {{ name: admin, match: {{ host: admin.test }}, cluster: admin }}
clusters:
  - {{ name: public, endpoints: ["{}"] }}
  - {{ name: admin, endpoints: ["{}"] }}
"#,
        public.endpoint(),
        admin.endpoint()
    );
    let p = start_proxy(&yaml).await;
    (public, admin, p)
}

#[tokio::test]
async fn a_request_is_routed_and_forwarded_by_one_authority() {
    let (public, admin, p) = two_hosts().await;
    let addr = p.addr("public");
    // Absolute-form: the target's authority replaces Host (RFC 9112 §3.2.2), so
    // the app behind `public.test` is not told it was asked as `admin.test`.
    let out = raw(
        addr,
        b"GET http://public.test/x HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(r#""host":"public.test""#), "{out}");
    assert_eq!((public.hits(), admin.hits()), (1, 0));
    // Two Host lines, a missing Host on HTTP/1.1, a Host that is no authority: 400,
    // never forwarded.
    for bad in [
        &b"GET /x HTTP/1.1\r\nHost: public.test\r\nHost: admin.test\r\nConnection: close\r\n\r\n"[..],
        b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: public.test/../admin\r\nConnection: close\r\n\r\n",
    ] {
        let out = raw(addr, bad).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{bad:?} → {out}");
        assert!(out.contains("x-floodgate-reason: bad_request"), "{out}");
    }
    assert_eq!((public.hits(), admin.hits()), (1, 0));
    // HTTP/2: `:authority` and a `host` field naming another host are malformed.
    let url = format!("http://public.test:{}/x", addr.port());
    let conflict = http::Request::get(&url)
        .header("host", "admin.test")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    // An h2c connection to the proxy, whatever the authority says.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let r = sender.send_request(conflict).await.unwrap();
    assert_eq!(r.status(), 400);
    let same = http::Request::get(&url)
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let r = sender.send_request(same).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!((public.hits(), admin.hits()), (2, 0));
}

#[tokio::test]
async fn the_proxys_own_headers_are_not_taken_from_clients_or_upstreams() {
    let app = upstream("app").await;
    app.set(Behavior {
        headers: vec![
            ("x-floodgate-reason", "circuit_open"),
            ("x-floodgate-cache", "hit"),
        ],
        ..Behavior::default()
    });
    let p = start_proxy(&config(&app)).await;
    let client = client();
    let req = http::Request::get(p.url("/x"))
        .header("x-floodgate-priority", "critical")
        .header("x-floodgate-internal", "yes")
        .body(http_body_util::Full::default())
        .unwrap();
    let r = send(&client, req).await;
    assert_eq!(r.status, 200);
    // The upstream saw none of the client's x-floodgate-* fields ...
    let seen = r.json()["headers"].clone();
    assert!(seen.get("x-floodgate-priority").is_none(), "{seen}");
    assert!(seen.get("x-floodgate-internal").is_none(), "{seen}");
    // ... and the client none of the upstream's.
    assert!(
        r.headers.get("x-floodgate-reason").is_none(),
        "{:?}",
        r.headers
    );
    assert!(
        r.headers.get("x-floodgate-cache").is_none(),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("x-upstream"), "app");
}

#[tokio::test]
async fn an_upstream_that_goes_silent_mid_body_is_cut_off_by_read_timeout() {
    // Sends the head and 10 of 100 body bytes, then nothing for 30 s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes: [ {{ name: all, cluster: app, timeout: 10s }} ]
clusters:
  - {{ name: app, endpoints: ["{up}"], read_timeout: 300ms }}
"#
    );
    let p = start_proxy(&yaml).await;
    let start = Instant::now();
    let out = raw(
        p.addr("public"),
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let took = start.elapsed();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.ends_with("0123456789"),
        "the client got what was sent: {out}"
    );
    // Cut off after about the read timeout: the connection closes, so the client
    // sees a truncated body instead of waiting for the upstream forever.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_by_send_timeout() {
    const BIG: usize = 64 << 20;
    // An upstream with a 64 MiB answer, written as fast as the proxy takes it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let chunk = vec![b'a'; 1 << 16];
                for _ in 0..BIG / chunk.len() {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    limits: {{ send_timeout: 300ms }}
    routes: [ {{ name: all, cluster: app }} ]
clusters:
  - {{ name: app, endpoints: ["{up}"] }}
"#
    );
    let p = start_proxy(&yaml).await;
    let mut s = TcpStream::connect(p.addr("public")).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Read nothing for longer than the send timeout: the proxy's writes block.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    // What the socket buffers held, and then the close: far from the whole body.
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got.len() < BIG / 2, "read {} bytes: not cut off", got.len());
    assert_eq!(get(&p.url("/ok")).await.status, 200, "still serving");
}

#[tokio::test]
async fn dot_segments_are_resolved_before_routing_and_forwarding() {
    let api = upstream("api").await;
    let yaml = format!(
        r#"
server: {{ access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes: [ {{ name: api, match: {{ path_prefix: /api/ }}, cluster: api }} ]
clusters:
  - {{ name: api, endpoints: ["{}"] }}
"#,
        api.endpoint()
    );
    let p = start_proxy(&yaml).await;
    for sneaky in ["/api/../admin", "/api/%2e%2e/admin", "/api/.%2E/admin"] {
        let req = format!("GET {sneaky} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = raw(p.addr("public"), req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 404"), "{sneaky} → {out}");
    }
    assert_eq!(api.hits(), 0, "nothing reached the api upstream");
    // Inside the prefix it is forwarded normalised.
    let out = raw(
        p.addr("public"),
        b"GET /api/v1/./codes/../codes/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.contains(r#""path":"/api/v1/codes/42""#), "{out}");
}
