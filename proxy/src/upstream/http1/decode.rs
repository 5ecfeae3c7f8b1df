//! The response side of an HTTP/1.1 exchange: parsing a response head (without
//! its hop-by-hop fields) and deciding how its body is framed (RFC 9112 §6.3).

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use super::body::{ChunkState, Framing};
use super::{reset, HEADS_BLOCK, MAX_HEADERS};
use crate::error::{ErrorKind, ProxyError};

/// A parsed response head, without its hop-by-hop fields (what they said is kept
/// in the flags).
pub(super) struct ResponseHead {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    /// `Transfer-Encoding` was sent: `Some(true)` when its last coding is `chunked`.
    pub(super) chunked: Option<bool>,
    /// `Connection: close` was sent.
    pub(super) close: bool,
    /// `Connection: keep-alive` was sent.
    pub(super) keep_alive: bool,
}

/// Parses a complete response head off the front of `buf`; `None` while incomplete.
/// The head is copied into `heads` and its header values share that copy; the
/// header map is `storage`'s, cleared (a map the caller no longer needs, so that
/// its allocation is reused).
pub(super) fn parse_head(
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
pub(super) fn response_framing(
    head: &ResponseHead,
    head_request: bool,
) -> Result<Framing, ProxyError> {
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
pub(super) fn wants_keep_alive(head: &ResponseHead) -> bool {
    match head.version {
        Version::HTTP_11 => !head.close,
        _ => head.keep_alive && !head.close,
    }
}
