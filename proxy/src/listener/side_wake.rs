//! Polling a connection's side futures only after one of them woke its task.
//!
//! A connection task waits on the hyper connection and on two side futures: the
//! drain signal and the watchdog tick. Polled together (as `select!` does), the
//! side futures are polled on every wake-up of the task, which is every read or
//! write readiness of the connection and of its upstream calls, several times per
//! request, although they almost never have anything to say. Polled with the
//! [`SideWake`] context instead, they are polled only after they woke the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Tells whether a side future woke the task since the side futures were last polled.
pub struct SideWake {
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl SideWake {
    /// A new one; the first [`SideWake::context`] asks for a poll of the side futures.
    pub fn new() -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&flag));
        Self { flag, waker }
    }

    /// Registers the task polling with `cx`; then, when a side future woke it (or on
    /// the first call), the context to poll the side futures with, else `None`.
    pub fn context(&self, cx: &Context<'_>) -> Option<Context<'_>> {
        // Registered first, so a wake after the check below still reaches the task.
        self.flag.task.register(cx.waker());
        self.flag
            .woken
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }
}

impl SideWake {
    /// Polls a side future with the side waker (registering it for a wake-up),
    /// outside of [`SideWake::context`]: for a side future replaced in between.
    pub fn poll<F: Future>(&self, future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(&self.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn side_futures_are_polled_first_and_then_only_when_they_wake() {
        let side = SideWake::new();
        let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(1)));
        let mut polls = 0;
        let mut seen = Vec::new();
        std::future::poll_fn(|cx| {
            polls += 1;
            if let Some(mut side_cx) = side.context(cx) {
                seen.push(polls);
                if sleep.as_mut().poll(&mut side_cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            if polls < 3 {
                // Woken by something else (as by connection readiness).
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await;
        assert_eq!(seen.first(), Some(&1), "first poll polls the side futures");
        assert_eq!(seen.len(), 2, "then only the timer's wake does: {seen:?}");
        assert!(polls >= 4);
    }
}
