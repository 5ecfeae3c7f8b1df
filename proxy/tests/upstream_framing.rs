//! Upstream HTTP/1.1 response framing through the real proxy (issue #15 finding 4):
//! a response hyper's client would refuse is a 502 `upstream_protocol_error` and its
//! connection is not reused; a `Content-Length` beside `Transfer-Encoding` is not
//! forwarded, so the client reads the whole decoded body. The byte-level
//! comparison with hyper's client is `proxy/src/upstream/http1/differential.rs`.
//! Admission control stays on (the default): nothing here is near its limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxy_to(up: &ScriptedUpstream) -> TestProxy {
    start_proxy(&config_for_endpoints(&[up.endpoint()], "", "")).await
}

#[tokio::test]
async fn a_length_beside_chunked_is_dropped_and_the_whole_body_arrives() {
    let up = ScriptedUpstream::start(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    let p = proxy_to(&up).await;
    for _ in 0..2 {
        let r = get(&p.url("/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "hello world", "not cut at the stale length");
        assert_ne!(r.header("content-length"), "3", "{:?}", r.headers);
    }
    assert_eq!(
        up.connections(),
        1,
        "the chunked response kept its connection"
    );

    // On the wire: one framing only, and it matches the body.
    let mut s = tokio::net::TcpStream::connect(p.addr("public"))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("the proxy closes")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).to_lowercase();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let framings =
        head.matches("content-length:").count() + head.matches("transfer-encoding:").count();
    assert_eq!(framings, 1, "{head}");
    if head.contains("content-length:") {
        assert!(head.contains("content-length: 11"), "{head}");
        assert_eq!(body, "hello world");
    } else {
        assert!(
            body.contains("hello") && body.ends_with("0\r\n\r\n"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn responses_hyper_refuses_are_502_and_their_connection_is_not_reused() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let up = ScriptedUpstream::start(reply).await;
        let p = proxy_to(&up).await;
        let what = String::from_utf8_lossy(reply);
        for _ in 0..2 {
            let r = get(&p.url("/")).await;
            assert_eq!(r.status, 502, "{what}");
            assert_eq!(r.header("x-floodgate-reason"), "upstream_protocol_error", "{what}");
        }
        assert_eq!(up.requests(), 2, "not retried: {what}");
        assert_eq!(up.connections(), 2, "each refused response closed its connection: {what}");
    }
}
