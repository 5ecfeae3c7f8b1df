//! An upstream HTTP/1.1 response body, decoded from the connection as the
//! downstream pulls it: by length, chunked (RFC 9112 §7.1), or until the upstream
//! closes; the connection goes back to its idle list when the body has ended.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::{Http1Conn, IdleConns, BODY_READ, MAX_CHUNK_LINE};
use crate::body::BoxError;

/// Where a response body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are still to come (0: the body is complete).
    Length(u64),
    /// Chunked transfer coding, at this step.
    Chunked(ChunkState),
    /// Everything until the upstream closes (the connection is not reused).
    UntilClose,
}

/// The chunked decoder's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkState {
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
pub struct Http1Body<G> {
    conn: Option<Http1Conn>,
    framing: Framing,
    keep_alive: bool,
    /// True once the body ended or failed.
    done: bool,
    /// The whole body, when it had arrived by the time the response was attached.
    ready: Option<Bytes>,
    /// Where the connection goes back to when the body has ended.
    idle: Option<Arc<IdleConns>>,
    /// Whatever the caller holds until the body ends (the request's in-flight mark).
    guard: Option<G>,
}

impl<G> Http1Body<G> {
    /// The body of a response whose head was read from `conn`.
    pub(super) fn new(conn: Http1Conn, framing: Framing, keep_alive: bool) -> Self {
        Self {
            conn: Some(conn),
            framing,
            keep_alive,
            done: false,
            ready: None,
            idle: None,
            guard: None,
        }
    }

    /// Names the idle list the connection returns to and what is held until the
    /// body ends; a body that is already complete returns the connection now.
    pub fn attach(&mut self, idle: &Arc<IdleConns>, guard: Option<G>) {
        self.idle = Some(Arc::clone(idle));
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
                if let Some(idle) = &self.idle {
                    idle.checkin(conn);
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
pub(super) fn parse_chunk_size(line: &[u8]) -> Result<u64, BoxError> {
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

impl<G: Unpin> http_body::Body for Http1Body<G> {
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

impl<G> Drop for Http1Body<G> {
    fn drop(&mut self) {
        // A complete body that was never polled to its end still leaves a reusable connection.
        if !self.done && self.is_complete() {
            self.finish();
        }
    }
}
