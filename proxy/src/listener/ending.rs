//! A response body that tells its connection's [`Activity`] when hyper is done
//! with it, so the watchdog knows an HTTP/1 connection has nothing left to write
//! before it is parked ([`super::park`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::deadline::Activity;
use crate::body::BoxError;

/// `body`, counted in `owner`'s activity from the response head until hyper
/// drops it (at its end, or when the client left).
pub struct Ending<B, A: AsRef<Activity>> {
    body: B,
    owner: Arc<A>,
}

impl<B, A: AsRef<Activity>> Ending<B, A> {
    /// Counts `body` as being written on `owner`'s connection.
    pub fn new(body: B, owner: Arc<A>) -> Self {
        AsRef::<Activity>::as_ref(&*owner).response_sent();
        Self { body, owner }
    }
}

impl<B, A: AsRef<Activity>> Drop for Ending<B, A> {
    fn drop(&mut self) {
        AsRef::<Activity>::as_ref(&*self.owner).response_ended();
    }
}

impl<B, A> http_body::Body for Ending<B, A>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
    A: AsRef<Activity>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
