//! The response side of an HTTP/1.1 exchange: parsing a response head (without
//! its hop-by-hop fields) and deciding how its body is framed (RFC 9112 §6.3).
//!
//! As strict as hyper's client (hyper 1.x `proto/h1/role.rs`, `Client::parse` and
//! `Client::decoder`), no more and no less, so a response is accepted exactly when
//! a hyper-based proxy would accept it: the head is parsed by `httparse` with its
//! default settings (hyper's: no obs-fold, bare LF line ends accepted);
//! `Transfer-Encoding` wins over `Content-Length` (chunked when its last coding is,
//! else the body runs to the close) and is an error on HTTP/1.0; `Content-Length`
//! is digits only, its comma-separated or repeated values all equal. What differs
//! is an intermediary's duty: a `Content-Length` that came beside a
//! `Transfer-Encoding` is removed before the response is forwarded (RFC 9112 §6.3).

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use super::framing::Framing;
use super::{protocol_error, HEADS_BLOCK, MAX_HEADERS};
use crate::error::ProxyError;

/// Largest `Content-Length` accepted (hyper's `DecodedLength::MAX_LEN`).
const MAX_LENGTH: u64 = u64::MAX - 2;

/// A parsed response head, without its hop-by-hop fields (what they said is kept
/// in the flags).
pub(super) struct ResponseHead {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    /// `Transfer-Encoding` was sent: `Some(true)` when the last coding of its last
    /// line is `chunked`.
    pub(super) chunked: Option<bool>,
    /// The upstream lets the connection carry another request: HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `Connection: keep-alive` (and no close).
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
    let malformed = |why: String| protocol_error(why);
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
    let mut chunked = None;
    let (mut keep_alive, mut saw_close) = (version == Version::HTTP_11, false);
    let mut named_by_connection: Vec<HeaderName> = Vec::new();
    for h in parsed.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            // As hyper: once a `Connection` line says close, a later keep-alive
            // does not undo it; a value that is not visible ASCII says neither.
            if saw_close || has_token(h.value, b"close") {
                saw_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(h.value, b"keep-alive");
            }
            let options = h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii);
            for token in options.filter(|t| {
                !t.eq_ignore_ascii_case(b"close") && !t.eq_ignore_ascii_case(b"keep-alive")
            }) {
                if let Ok(name) = HeaderName::from_bytes(token) {
                    named_by_connection.push(name);
                }
            }
            continue;
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = visible(h.value).and_then(|v| v.rsplit(|b| *b == b',').next());
            chunked = Some(last.is_some_and(|c| trim(c).eq_ignore_ascii_case(b"chunked")));
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
        keep_alive,
    }))
}

/// `value` when it is all visible ASCII, spaces and tabs (what
/// `HeaderValue::to_str` accepts, and so what hyper reads a list from).
fn visible(value: &[u8]) -> Option<&[u8]> {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then_some(value)
}

/// `s` without leading and trailing spaces and tabs.
fn trim(s: &[u8]) -> &[u8] {
    let not_ws = |b: &u8| *b != b' ' && *b != b'\t';
    let start = s.iter().position(not_ws).unwrap_or(s.len());
    let end = s.iter().rposition(not_ws).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Whether the comma-separated list `value` holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    visible(value).is_some_and(|v| {
        v.split(|b| *b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(token))
    })
}

/// The body length all `Content-Length` values agree on, as hyper reads them:
/// digits only (no sign, no inner space), each line a comma-separated list,
/// every value equal; `None` when any is invalid or they differ.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in visible(value.as_bytes())?.split(|b| *b == b',') {
            let n = digits(trim(part))?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// A decimal number of one or more ASCII digits that fits a `u64`.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let d = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// How the response body ends (RFC 9112 §6.3, in hyper's order), removing a
/// `Content-Length` that a `Transfer-Encoding` overrides; an error for what hyper
/// rejects (HTTP/1.0 with `Transfer-Encoding`, an invalid or conflicting length).
pub(super) fn response_framing(
    head: &mut ResponseHead,
    head_request: bool,
) -> Result<Framing, ProxyError> {
    let status = head.status;
    if head.chunked.is_some() {
        // RFC 9112 §6.3: the length is wrong when a transfer coding is applied, and
        // an intermediary MUST NOT forward it.
        head.headers.remove(header::CONTENT_LENGTH);
    }
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || head_request
    {
        return Ok(Framing::Length(0));
    }
    match head.chunked {
        Some(_) if head.version == Version::HTTP_10 => Err(protocol_error(
            "upstream sent Transfer-Encoding on HTTP/1.0",
        )),
        Some(true) => Ok(Framing::chunked()),
        Some(false) => Ok(Framing::UntilClose),
        None if !head.headers.contains_key(header::CONTENT_LENGTH) => Ok(Framing::UntilClose),
        None => match content_length(&head.headers) {
            Some(n) if n <= MAX_LENGTH => Ok(Framing::Length(n)),
            _ => Err(protocol_error("invalid upstream Content-Length")),
        },
    }
}

/// Whether the upstream lets the connection carry another request.
pub(super) fn wants_keep_alive(head: &ResponseHead) -> bool {
    head.keep_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_digits_only_and_all_values_agree() {
        let of = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
            }
            content_length(&headers)
        };
        assert_eq!(of(&["5"]), Some(5));
        assert_eq!(of(&["5", "5"]), Some(5));
        assert_eq!(of(&["5, 5", " 5 "]), Some(5));
        assert_eq!(of(&["007"]), Some(7));
        for bad in [
            &["+5"][..],
            &["-5"],
            &["5 5"],
            &["5", "6"],
            &["5,"],
            &[""],
            &["0x5"],
            &["18446744073709551616"],
        ] {
            assert_eq!(of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn token_lists_are_read_as_hyper_reads_them() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
        assert!(
            !has_token(b"close, \xff", b"close"),
            "not visible ASCII: no list"
        );
        assert_eq!(trim(b" \t a b\t "), b"a b");
        assert_eq!(trim(b"  "), b"");
    }
}
