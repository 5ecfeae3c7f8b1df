//! Differential tests: the same upstream response bytes go to hyper's client
//! (`hyper::client::conn::http1` over an in-memory duplex, on paused time) and to
//! Floodgate's exchange (a real pool over loopback TCP); both must agree on
//! whether the response is accepted, its status, the body bytes delivered, how
//! the body ends, and whether the connection may carry another request.
//!
//! The module sits beside the decoder rather than in `proxy/tests/` so that it
//! drives the real exchange (`pool::send`, `Http1Body`) without making the
//! upstream client public for tests. Two sets of inputs: hand-written byte
//! streams (every case of issue #15 finding 4 and the ordinary ones), and a
//! `proptest` generator of mutations of valid responses (`PROPTEST_CASES`,
//! default 256). Floodgate differs from hyper on purpose in one place: a `101`
//! the proxy did not ask for is refused, where hyper hands it to the caller as an
//! upgrade.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::body;
use crate::config::EndpointAddr;

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Complete,
    Error,
}

/// What a client made of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// No response: the head was refused (or never completed).
    Rejected,
    /// A response: status, the body bytes delivered, how the body ended, and
    /// whether the connection can be used again.
    Answered {
        status: u16,
        body: Vec<u8>,
        end: End,
        reusable: bool,
    },
}

/// Patience on paused time: a wait this long means nothing can move any more.
const STUCK: Duration = Duration::from_secs(30);
/// The second response, sent when a client reuses the connection.
const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// Reads one request head (up to the blank line); `false` at the end of stream.
async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// What hyper's client makes of `bytes` as the answer to `method`.
fn hyper_outcome(bytes: &[u8], method: &Method) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(hyper_exchange(bytes.to_vec(), method.clone()))
}

/// Runs `fut`; when everything is stuck, closes the upstream's side once (so a
/// body that ends with the connection can end) and waits again; `None` if still stuck.
async fn patiently<F: Future>(
    close: &mut Option<oneshot::Sender<()>>,
    fut: F,
) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    loop {
        match tokio::time::timeout(STUCK, &mut fut).await {
            Ok(out) => return Some(out),
            Err(_) => match close.take() {
                Some(tx) => {
                    let _ = tx.send(());
                }
                None => return None,
            },
        }
    }
}

fn request(method: Method) -> Request<Empty<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/")
        .header(http::header::HOST, "upstream")
        .body(Empty::new())
        .unwrap()
}

async fn hyper_exchange(bytes: Vec<u8>, method: Method) -> Outcome {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let (close_tx, mut close_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if !read_head(&mut server).await {
            return;
        }
        let _ = server.write_all(&bytes).await;
        tokio::select! {
            _ = &mut close_rx => return,
            again = read_head(&mut server) => if again {
                let _ = server.write_all(SECOND).await;
            },
        }
        let _ = close_rx.await;
    });
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut close = Some(close_tx);
    let response = match patiently(&mut close, sender.send_request(request(method))).await {
        Some(Ok(response)) => response,
        _ => return Outcome::Rejected,
    };
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut data = Vec::new();
    let end = loop {
        match patiently(&mut close, body.frame()).await {
            Some(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    data.extend_from_slice(d);
                }
            }
            Some(None) => break End::Complete,
            Some(Some(Err(_))) | None => break End::Error,
        }
    };
    let mut reusable = false;
    if end == End::Complete && close.is_some() {
        if let Some(Ok(())) = patiently(&mut close, sender.ready()).await {
            let second = patiently(&mut close, async {
                let response = sender.send_request(request(Method::GET)).await.ok()?;
                let body = response.into_body().collect().await.ok()?;
                Some(body.to_bytes())
            })
            .await;
            reusable = close.is_some() && matches!(second, Some(Some(b)) if &b[..] == b"ok");
        }
    }
    Outcome::Answered {
        status,
        body: data,
        end,
        reusable,
    }
}

/// What Floodgate's exchange makes of `bytes` as the answer to `method`: an
/// upstream on loopback writes them and closes; the connection was reusable if the
/// body's end put it back in the pool.
async fn floodgate_outcome(bytes: &[u8], method: &Method) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bytes = bytes.to_vec();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        if read_head(&mut s).await {
            let _ = s.write_all(&bytes).await;
        }
        let _ = s.shutdown().await;
    });
    let p = super::tests::pool(EndpointAddr {
        host: "127.0.0.1".into(),
        port,
    });
    let req = Request::builder()
        .method(method.clone())
        .uri("/")
        .body(body::empty())
        .unwrap();
    let conn = p.checkout().await.unwrap();
    let outcome = match crate::upstream::pool::send::<()>(conn, req).await {
        Err(_) => Outcome::Rejected,
        Ok(sent) => {
            let response = sent.into_response(&p, None);
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut data = Vec::new();
            let end = loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(d) = frame.data_ref() {
                            data.extend_from_slice(d);
                        }
                    }
                    None => break End::Complete,
                    Some(Err(_)) => break End::Error,
                }
            };
            Outcome::Answered {
                status,
                body: data,
                end,
                reusable: p.idle_connections() == 1,
            }
        }
    };
    let _ = server.await;
    outcome
}

/// The outcome Floodgate must have, given hyper's.
fn expected(hyper: Outcome) -> Outcome {
    match hyper {
        // An upgrade the proxy did not ask for is refused.
        Outcome::Answered { status: 101, .. } => Outcome::Rejected,
        other => other,
    }
}

/// Runs one case through both clients; the description of a disagreement, if any.
fn disagreement(rt: &tokio::runtime::Runtime, bytes: &[u8], method: &Method) -> Option<String> {
    let hyper = hyper_outcome(bytes, method);
    let ours = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), floodgate_outcome(bytes, method)).await
    });
    let ours = match ours {
        Ok(ours) => ours,
        Err(_) => {
            return Some(format!(
                "{method} {:?}: Floodgate hung",
                String::from_utf8_lossy(bytes)
            ))
        }
    };
    let want = expected(hyper.clone());
    (ours != want).then(|| {
        format!(
            "{method} {:?}\n  hyper:     {hyper:?}\n  floodgate: {ours:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Hand-written responses: issue #15 finding 4, and the ordinary framings.
const CASES: &[&[u8]] = &[
    // Finding 4: CL beside chunked (the chunked coding wins, the length is dropped).
    b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: junk\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    // Finding 4: a signed or spaced length.
    b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length:  5 \r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 0x5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\nhello",
    // Duplicate lengths: equal, equal in one list, unequal.
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 4\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5,\r\n\r\nhello",
    // Finding 4: bare LF line ends (httparse with hyper's settings accepts them).
    b"HTTP/1.1 200 OK\ncontent-length: 5\n\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\r\nhello",
    // Finding 4: HTTP/1.0 with Transfer-Encoding.
    b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\ntransfer-encoding: gzip\r\n\r\nraw",
    b"HTTP/1.0 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n",
    // Chunked: extensions, trailers, whitespace, bad sizes, huge sizes.
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6 ; q=\"x\"\r\n world\r\n0\r\nx-trailer: 1\r\nx-other: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0000000000000000005\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\nhello",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\nhello",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    // Transfer codings: chunked last is chunked; otherwise the body runs to the close.
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\nraw",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\n\r\nraw",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding:\r\n\r\nraw",
    // Close-delimited, bodiless statuses, interim responses.
    b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
    b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    // Malformed heads: obs-fold, a space before the colon, garbage, a cut head.
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-folded: a\r\n b\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\nok",
    b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n",
    b"garbage\r\n\r\n",
    // Bytes past the end of a response: the connection is out of step.
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel",
];

/// `Answered` shorthand.
fn answered(status: u16, body: &[u8], end: End, reusable: bool) -> Outcome {
    Outcome::Answered {
        status,
        body: body.to_vec(),
        end,
        reusable,
    }
}

#[test]
fn the_harness_reads_hyper_as_documented() {
    // Anchors: what hyper's client does with finding 4's cases, so the comparison
    // below cannot pass by both sides failing the same way.
    let get = |bytes: &[u8]| hyper_outcome(bytes, &Method::GET);
    let hello = answered(200, b"hello", End::Complete, true);
    assert_eq!(get(CASES[0]), hello, "CL + chunked: chunked wins");
    assert_eq!(get(CASES[3]), Outcome::Rejected, "Content-Length: +5");
    assert_eq!(
        get(b"HTTP/1.1 200 OK\ncontent-length: 5\n\nhello"),
        hello,
        "bare LF"
    );
    assert_eq!(
        get(CASES[17]),
        Outcome::Rejected,
        "HTTP/1.0 with Transfer-Encoding"
    );
    assert_eq!(
        get(b"HTTP/1.1 200 OK\r\n\r\nuntil the close"),
        answered(200, b"until the close", End::Complete, false)
    );
    assert_eq!(
        get(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA"),
        answered(200, b"ok", End::Complete, false)
    );
    assert_eq!(
        get(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel"),
        answered(200, b"hel", End::Error, false)
    );
}

#[test]
fn hand_written_responses_get_what_hyper_gives() {
    let rt = runtime();
    let mut failures = Vec::new();
    for case in CASES {
        for method in [Method::GET, Method::HEAD] {
            failures.extend(disagreement(&rt, case, &method));
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Valid responses the generator mutates.
const SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n1\r\n!\r\n0\r\nt: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 2, 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
];

/// Bytes the mutations insert: separators, signs, whitespace, digits, non-ASCII.
const INSERTS: &[u8] = b" \t+-,;:0159aAfF\r\n\x00\x7f\x80\xff\"=";

/// One edit of a byte stream.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replaces the line end at this index (of all of them) by one of LF, CR, LFCR, CRCRLF.
    LineEnd(prop::sample::Index, u8),
    /// Inserts one of [`INSERTS`] at a position.
    Insert(prop::sample::Index, prop::sample::Index),
    /// Deletes the byte at a position.
    Delete(prop::sample::Index),
    /// Duplicates the header line at this index.
    Duplicate(prop::sample::Index),
    /// Cuts the stream at a position.
    Truncate(prop::sample::Index),
    /// Appends bytes after the response.
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0u8..4).prop_map(|(i, k)| Mutation::LineEnd(i, k)),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        any::<prop::sample::Index>().prop_map(Mutation::Duplicate),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(prop::sample::select(INSERTS.to_vec()), 1..4)
            .prop_map(Mutation::Append),
    ]
}

/// Positions of every `\r\n` in `bytes`.
fn line_ends(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\r\n")
        .map(|(i, _)| i)
        .collect()
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::LineEnd(i, kind) => {
            let ends = line_ends(bytes);
            if ends.is_empty() {
                return;
            }
            let at = *i.get(&ends);
            let with: &[u8] = [&b"\n"[..], b"\r", b"\n\r", b"\r\r\n"][usize::from(*kind)];
            bytes.splice(at..at + 2, with.iter().copied());
        }
        Mutation::Insert(at, b) => {
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, *b.get(INSERTS));
        }
        Mutation::Delete(at) => {
            let at = at.index(bytes.len());
            bytes.remove(at);
        }
        Mutation::Duplicate(i) => {
            let ends = line_ends(bytes);
            if ends.len() < 3 {
                return;
            }
            // Header lines: between the status line's end and the head's end.
            let k = 1 + i.index(ends.len() - 2);
            let line = bytes[ends[k - 1] + 2..ends[k] + 2].to_vec();
            let at = ends[k] + 2;
            bytes.splice(at..at, line);
        }
        Mutation::Truncate(at) => {
            let at = at.index(bytes.len());
            bytes.truncate(at.max(1));
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
    }
}

fn response() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (
        prop::sample::select(SEEDS.to_vec()),
        prop::collection::vec(mutation(), 0..4),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(seed, mutations, head)| {
            let mut bytes = seed.to_vec();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            (bytes, head)
        })
}

/// `PROPTEST_CASES` cases (256 when unset, as `ProptestConfig::default()` reads
/// it), no regression files written.
fn cases() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Chunked bodies the second generator mutates (behind a fixed, valid head).
const CHUNKED_SEEDS: &[&[u8]] = &[
    b"5\r\nhello\r\n0\r\n\r\n",
    b"3;a=b\r\nabc\r\n2 ; c\r\nde\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\nx-t: 1\r\ny-t: 2\r\n\r\n",
    b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0;end\r\n\r\n",
];

fn chunked_response() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(CHUNKED_SEEDS.to_vec()),
        prop::collection::vec(mutation(), 1..4),
    )
        .prop_map(|(seed, mutations)| {
            let mut body = seed.to_vec();
            for m in &mutations {
                apply_anywhere(&mut body, m);
            }
            let mut bytes = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            bytes.extend_from_slice(&body);
            bytes
        })
}

/// [`apply`], with `Duplicate` copying any line (a body has no status line).
fn apply_anywhere(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Duplicate(i) => {
            let ends = line_ends(bytes);
            if ends.is_empty() {
                return;
            }
            let k = i.index(ends.len());
            let start = if k == 0 { 0 } else { ends[k - 1] + 2 };
            let line = bytes[start..ends[k] + 2].to_vec();
            bytes.splice(start..start, line);
        }
        other => apply(bytes, other),
    }
}

#[test]
fn mutated_chunked_bodies_get_what_hyper_gives() {
    let rt = runtime();
    proptest!(cases(), |(bytes in chunked_response())| {
        if let Some(why) = disagreement(&rt, &bytes, &Method::GET) {
            prop_assert!(false, "{}", why);
        }
    });
}

#[test]
fn mutated_responses_get_what_hyper_gives() {
    let rt = runtime();
    proptest!(cases(), |((bytes, head) in response())| {
        let method = if head { Method::HEAD } else { Method::GET };
        if let Some(why) = disagreement(&rt, &bytes, &method) {
            prop_assert!(false, "{}", why);
        }
    });
}
