//! Fuzzing request head handling through a real proxy on loopback (proptest,
//! bounded cases): arbitrary raw HTTP/1.x request heads, built from the pieces
//! that break parsers (bad methods and versions, several or odd `Host` lines,
//! conflicting framing, folded lines, bare LF, dot segments, absolute-form,
//! userinfo), are each answered with exactly one well-formed response, 2xx or
//! 4xx, and nothing malformed reaches the upstream: a strict upstream checks
//! every head it is sent.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the strict upstream found wrong in the heads it was sent.
type Violations = Arc<Mutex<Vec<String>>>;

struct World {
    rt: tokio::runtime::Runtime,
    proxy: SocketAddr,
    violations: Violations,
    _proxy: TestProxy,
}

/// One proxy and one strict upstream for all cases.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let violations = Violations::default();
        let (test_proxy, proxy) = rt.block_on(async {
            let upstream = strict_upstream(violations.clone()).await;
            // Admission is on (the default): it does not change what is forwarded.
            let yaml = config_for_endpoints(&[upstream.to_string()], "        timeout: 3s", "")
                .replace(
                    "    routes:",
                    "    limits: { header_read_timeout: 2s }\n    routes:",
                );
            let p = start_proxy(&yaml).await;
            let addr = p.addr("public");
            (p, addr)
        });
        World {
            rt,
            proxy,
            violations,
            _proxy: test_proxy,
        }
    })
}

/// An upstream that reads each request head byte by byte as sent and records
/// anything a strict HTTP/1.1 parser would refuse, then answers 200 and closes.
async fn strict_upstream(violations: Violations) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let violations = violations.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let end = loop {
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        break end + 4;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = &buf[..end];
                let (problems, is_head) = check_forwarded(head);
                if !problems.is_empty() {
                    violations.lock().unwrap().push(format!(
                        "{problems:?} in {:?}",
                        String::from_utf8_lossy(head)
                    ));
                }
                let answer: &[u8] = if is_head {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What is wrong with a forwarded head (empty: nothing), and whether it is a HEAD.
fn check_forwarded(head: &[u8]) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    for (i, &b) in head.iter().enumerate() {
        let crlf = match b {
            b'\n' => i > 0 && head[i - 1] == b'\r',
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            _ => true,
        };
        if !crlf {
            problems.push(format!("bare CR or LF at {i}"));
        }
        if b == 0 {
            problems.push("NUL byte".into());
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        other => {
            problems.push(format!("httparse: {other:?}"));
            return (problems, false);
        }
    }
    if req.version != Some(1) {
        problems.push(format!("version {:?}", req.version));
    }
    let path = req.path.unwrap_or("");
    if !path.starts_with('/') {
        problems.push(format!("not origin-form: {path}"));
    }
    let path_only = path.split('?').next().unwrap_or("");
    for seg in path_only.split('/') {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            problems.push(format!("dot segment in {path}"));
        }
    }
    let named = |n: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(n))
            .map(|h| h.value)
            .collect::<Vec<_>>()
    };
    let hosts = named("host");
    match hosts.as_slice() {
        [one] if !one.is_empty() && !one.contains(&b'@') && !one.contains(&b' ') => {}
        other => problems.push(format!("Host lines {other:?}")),
    }
    let lengths = named("content-length");
    let codings = named("transfer-encoding");
    if !lengths.is_empty() && !codings.is_empty() {
        problems.push("both Content-Length and Transfer-Encoding".into());
    }
    if lengths.len() > 1
        || lengths
            .iter()
            .any(|v| v.is_empty() || !v.iter().all(u8::is_ascii_digit))
    {
        problems.push(format!("Content-Length {lengths:?}"));
    }
    if codings.len() > 1 || codings.iter().any(|v| !v.eq_ignore_ascii_case(b"chunked")) {
        problems.push(format!("Transfer-Encoding {codings:?}"));
    }
    (problems, req.method == Some("HEAD"))
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(items)
}

// Valid pieces repeated, so that a good share of requests reaches the upstream.
const METHODS: &[&str] = &[
    "GET", "GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "OPTIONS", "get", "G@T", "",
    "CONNECT",
];
const TARGETS: &[&str] = &[
    "/",
    "/a",
    "/a/../b",
    "/%2e%2e/admin",
    "/a/./b?x=../y",
    "/a/%2E./b",
    "http://a.test/x",
    "http://a.test:80/x/../y",
    "http://evil@a.test/",
    "*",
    "a.test:443",
    "//x",
    "/a b",
    "/\u{7f}",
    "",
    "/é",
];
const VERSIONS: &[&str] = &[
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/1.2",
    "HTTP/2.0",
    "HTTP/0.9",
    "http/1.1",
    "HTTP/1.1 ",
];
const HEADERS: &[&str] = &[
    "Host: a.test",
    "Host: a.test",
    "Host: a.test",
    "Host: a.test",
    "Accept: */*",
    "Accept: */*",
    "User-Agent: fuzz",
    "Host: b.test",
    "Host:",
    "Host: a b",
    "Host: user@a.test",
    "host: A.TEST:8080",
    "Content-Length: 0",
    "Content-Length: +0",
    "Content-Length: 0, 0",
    "Content-Length: abc",
    "Content-Length: 5",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: xchunked",
    " folded",
    "\tfolded",
    "NoColon",
    "Bad Name: x",
    "X-A : b",
    "Connection: close",
    "Connection: keep-alive, x-hop",
    "x-hop: 1",
    "Upgrade: websocket",
    "Connection: upgrade",
    "TE: trailers",
    "Keep-Alive: 5",
    "X-Null: a\0b",
    "X-Ctl: a\u{1}b",
    "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
/// A raw request: request line, header lines (each with CRLF or a bare LF), the
/// blank line, and a body only where a framing header calls for one (a body
/// without framing would be a second, pipelined request, rightly answered twice).
fn raw_request() -> impl Strategy<Value = Vec<u8>> {
    (
        pick(METHODS),
        pick(TARGETS),
        pick(VERSIONS),
        prop::collection::vec((pick(HEADERS), prop::bool::weighted(0.1)), 0..6),
    )
        .prop_map(|(method, target, version, headers)| {
            let mut raw = format!("{method} {target} {version}\r\n");
            let mut body = "";
            for (h, bare_lf) in headers {
                raw.push_str(h);
                raw.push_str(if bare_lf { "\n" } else { "\r\n" });
                if h.starts_with("Transfer-Encoding") {
                    body = "0\r\n\r\n";
                } else if h == "Content-Length: 5" {
                    body = "hello";
                }
            }
            raw.push_str("\r\n");
            raw.push_str(body);
            raw.into_bytes()
        })
}

/// Sends `raw` and reads one response; then half-closes (no request is in flight
/// any more, so the proxy closes too) and reads whatever else it sent.
async fn exchange(proxy: SocketAddr, raw: &[u8]) -> Result<u16, String> {
    let head_request = raw.starts_with(b"HEAD ");
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (status, used) = loop {
        if let Some(done) = response_in(&answer, head_request)? {
            break done;
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Err(_) => {
                let got = String::from_utf8_lossy(&answer);
                return Err(format!("no whole response within 15 s: {got:?}"));
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                // Closed: a response without a length ends here.
                let got = String::from_utf8_lossy(&answer);
                return response_at_close(&answer, head_request)
                    .ok_or_else(|| format!("closed without a whole response: {got:?}"));
            }
            Ok(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
        }
    };
    let _ = stream.shutdown().await;
    let mut rest = answer.split_off(used);
    let read = tokio::time::timeout_at(deadline, stream.read_to_end(&mut rest)).await;
    if read.is_err() {
        return Err("the connection stayed open after the client closed its side".into());
    }
    if !rest.is_empty() {
        let more = String::from_utf8_lossy(&rest);
        return Err(format!("more after the response: {more:?}"));
    }
    Ok(status)
}

/// The response head at the start of `answer`: status, head length, declared
/// length, chunked; `None` while incomplete.
type Head = (u16, usize, Option<usize>, bool);

fn parse_head(answer: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut headers);
    let n = match res.parse(answer) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("not a response: {e}")),
    };
    let length = res
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
    let chunked = res.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding") && h.value.eq_ignore_ascii_case(b"chunked")
    });
    Ok(Some((res.code.unwrap_or(0), n, length, chunked)))
}

/// One whole response at the start of `answer`, if it is all there: (status, bytes).
fn response_in(answer: &[u8], head_request: bool) -> Result<Option<(u16, usize)>, String> {
    let Some((status, n, length, chunked)) = parse_head(answer)? else {
        return Ok(None);
    };
    let rest = &answer[n..];
    let body = if head_request || status == 204 || status == 304 {
        Some(0)
    } else if let Some(len) = length {
        (rest.len() >= len).then_some(len)
    } else if chunked {
        find(rest, b"0\r\n\r\n").map(|i| i + 5)
    } else {
        None // ends at close
    };
    Ok(body.map(|b| (status, n + b)))
}

/// A response delimited by the connection's close.
fn response_at_close(answer: &[u8], head_request: bool) -> Option<u16> {
    let (status, _, length, chunked) = parse_head(answer).ok()??;
    (length.is_none() && !chunked && !head_request).then_some(status)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_raw_head_gets_one_response_and_nothing_malformed_is_forwarded(raw in raw_request()) {
        let w = world();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = w
            .rt
            .block_on(exchange(w.proxy, &raw))
            .map_err(|e| TestCaseError::fail(format!("{e}\nrequest: {text:?}")))?;
        prop_assert!(
            (200..300).contains(&status) || (400..500).contains(&status),
            "status {} for {:?}", status, text
        );
        let found: Vec<String> = std::mem::take(&mut *w.violations.lock().unwrap());
        prop_assert!(found.is_empty(), "forwarded malformed: {:?}\nrequest: {:?}", found, text);
    }
}
