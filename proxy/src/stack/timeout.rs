//! Deadline layer: fails a call with a given error kind when it takes too long.
//!
//! Used twice in a route stack (see [`route_stack`](super::route_stack)): for the
//! route `timeout`, just inside rate limiting and the cache (a refusal or a hit
//! needs no deadline) and outside admission, so the deadline bounds queueing and
//! every try up to the response head; and under the retry layer for
//! `per_try_timeout`. Its timers come from the worker's pool
//! ([`crate::time::timer_pool`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::{ErrorKind, ProxyError};
use crate::time::{self, timer_pool::Deadline};

/// Wraps a service with [`Timeout`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    after: Duration,
    kind: ErrorKind,
}

impl TimeoutLayer {
    /// Fails calls that take longer than `after` with `kind`.
    pub fn new(after: Duration, kind: ErrorKind) -> Self {
        Self { after, kind }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            after: self.after,
            kind: self.kind,
        }
    }
}

/// A service whose calls fail with a timeout error after a deadline.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
    kind: ErrorKind,
}

impl<S> Service<Request<Body>> for Timeout<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = ProxyError>,
{
    type Response = Response<Body>;
    type Error = ProxyError;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        TimeoutFuture {
            deadline: Deadline::at(time::now() + self.after),
            call: self.inner.call(req),
            after: self.after,
            kind: self.kind,
        }
    }
}

pin_project! {
    /// The inner call raced against its deadline; no allocation of its own.
    pub struct TimeoutFuture<F> {
        #[pin]
        call: F,
        deadline: Deadline,
        after: Duration,
        kind: ErrorKind,
    }
}

impl<F> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response<Body>, ProxyError>>,
{
    type Output = Result<Response<Body>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.call.poll(cx) {
            return Poll::Ready(result);
        }
        if Pin::new(this.deadline).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let after = *this.after;
        Poll::Ready(Err(ProxyError::with_source(
            *this.kind,
            format!("no response within {after:?}"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn slow_calls_fail_with_the_given_kind() {
        let slow = tower::service_fn(|_req: Request<Body>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ProxyError>(Response::new(crate::body::empty()))
        });
        let svc = TimeoutLayer::new(Duration::from_secs(1), ErrorKind::UpstreamTimeout).layer(slow);
        let err = svc
            .oneshot(Request::new(crate::body::empty()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamTimeout);
    }
}
