//! An upstream HTTP/1.1 response body, decoded from the connection as the
//! downstream pulls it: by length, chunked (RFC 9112 §7.1), or until the upstream
//! closes; the connection goes back to its idle list when the body has ended.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::framing::{take_bytes, Framing, Step};
use super::{Http1Conn, IdleConns, BODY_READ};
use crate::body::BoxError;

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
        if let (Framing::Length(n), Some(conn)) = (&self.framing, self.conn.as_mut()) {
            let n = *n;
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
        self.framing.is_complete()
    }

    /// The next piece of body in the buffered bytes, advancing the framing.
    fn step(&mut self) -> Result<Step, BoxError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Step::Done);
        };
        Ok(self.framing.step(&mut conn.buf)?)
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
            let want = match self.framing.remaining() {
                Some(left) => usize::try_from(left).unwrap_or(BODY_READ).min(BODY_READ),
                None => BODY_READ,
            };
            let Some(conn) = self.conn.as_mut() else {
                self.done = true;
                return Poll::Ready(None);
            };
            let read = ready!(conn.poll_fill(cx, want.max(1)));
            match read {
                Ok(0) => {
                    // The close ends a close-delimited body; any other is cut short.
                    // Either way the connection is done.
                    self.abandon();
                    return Poll::Ready(self.framing.at_eof().err().map(|e| Err(e.into())));
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
        match self.framing.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
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
