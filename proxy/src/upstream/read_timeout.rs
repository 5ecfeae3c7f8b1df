//! The longest silence an upstream response body may keep: nginx's
//! `proxy_read_timeout`, between two reads, not for the whole body.
//!
//! The route `timeout` ends when the response head arrives; an upstream that
//! sends a few bytes of its body and then goes silent would otherwise hold the
//! client, the exchange and the connection forever. The timer is armed lazily,
//! the first time the body has nothing to give, so a body that arrives with its
//! head (the common case) never touches the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use crate::body::BoxError;

/// The error a body fails with when the upstream stayed silent too long.
#[derive(Debug, thiserror::Error)]
#[error("upstream sent nothing of the response body for {0:?} (read_timeout)")]
pub struct BodyReadTimeout(pub Duration);

/// An upstream response body that fails after `timeout` without a frame.
pub struct ReadTimeout<B> {
    inner: B,
    timeout: Duration,
    /// Armed while the inner body is pending; pushed back by every frame.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> ReadTimeout<B> {
    /// Wraps `inner` with a silence limit of `timeout`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
        }
    }
}

impl<B> HttpBody for ReadTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(timer) = this.timer.as_mut() {
                    let next = crate::time::now() + this.timeout;
                    timer.as_mut().reset(next);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyReadTimeout(timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that gives one chunk, then nothing, ever.
    struct Stalls(bool);

    impl HttpBody for Stalls {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.0 {
                return Poll::Pending;
            }
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_timeout_and_a_flowing_one_does_not() {
        let mut body = ReadTimeout::new(Stalls(false), Duration::from_secs(5));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 10);
        let start = tokio::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyReadTimeout>(), "{err}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        let whole = ReadTimeout::new(
            http_body_util::Full::new(Bytes::from_static(b"ok")),
            Duration::from_millis(1),
        );
        assert_eq!(whole.collect().await.unwrap().to_bytes(), "ok");
    }
}
