//! The request side of an HTTP/1.1 exchange: the framing the proxy chooses for a
//! request body, the request head written in one piece, and the body streamed
//! after it (by its length, or chunked).

use std::io;
use std::pin::Pin;

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::Method;
use http_body::Body as _;
use tokio::io::AsyncWriteExt;

use super::Transport;
use crate::body::{Body, BoxError};
use crate::error::{ErrorKind, ProxyError};

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RequestFraming {
    /// No body and no length header.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (length unknown in advance).
    Chunked,
}

/// How the body of a request is sent: by its exact size when known, else chunked.
pub(super) fn request_framing(method: &Method, headers: &HeaderMap, body: &Body) -> RequestFraming {
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
pub(super) fn encode_head(
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
pub(super) struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

pub(super) fn itoa_buf(mut n: u64) -> Digits {
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
pub(super) async fn write_body(
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
