//! Serving one accepted connection: optional TLS handshake, then hyper-util's
//! auto server (HTTP/1.1 or HTTP/2) handing each request to the listener's [`Handler`],
//! with the connection's deadlines kept by its watchdog ([`super::deadline`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::deadline::{Activity, Verdict, Watchdog, Watched};
use super::handler::{ConnInfo, ConnSettings, Handler};
use super::side_wake::SideWake;
use crate::config::ListenerLimits;

/// Serves `stream` until the client leaves, a deadline passes, or the drain ends it.
pub(super) async fn serve_connection<H: Handler>(
    stream: TcpStream,
    mut conn: ConnInfo,
    handler: Arc<H>,
    drain: watch::Receiver<bool>,
) {
    let Some(ConnSettings { limits, tls }) = handler.connection(&conn.listener) else {
        return;
    };
    match tls {
        None => serve_io(stream, conn, handler, drain, &limits).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls_stream)) => {
                    conn.tls = true;
                    serve_io(tls_stream, conn, handler, drain, &limits).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(client = %conn.client, "TLS handshake timed out"),
            }
        }
    }
}

/// What the requests of one downstream connection share. Its reference count is
/// touched only by the worker serving the connection.
struct ConnShared<H> {
    handler: Arc<H>,
    conn: ConnInfo,
    activity: Activity,
}

impl<H> AsRef<Activity> for ConnShared<H> {
    fn as_ref(&self) -> &Activity {
        &self.activity
    }
}

async fn serve_io<S, H: Handler>(
    stream: S,
    conn: ConnInfo,
    handler: Arc<H>,
    mut drain: watch::Receiver<bool>,
    limits: &ListenerLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper header-read timer: the watchdog below keeps that deadline
    // without a timer per request.
    builder
        .http1()
        .header_read_timeout(None::<Duration>)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(1024);
    let shared = Arc::new(ConnShared {
        handler,
        conn,
        activity: Activity::new(),
    });
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move {
                shared.activity.request_started();
                let response = shared.handler.call(&shared.conn, req).await;
                shared.activity.request_done();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&shared)));
    let connection = builder.serve_connection(io, service);
    let mut connection = pin!(connection);
    let mut watchdog = Watchdog::new(
        limits.header_read_timeout,
        limits.idle_timeout,
        limits.send_timeout,
    );
    let mut tick = tokio::time::interval(watchdog.period());
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut closing = *drain.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    let mut drained = pin!(drain.changed());
    // The drain signal and the watchdog are polled only when they woke the task,
    // not on every readiness of the connection (see `side_wake`).
    let side = SideWake::new();
    let ended = std::future::poll_fn(|cx| {
        if let Some(mut side_cx) = side.context(cx) {
            // A dropped sender also means the listener is gone: close gracefully either way.
            if !closing && drained.as_mut().poll(&mut side_cx).is_ready() {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            while tick.poll_tick(&mut side_cx).is_ready() {
                match watchdog.check(&shared.activity) {
                    Verdict::Keep => {}
                    Verdict::Idle if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    Verdict::Idle => {}
                    Verdict::SlowHead | Verdict::SlowReader => return Poll::Ready(None),
                }
            }
        }
        connection.as_mut().poll(cx).map(Some)
    })
    .await;
    match ended {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::debug!(error = %e, "downstream connection ended with error"),
        None => tracing::debug!(client = %shared.conn.client, "request head too slow; closing"),
    }
}
