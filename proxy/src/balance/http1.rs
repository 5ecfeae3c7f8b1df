//! Upstream HTTP/1.1, driven in the request's own task.
//!
//! A keep-alive exchange is a write of the request head (and body), then reads
//! of the response head and body on the same socket. Doing that inside the task
//! that serves the downstream connection — instead of handing the request to a
//! per-connection client task over channels, as hyper's client does — saves two
//! task wake-ups and a channel hop per request, and lets a response that arrived
//! whole go back to the downstream with the upstream connection already back in
//! the pool. Framing follows RFC 9112: `Content-Length`, `chunked`, or the end of
//! the connection; interim 1xx responses are skipped.
//!
//! An idle connection is not watched by any task. Before reuse it is polled once
//! with a no-op waker: an end of stream, a reset or stray bytes seen by then
//! retire it, so a connection the upstream closed while idle is rarely handed out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::breaker::ConnPermit;
use super::endpoint::RequestGuard;
use super::pool::Pool;
use crate::body::{Body, BoxError};
use crate::error::{ErrorKind, ProxyError};

#[cfg(test)]
mod tests;

/// Most bytes a response head (status line and headers) may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 100;
/// Most bytes of a chunk-size line or of the trailer section.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Bytes read at a time while waiting for a head.
const HEAD_READ: usize = 8 * 1024;
/// Room set aside at a time for copies of response heads (see [`Http1Conn::heads`]).
const HEADS_BLOCK: usize = 4 * 1024;
/// Most bytes read at a time for a body.
const BODY_READ: usize = 64 * 1024;

/// An upstream connection's byte stream: plain TCP or TLS over TCP.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (rustls) over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Keeps a connection counted while it is open: in its pool's open gauge and,
/// under a cluster `max_connections`, by its permit.
pub struct ConnTicket {
    open: Arc<AtomicUsize>,
    _permit: Option<ConnPermit>,
}

impl ConnTicket {
    /// Counts one more open connection in `open`, holding `permit` until dropped.
    pub fn new(open: &Arc<AtomicUsize>, permit: Option<ConnPermit>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self {
            open: Arc::clone(open),
            _permit: permit,
        }
    }
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One HTTP/1.1 connection to an endpoint: idle in its pool, or carrying one exchange.
pub struct Http1Conn {
    io: Transport,
    /// Bytes read from the upstream and not yet consumed.
    buf: BytesMut,
    /// Where request heads are written and response heads copied to: the header
    /// values of a response share it, and by the next exchange they are gone, so
    /// it is reused in place.
    heads: BytesMut,
    /// `Host` sent when the request has none (the endpoint's address).
    host: HeaderValue,
    _ticket: ConnTicket,
}

impl Http1Conn {
    /// A fresh connection over `io`, counted by `ticket`.
    pub fn new(io: Transport, host: HeaderValue, ticket: ConnTicket) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            heads: BytesMut::new(),
            host,
            _ticket: ticket,
        }
    }

    /// Whether an idle connection can carry another request: nothing arrived on it
    /// since its last exchange (an end of stream, a reset or stray bytes retire it).
    /// Costs no system call when the reactor has seen nothing on the socket.
    pub fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match &self.io {
            // Plain TCP: the readiness flag answers without a syscall or a waker
            // registration; anything readable (the upstream's close, stray bytes)
            // ends the connection's reuse.
            Transport::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Transport::Tls(_) => {
                let mut cx = Context::from_waker(Waker::noop());
                matches!(self.poll_fill(&mut cx, HEAD_READ), Poll::Pending)
            }
        }
    }

    /// Reads what the socket has into `buf` (at most `max` bytes); 0 is the end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < max {
            self.buf.reserve(max);
        }
        let mut limited = (&mut self.buf).limit(max);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut limited)
    }

    async fn fill(&mut self, max: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, max)).await
    }
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    /// No body and no length header.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (length unknown in advance).
    Chunked,
}

/// Sends `req` on `conn` and reads the response head; the body streams from the
/// returned response. On failure, the error carries the request back when the
/// upstream cannot have acted on it — nothing was written, or (for an idempotent
/// request without a body, on a `reused` connection) the upstream closed before
/// answering a single byte — so the caller may try it again on a fresh connection.
pub fn send(
    mut conn: Http1Conn,
    req: Request<Body>,
    reused: bool,
) -> impl Future<Output = Result<Response<Http1Body>, ProxyError>> + Send {
    // The head is encoded before the future is made, so the future keeps the
    // request's parts once rather than the request and its parts.
    let (parts, body) = req.into_parts();
    let framing = request_framing(&parts.method, &parts.headers, &body);
    let mut head = std::mem::take(&mut conn.heads);
    encode_head(&mut head, &parts, framing, &conn.host);
    exchange(conn, parts, body, head, framing, reused)
}

/// Writes the encoded request `head` and the body, then reads the response head.
async fn exchange(
    mut conn: Http1Conn,
    mut parts: http::request::Parts,
    mut body: Body,
    mut head: BytesMut,
    framing: RequestFraming,
    reused: bool,
) -> Result<Response<Http1Body>, ProxyError> {
    let mut written = 0;
    while written < head.len() {
        match conn.io.write(&head[written..]).await {
            Ok(0) => return Err(reset("upstream accepted no bytes")),
            Ok(n) => written += n,
            Err(e) => {
                let err = ProxyError::with_source(ErrorKind::UpstreamReset, e);
                return Err(if written == 0 {
                    err.with_unsent(Request::from_parts(parts, body))
                } else {
                    err
                });
            }
        }
    }
    head.clear();
    conn.heads = head;
    let bodiless = framing == RequestFraming::None;
    if !bodiless {
        // Boxed: a body's streaming state is not carried by the common bodiless request.
        Box::pin(write_body(&mut conn.io, &mut body, framing)).await?;
    }
    conn.io
        .flush()
        .await
        .map_err(|e| ProxyError::with_source(ErrorKind::UpstreamReset, e))?;

    let head_request = parts.method == Method::HEAD;
    let mut received_any = false;
    let response = loop {
        // The request's header map is not needed once a response comes: it holds the response's.
        match parse_head(&mut conn.buf, &mut conn.heads, &mut parts.headers)? {
            Some(h) if h.status.is_informational() => {
                if h.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(reset("upstream switched protocols unasked"));
                }
                // 100 Continue, 103 Early Hints: the final response follows.
                continue;
            }
            Some(h) => break h,
            None if conn.buf.len() >= MAX_HEAD_BYTES => {
                return Err(reset("upstream response head too large"));
            }
            None => {}
        }
        let read = conn.fill(HEAD_READ).await;
        match read {
            Ok(n) if n > 0 => received_any = true,
            outcome => {
                let why: BoxError = match outcome {
                    Err(e) => e.into(),
                    Ok(_) => "upstream closed the connection before responding".into(),
                };
                let err = ProxyError::with_source(ErrorKind::UpstreamReset, why);
                let stale = reused && !received_any && bodiless && parts.method.is_idempotent();
                return Err(if stale {
                    err.with_unsent(Request::from_parts(parts, body))
                } else {
                    err
                });
            }
        }
    };

    let framing = response_framing(&response, head_request)?;
    let keep_alive = framing != Framing::UntilClose && wants_keep_alive(&response);
    let mut out = Response::new(Http1Body {
        conn: Some(conn),
        framing,
        keep_alive,
        done: false,
        ready: None,
        pool: None,
        guard: None,
    });
    *out.status_mut() = response.status;
    *out.version_mut() = response.version;
    *out.headers_mut() = response.headers;
    Ok(out)
}

fn reset(why: &'static str) -> ProxyError {
    ProxyError::with_source(ErrorKind::UpstreamReset, why)
}

/// How the body of a request is sent: by its exact size when known, else chunked.
fn request_framing(method: &Method, headers: &HeaderMap, body: &Body) -> RequestFraming {
    if body.is_end_stream() {
        // An empty body keeps its explicit zero where the method usually has a payload.
        let says_zero = headers.contains_key(header::CONTENT_LENGTH)
            || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        return if says_zero {
            RequestFraming::Length(0)
        } else {
            RequestFraming::None
        };
    }
    match body.size_hint().exact() {
        Some(n) => RequestFraming::Length(n),
        None => RequestFraming::Chunked,
    }
}

/// Writes the request line and headers into `head`, with the framing header this proxy decides.
fn encode_head(
    head: &mut BytesMut,
    parts: &http::request::Parts,
    framing: RequestFraming,
    host: &HeaderValue,
) {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    head.reserve(64 + target.len() + parts.headers.len() * 48);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.put_u8(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    if !parts.headers.contains_key(header::HOST) {
        put_header(head, header::HOST.as_str(), host.as_bytes());
    }
    for (name, value) in &parts.headers {
        // Framing is this proxy's to state; the downstream's framing was hop-by-hop.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        put_header(head, name.as_str(), value.as_bytes());
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            put_header(head, "content-length", itoa_buf(n).as_bytes());
        }
        RequestFraming::Chunked => put_header(head, "transfer-encoding", b"chunked"),
    }
    head.extend_from_slice(b"\r\n");
}

fn put_header(head: &mut BytesMut, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n`, without allocating.
struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut bytes = [0u8; 20];
    let mut start = bytes.len();
    loop {
        start -= 1;
        bytes[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { bytes, start }
}

/// Streams the request body to the upstream in the chosen framing.
async fn write_body(
    io: &mut Transport,
    body: &mut Body,
    framing: RequestFraming,
) -> Result<(), ProxyError> {
    let upstream = |e: io::Error| ProxyError::with_source(ErrorKind::UpstreamReset, e);
    let mut sent: u64 = 0;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
        let frame = frame.map_err(body_error)?;
        let Ok(data) = frame.into_data() else {
            // Trailers are not forwarded over HTTP/1.1.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            RequestFraming::Length(n) if sent > n => {
                return Err(ProxyError::with_source(
                    ErrorKind::BadRequest,
                    "request body longer than its length",
                ));
            }
            RequestFraming::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                io.write_all(size.as_bytes()).await.map_err(upstream)?;
                io.write_all(&data).await.map_err(upstream)?;
                io.write_all(b"\r\n").await.map_err(upstream)?;
            }
            _ => io.write_all(&data).await.map_err(upstream)?,
        }
    }
    match framing {
        RequestFraming::Chunked => io.write_all(b"0\r\n\r\n").await.map_err(upstream),
        RequestFraming::Length(n) if sent != n => Err(ProxyError::with_source(
            ErrorKind::BadRequest,
            "request body shorter than its length",
        )),
        _ => Ok(()),
    }
}

/// A request-body error is the downstream's: too large, or the client went away.
fn body_error(e: BoxError) -> ProxyError {
    let kind = if crate::body::is_length_limit(e.as_ref()) {
        ErrorKind::BodyTooLarge
    } else {
        ErrorKind::BadRequest
    };
    ProxyError::with_source(kind, e)
}

/// A parsed response head, without its hop-by-hop fields (what they said is kept
/// in the flags).
struct ResponseHead {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    /// `Transfer-Encoding` was sent: `Some(true)` when its last coding is `chunked`.
    chunked: Option<bool>,
    /// `Connection: close` was sent.
    close: bool,
    /// `Connection: keep-alive` was sent.
    keep_alive: bool,
}

/// Parses a complete response head off the front of `buf`; `None` while incomplete.
/// The head is copied into `heads` and its header values share that copy; the
/// header map is `storage`'s, cleared (a map the caller no longer needs, so that
/// its allocation is reused).
fn parse_head(
    buf: &mut BytesMut,
    heads: &mut BytesMut,
    storage: &mut HeaderMap,
) -> Result<Option<ResponseHead>, ProxyError> {
    let malformed = |why: String| ProxyError::with_source(ErrorKind::UpstreamReset, why);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(format!("malformed upstream response head: {e}"))),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| malformed(format!("upstream status {code} out of range")))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // The head's own copy, so the connection's read buffer stays unshared and is
    // reused in place by the next read; `heads` is reclaimed in place the same way.
    if heads.capacity() < len {
        heads.reserve(len.max(HEADS_BLOCK));
    }
    heads.extend_from_slice(&buf[..len]);
    let head = heads.split().freeze();
    let base = buf.as_ptr() as usize;
    let mut headers = std::mem::take(storage);
    headers.clear();
    // One spare slot: the proxy adds `x-request-id` on the way down.
    headers.reserve(parsed.headers.len() + 1);
    let (mut chunked, mut close, mut keep_alive) = (None, false, false);
    let mut named_by_connection: Vec<HeaderName> = Vec::new();
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else if let Ok(name) = HeaderName::from_bytes(token) {
                    named_by_connection.push(name);
                }
            }
            continue;
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h
                .value
                .rsplit(|b| *b == b',')
                .next()
                .map(<[u8]>::trim_ascii);
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            continue;
        }
        if crate::headers::is_hop_by_hop_name(h.name) {
            continue;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| malformed(format!("bad upstream header name {:?}", h.name)))?;
        // Header values are cut out of the head's copy without copying again.
        let start = h.value.as_ptr() as usize - base;
        let value = HeaderValue::from_maybe_shared(head.slice(start..start + h.value.len()))
            .map_err(|_| malformed(format!("bad upstream value for header {name}")))?;
        headers.append(name, value);
    }
    buf.advance(len);
    for name in named_by_connection {
        headers.remove(name);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        chunked,
        close,
        keep_alive,
    }))
}

/// How the response body ends (RFC 9112 §6.3).
fn response_framing(head: &ResponseHead, head_request: bool) -> Result<Framing, ProxyError> {
    let status = head.status;
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    match head.chunked {
        Some(true) => return Ok(Framing::Chunked(ChunkState::Size)),
        Some(false) => return Ok(Framing::UntilClose),
        None => {}
    }
    let mut length: Option<u64> = None;
    for value in head.headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let n = std::str::from_utf8(part.trim_ascii())
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| reset("invalid upstream Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(reset("conflicting upstream Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Whether the upstream lets the connection carry another request.
fn wants_keep_alive(head: &ResponseHead) -> bool {
    match head.version {
        Version::HTTP_11 => !head.close,
        _ => head.keep_alive && !head.close,
    }
}

/// Where a response body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are still to come (0: the body is complete).
    Length(u64),
    /// Chunked transfer coding, at this step.
    Chunked(ChunkState),
    /// Everything until the upstream closes (the connection is not reused).
    UntilClose,
}

/// The chunked decoder's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: skipping trailer fields up to the empty line.
    Trailers,
    /// The body is complete.
    Done,
}

/// What the buffered bytes give the body reader next.
enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

/// An upstream HTTP/1.1 response body, read from the connection as the downstream
/// pulls it. When it has been read to its end the connection goes back to its
/// pool (when the upstream keeps it alive) and the request's in-flight mark ends;
/// dropped earlier, the connection is closed.
pub struct Http1Body {
    conn: Option<Http1Conn>,
    framing: Framing,
    keep_alive: bool,
    /// True once the body ended or failed.
    done: bool,
    /// The whole body, when it had arrived by the time the response was attached.
    ready: Option<Bytes>,
    pool: Option<Arc<Pool>>,
    guard: Option<RequestGuard>,
}

impl Http1Body {
    /// Names the pool the connection returns to and the in-flight mark held until
    /// the body ends; a body that is already complete returns the connection now.
    pub fn attach(&mut self, pool: &Arc<Pool>, guard: Option<RequestGuard>) {
        self.pool = Some(Arc::clone(pool));
        self.guard = guard;
        if let (Framing::Length(n), Some(conn)) = (self.framing, self.conn.as_mut()) {
            if n > 0 && conn.buf.len() as u64 >= n {
                // The body came with the head: hand the connection back before the
                // downstream has even been written to.
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                self.ready = Some(take_bytes(&mut conn.buf, n));
                self.framing = Framing::Length(0);
            }
        }
        if self.is_complete() {
            self.finish();
        }
    }

    fn is_complete(&self) -> bool {
        matches!(
            self.framing,
            Framing::Length(0) | Framing::Chunked(ChunkState::Done)
        )
    }

    /// The body failed or was cut short: close the connection, end the in-flight mark.
    fn abandon(&mut self) {
        self.conn = None;
        self.guard = None;
        self.done = true;
    }

    /// The body has ended: reuse or close the connection, end the in-flight mark.
    fn finish(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            // Bytes past the end of the response mean the exchange is out of step.
            if self.keep_alive && conn.buf.is_empty() {
                if let Some(pool) = &self.pool {
                    pool.checkin(conn);
                }
            }
        }
        self.guard = None;
    }

    /// The next piece of body in the buffered bytes, advancing the framing.
    fn step(&mut self) -> Result<Step, BoxError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Step::Done);
        };
        let buf = &mut conn.buf;
        loop {
            match self.framing {
                Framing::Length(0) | Framing::Chunked(ChunkState::Done) => return Ok(Step::Done),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    self.framing = Framing::Length(left - n as u64);
                    return Ok(Step::Data(take_bytes(buf, n)));
                }
                Framing::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = buf.len();
                    return Ok(Step::Data(take_bytes(buf, n)));
                }
                Framing::Chunked(ChunkState::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let rest = left - n as u64;
                    self.framing = Framing::Chunked(if rest == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(rest)
                    });
                    return Ok(Step::Data(take_bytes(buf, n)));
                }
                Framing::Chunked(ChunkState::DataEnd) => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    if !line.is_empty() {
                        return Err("malformed chunked body: data longer than its size".into());
                    }
                    self.framing = Framing::Chunked(ChunkState::Size);
                }
                Framing::Chunked(ChunkState::Size) => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.framing = Framing::Chunked(if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    });
                }
                Framing::Chunked(ChunkState::Trailers) => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.framing = Framing::Chunked(ChunkState::Done);
                    }
                }
            }
        }
    }
}

/// Most body bytes copied out of the read buffer; larger pieces are split off it
/// without copying (the buffer then reallocates on its next read).
const COPY_MAX: usize = 4 * 1024;

/// The first `n` bytes of `buf` as a frame: small ones copied, so the buffer stays
/// unshared and reusable; large ones split off without copying.
fn take_bytes(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= COPY_MAX {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

/// Takes one line (without its CRLF or LF) off the front of `buf`; `None` while
/// incomplete; an error past `max` bytes without a line end.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, BoxError> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > max => Err("malformed chunked body: line too long".into()),
        None => Ok(None),
    }
}

/// The hex size of a chunk-size line, ignoring chunk extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BoxError> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .map(<[u8]>::trim_ascii)
        .unwrap_or_default();
    if digits.is_empty() || digits.len() > 15 {
        return Err("malformed chunked body: bad chunk size".into());
    }
    let text = std::str::from_utf8(digits).map_err(|_| "malformed chunked body: bad chunk size")?;
    u64::from_str_radix(text, 16).map_err(|_| "malformed chunked body: bad chunk size".into())
}

impl http_body::Body for Http1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.ready.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        loop {
            let step = match self.step() {
                Ok(step) => step,
                Err(e) => {
                    // Out of step with the upstream: the connection is not reused.
                    self.abandon();
                    return Poll::Ready(Some(Err(e)));
                }
            };
            match step {
                Step::Data(data) => {
                    if self.is_complete() {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Done => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Step::NeedMore => {}
            }
            let want = match self.framing {
                Framing::Length(left) => usize::try_from(left).unwrap_or(BODY_READ).min(BODY_READ),
                _ => BODY_READ,
            };
            let Some(conn) = self.conn.as_mut() else {
                self.done = true;
                return Poll::Ready(None);
            };
            let read = ready!(conn.poll_fill(cx, want.max(1)));
            match read {
                Ok(0) if self.framing == Framing::UntilClose => {
                    // The close is the end of this body; the connection is done.
                    self.abandon();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.abandon();
                    return Poll::Ready(Some(Err(
                        "upstream closed the connection in the middle of the body".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    self.abandon();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && (self.done || self.is_complete())
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(data) = &self.ready {
            return SizeHint::with_exact(data.len() as u64);
        }
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for Http1Body {
    fn drop(&mut self) {
        // A complete body that was never polled to its end still leaves a reusable connection.
        if !self.done && self.is_complete() {
            self.finish();
        }
    }
}
