//! The leader's response body: it streams to the leader's own client as the
//! upstream sends it, and a copy fills the store on the way. The copy is given up —
//! and the followers released to go upstream on their own — when the fill passes
//! its deadline (the cache's `lock_timeout` from the flight's start), grows past
//! `max_object_bytes`, carries trailers or fails; a body given up is never stored,
//! not even in part. The client loses nothing either way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::coalesce::{Leader, Outcome};
use super::policy::Policy;
use super::store::Entry;
use super::Cache;
use crate::body::{Body, BoxError};
use crate::time::timer_pool::Deadline;
use crate::time::Instant;

/// What the store needs besides the body.
pub(super) struct Head {
    /// The response's status.
    pub(super) status: StatusCode,
    /// The response's headers.
    pub(super) headers: HeaderMap,
    /// How long the entry is kept.
    pub(super) policy: Policy,
}

/// A fill in progress.
struct Filling {
    cache: Arc<Cache>,
    leader: Leader,
    head: Head,
    pieces: Vec<Bytes>,
    len: usize,
    limit: usize,
    deadline: Deadline,
}

impl Filling {
    /// The body ended cleanly: store the entry and hand it to the followers.
    fn complete(self) {
        let body = match self.pieces.len() {
            1 => self.pieces.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.len);
                for piece in &self.pieces {
                    all.extend_from_slice(piece);
                }
                all.freeze()
            }
        };
        let entry = Arc::new(Entry::new(
            self.head.status,
            self.head.headers,
            body,
            self.head.policy,
        ));
        self.cache
            .store
            .insert(self.leader.key().clone(), Arc::clone(&entry));
        self.leader.finish(Outcome::Stored(entry));
    }
}

/// The leader's body: `inner`'s frames, passed on as they come, copied for the store.
pub(super) struct Fill {
    inner: Body,
    /// `None` once stored or given up.
    filling: Option<Filling>,
}

impl Fill {
    /// Streams `inner`, filling the entry for `leader`'s key until `deadline`.
    pub(super) fn new(
        inner: Body,
        cache: Arc<Cache>,
        leader: Leader,
        head: Head,
        deadline: Instant,
    ) -> Self {
        let limit = usize::try_from(cache.config.max_object_bytes).unwrap_or(usize::MAX);
        let filling = Filling {
            cache,
            leader,
            head,
            pieces: Vec::new(),
            len: 0,
            limit,
            deadline: Deadline::at(deadline),
        };
        let mut fill = Self {
            inner,
            filling: Some(filling),
        };
        // An empty body may never be polled: it is complete already.
        if fill.inner.is_end_stream() {
            fill.complete();
        }
        fill
    }

    fn complete(&mut self) {
        if let Some(filling) = self.filling.take() {
            filling.complete();
        }
    }

    /// Stops filling: nothing is stored and the followers go upstream on their own.
    fn give_up(&mut self) {
        if let Some(filling) = self.filling.take() {
            filling.leader.finish(Outcome::Unshareable);
        }
    }

    /// Copies a frame for the store, or gives up when it cannot be stored.
    fn copy(&mut self, frame: &Frame<Bytes>) {
        let Some(filling) = self.filling.as_mut() else {
            return;
        };
        match frame.data_ref() {
            Some(data) if filling.len + data.len() <= filling.limit => {
                filling.len += data.len();
                filling.pieces.push(data.clone());
            }
            // Too large for the store, or trailers (which are not stored).
            _ => self.give_up(),
        }
    }
}

impl HttpBody for Fill {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let late = this
            .filling
            .as_mut()
            .is_some_and(|f| Pin::new(&mut f.deadline).poll(cx).is_ready());
        if late {
            this.give_up();
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match frame {
            None => this.complete(),
            Some(Ok(ref frame)) => {
                this.copy(frame);
                // The last frame may be the last poll (hyper stops at end of stream).
                if this.inner.is_end_stream() {
                    this.complete();
                }
            }
            Some(Err(_)) => this.give_up(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
