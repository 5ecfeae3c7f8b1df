//! The HTTP/1.1 exchange against scripted upstreams on 127.0.0.1:0 that write
//! raw bytes: framing, interim responses, reuse and the stale-connection cases.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::body::{self, Body};
use crate::config::{EndpointAddr, UpstreamProtocol};
use crate::error::ErrorKind;
use crate::upstream::limits::ConnLimits;
use crate::upstream::pool::{Conn, Pool, PoolSettings, Siblings};

/// `pool::send` holding nothing until the body ends.
fn send(
    conn: Conn,
    req: Request<Body>,
) -> impl Future<Output = Result<crate::upstream::Sent<()>, crate::error::ProxyError>> {
    crate::upstream::pool::send::<()>(conn, req)
}

/// An upstream that runs `script` on every accepted connection.
async fn upstream<F, Fut>(script: F) -> EndpointAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    EndpointAddr {
        host: "127.0.0.1".into(),
        port,
    }
}

/// Reads one request head (up to the blank line) and returns it as text.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

pub(super) fn pool(addr: EndpointAddr) -> Arc<Pool> {
    Arc::new(Pool::new(
        addr,
        Arc::new(PoolSettings {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            max_idle: 8,
            protocol: UpstreamProtocol::Http1,
            tls: None,
            limits: Arc::new(ConnLimits::unlimited()),
            siblings: Siblings::default(),
        }),
    ))
}

/// Sends `req` on a pooled connection of `p`; returns status and the whole body.
async fn fetch(p: &Arc<Pool>, req: Request<Body>) -> Result<(u16, Vec<u8>), String> {
    let conn = p.checkout().await.map_err(|e| e.to_string())?;
    let sent = send(conn, req).await.map_err(|e| e.to_string())?;
    let response = sent.into_response(p, None);
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, body.to_bytes().to_vec()))
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(body::empty()).unwrap()
}

#[tokio::test]
async fn chunked_body_in_pieces_is_decoded_and_the_connection_reused() {
    let addr = upstream(|mut s| async move {
        while read_head(&mut s).await.is_some() {
            let pieces: [&[u8]; 7] = [
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                b"5;ext=1\r\nhel",
                b"lo\r",
                b"\n6\r\n wor",
                b"ld\r\n0\r\n",
                b"x-trailer: 1\r\n",
                b"\r\n",
            ];
            for piece in pieces {
                s.write_all(piece).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
    .await;
    let p = pool(addr);
    for _ in 0..2 {
        let (status, body) = fetch(&p, get("/")).await.unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"hello world"[..]));
    }
    assert_eq!(p.open_connections(), 1, "both requests used one connection");
    assert_eq!(p.idle_connections(), 1);
}

#[tokio::test]
async fn a_response_read_whole_frees_its_connection_before_the_body_is_polled() {
    let addr = upstream(|mut s| async move {
        while read_head(&mut s).await.is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
    })
    .await;
    let p = pool(addr);
    let conn = p.checkout().await.unwrap();
    let sent = send(conn, get("/")).await.unwrap();
    // One write on loopback arrives whole: the head's read brought the body too.
    let response = sent.into_response(&p, None);
    assert_eq!(
        p.idle_connections(),
        1,
        "back in the pool before the body is read"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
}

#[tokio::test]
async fn a_body_until_close_ends_with_the_connection_which_is_not_reused() {
    let addr = upstream(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of it")
            .await
            .unwrap();
        // Dropping the stream closes it: that ends the body.
    })
    .await;
    let p = pool(addr);
    let (status, body) = fetch(&p, get("/")).await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"all of it"[..]));
    assert_eq!(p.idle_connections(), 0);
}

#[tokio::test]
async fn interim_responses_are_skipped_and_connection_close_is_honoured() {
    let addr = upstream(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
              HTTP/1.1 201 Created\r\nconnection: close\r\ncontent-length: 3\r\n\r\nnew",
        )
        .await
        .unwrap();
    })
    .await;
    let p = pool(addr);
    let (status, body) = fetch(&p, get("/")).await.unwrap();
    assert_eq!((status, body.as_slice()), (201, &b"new"[..]));
    assert_eq!(p.idle_connections(), 0, "connection: close is not pooled");
}

#[tokio::test]
async fn a_head_response_has_no_body_even_with_a_length() {
    let addr = upstream(|mut s| async move {
        while read_head(&mut s).await.is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                .await
                .unwrap();
        }
    })
    .await;
    let p = pool(addr);
    let req = Request::head("/").body(body::empty()).unwrap();
    let (status, body) = fetch(&p, req).await.unwrap();
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(p.idle_connections(), 1);
}

#[tokio::test]
async fn malformed_heads_and_lengths_are_upstream_errors() {
    for reply in [
        &b"HTTP/1.1 2OO OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
    ] {
        let addr = upstream(move |mut s| async move {
            read_head(&mut s).await;
            s.write_all(reply).await.unwrap();
        })
        .await;
        let p = pool(addr);
        let conn = p.checkout().await.unwrap();
        let err = send(conn, get("/")).await.err().expect("an error");
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol, "{reply:?}");
    }
}

#[tokio::test]
async fn a_body_cut_short_is_an_error() {
    let addr = upstream(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            .await
            .unwrap();
    })
    .await;
    let p = pool(addr);
    let err = fetch(&p, get("/")).await.unwrap_err();
    assert!(err.contains("middle of the body"), "{err}");
    assert_eq!(p.open_connections(), 0);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_handed_out() {
    let addr = upstream(|mut s| async move {
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        // Close right after one exchange, like an upstream keep-alive timeout.
    })
    .await;
    let p = pool(addr);
    fetch(&p, get("/")).await.unwrap();
    assert_eq!(p.idle_connections(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let conn = p.checkout().await.unwrap();
    assert!(!conn.is_reused(), "the closed connection was retired");
}

#[tokio::test]
async fn a_stale_connection_hands_back_idempotent_requests_only() {
    // Reads each request, then closes without a byte of response.
    let addr = upstream(|mut s| async move {
        read_head(&mut s).await;
    })
    .await;
    let p = pool(addr);
    for (method, handed_back) in [(Method::GET, true), (Method::POST, false)] {
        let conn = p.checkout().await.unwrap();
        let Conn::Http1 { conn, .. } = conn else {
            panic!("an HTTP/1.1 connection");
        };
        let stale = Conn::Http1 { conn, reused: true };
        let req = Request::builder()
            .method(method.clone())
            .uri("/")
            .body(body::empty())
            .unwrap();
        let mut err = send(stale, req).await.err().expect("an error");
        assert_eq!(err.kind(), ErrorKind::UpstreamReset);
        assert_eq!(err.take_unsent().is_some(), handed_back, "{method}");
    }
}

#[tokio::test]
async fn request_bodies_are_sent_with_their_length_or_chunked() {
    // Echoes the raw request (head and body) back as the response body.
    let addr = upstream(|mut s| async move {
        let head = read_head(&mut s).await.unwrap();
        let mut rest = vec![0u8; 4096];
        let want_end: &[u8] = if head.contains("transfer-encoding: chunked") {
            b"0\r\n\r\n"
        } else {
            b"abcdef"
        };
        let mut got = Vec::new();
        while !got.ends_with(want_end) {
            let n = s.read(&mut rest).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&rest[..n]);
        }
        let echo = format!("{head}{}", String::from_utf8_lossy(&got));
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{echo}",
            echo.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
    })
    .await;
    let p = pool(addr);

    let sized = Request::post("/up").body(body::full("abcdef")).unwrap();
    let (_, echo) = fetch(&p, sized).await.unwrap();
    let echo = String::from_utf8(echo).unwrap();
    assert!(echo.starts_with("POST /up HTTP/1.1\r\n"), "{echo}");
    assert!(echo.contains("content-length: 6\r\n"), "{echo}");
    assert!(
        echo.contains("host: 127.0.0.1:"),
        "a Host is always sent: {echo}"
    );
    assert!(echo.ends_with("\r\n\r\nabcdef"), "{echo}");

    let chunks =
        futures_util::stream::iter(["abc", "def"].map(|c| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(c)))
        }));
    let streamed = Request::post("/up")
        .body(Body::new(StreamBody::new(chunks)))
        .unwrap();
    let (_, echo) = fetch(&p, streamed).await.unwrap();
    let echo = String::from_utf8(echo).unwrap();
    assert!(echo.contains("transfer-encoding: chunked\r\n"), "{echo}");
    assert!(
        echo.ends_with("\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"),
        "{echo}"
    );
}

#[test]
fn hop_by_hop_fields_of_a_response_are_dropped_and_their_meaning_kept() {
    let mut buf = bytes::BytesMut::from(
        &b"HTTP/1.0 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
           X-Hop: 1\r\nX-End: 2\r\nTransfer-Encoding: gzip, chunked\r\n\r\nrest"[..],
    );
    let mut heads = bytes::BytesMut::new();
    let mut storage = http::HeaderMap::new();
    let head = super::decode::parse_head(&mut buf, &mut heads, &mut storage)
        .unwrap()
        .unwrap();
    let names: Vec<&str> = head.headers.keys().map(|n| n.as_str()).collect();
    assert_eq!(names, ["x-end"]);
    assert_eq!(head.chunked, Some(true));
    assert!(head.keep_alive);
    assert!(
        super::decode::wants_keep_alive(&head),
        "HTTP/1.0 with keep-alive"
    );
    assert_eq!(&buf[..], b"rest", "the body's bytes stay in the buffer");
}

#[test]
fn content_length_digits_are_written_without_allocating() {
    assert_eq!(super::encode::itoa_buf(0).as_bytes(), b"0");
    assert_eq!(super::encode::itoa_buf(1234567).as_bytes(), b"1234567");
    assert_eq!(
        super::encode::itoa_buf(u64::MAX).as_bytes(),
        u64::MAX.to_string().as_bytes()
    );
}
