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
//! The exchange lives here; the request head's encoding in `encode.rs`, the
//! response head's parsing in `decode.rs`, the body's framing and decoding (pure)
//! in `framing.rs`, the response body in `body.rs`, and the per-worker idle
//! connections in `idle.rs`. The response side is exactly as strict as hyper's
//! client; `differential.rs` proves it on the same byte streams.
//!
//! An idle connection is not watched by any task. Before reuse it is polled once
//! with a no-op waker: an end of stream, a reset or stray bytes seen by then
//! retire it, so a connection the upstream closed while idle is rarely handed out.

mod body;
mod decode;
#[cfg(test)]
mod differential;
mod encode;
mod framing;
mod idle;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, BytesMut};
use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;

use super::connect::Transport;
use super::limits::ConnPermit;
use crate::body::{Body, BoxError};
use crate::error::{ErrorKind, ProxyError};
use decode::{parse_head, response_framing, wants_keep_alive};
use encode::{encode_head, request_framing, write_body, RequestFraming};

pub use body::Http1Body;
pub use idle::IdleConns;

/// Most bytes a response head (status line and headers) may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in a response head.
const MAX_HEADERS: usize = 100;
/// Bytes read at a time while waiting for a head.
const HEAD_READ: usize = 8 * 1024;
/// Room set aside at a time for copies of response heads (see [`Http1Conn::heads`]).
const HEADS_BLOCK: usize = 4 * 1024;
/// Most bytes read at a time for a body.
const BODY_READ: usize = 64 * 1024;

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
    pub(super) io: Transport,
    /// Bytes read from the upstream and not yet consumed.
    pub(super) buf: BytesMut,
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
    pub(super) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<usize>> {
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
/// Sends `req` on `conn` and reads the response head; the body streams from the
/// returned response. On failure, the error carries the request back when the
/// upstream cannot have acted on it — nothing was written, or (for an idempotent
/// request without a body, on a `reused` connection) the upstream closed before
/// answering a single byte — so the caller may try it again on a fresh connection.
pub fn send<G: Send + 'static>(
    mut conn: Http1Conn,
    req: Request<Body>,
    reused: bool,
) -> impl Future<Output = Result<Response<Http1Body<G>>, ProxyError>> + Send {
    // The head is encoded before the future is made, so the future keeps the
    // request's parts once rather than the request and its parts.
    let (parts, body) = req.into_parts();
    let framing = request_framing(&parts.method, &parts.headers, &body);
    let mut head = std::mem::take(&mut conn.heads);
    encode_head(&mut head, &parts, framing, &conn.host);
    exchange(conn, parts, body, head, framing, reused)
}

/// Writes the encoded request `head` and the body, then reads the response head.
async fn exchange<G>(
    mut conn: Http1Conn,
    mut parts: http::request::Parts,
    mut body: Body,
    mut head: BytesMut,
    framing: RequestFraming,
    reused: bool,
) -> Result<Response<Http1Body<G>>, ProxyError> {
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
                    return Err(protocol_error("upstream switched protocols unasked"));
                }
                // 100 Continue, 103 Early Hints: the final response follows.
                continue;
            }
            Some(h) => break h,
            None if conn.buf.len() >= MAX_HEAD_BYTES => {
                return Err(protocol_error("upstream response head too large"));
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

    let mut response = response;
    let framing = response_framing(&mut response, head_request)?;
    let keep_alive = !framing.is_close_delimited() && wants_keep_alive(&response);
    let mut out = Response::new(Http1Body::new(conn, framing, keep_alive));
    *out.status_mut() = response.status;
    *out.version_mut() = response.version;
    *out.headers_mut() = response.headers;
    Ok(out)
}

pub(super) fn reset(why: &'static str) -> ProxyError {
    ProxyError::with_source(ErrorKind::UpstreamReset, why)
}

/// The upstream's response broke HTTP/1.1 (502 `upstream_protocol_error`; the
/// connection, dropped with the exchange, is not reused).
pub(super) fn protocol_error(why: impl Into<BoxError>) -> ProxyError {
    ProxyError::with_source(ErrorKind::UpstreamProtocol, why)
}
