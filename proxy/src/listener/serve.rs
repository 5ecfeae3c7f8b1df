//! Serving one accepted connection: optional TLS handshake, then hyper-util's
//! auto server (HTTP/1.1 or HTTP/2) handing each request to the listener's [`Handler`],
//! with the connection's deadlines kept by its watchdog ([`super::deadline`]) and its
//! premature stream resets counted ([`super::resets`]): an abusive client gets GOAWAY.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::MissedTickBehavior;

use super::deadline::{Activity, Verdict, Watchdog, Watched};
use super::handler::{ConnInfo, ConnSettings, Handler};
use super::resets::{ResetPolicy, ResetTally, StreamEnd};
use super::side_wake::SideWake;
use crate::config::ListenerLimits;
use crate::time::{self, Instant};

/// Streams a client may reset before the server has accepted them (h2's own
/// default, set here on purpose): more at once is GOAWAY `ENHANCE_YOUR_CALM`.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset because the client broke the protocol, over the
/// connection's life (hyper's default, set here on purpose): more is GOAWAY.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

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
    resets: Resets,
}

/// The connection's premature-reset count and the signal that it went over.
struct Resets {
    policy: ResetPolicy,
    tally: Mutex<ResetTally>,
    abusive: Notify,
}

impl Resets {
    fn record(&self, end: StreamEnd) {
        let over = self
            .tally
            .lock()
            .map(|mut t| t.record(&self.policy, end))
            .unwrap_or(false);
        if over {
            self.abusive.notify_one();
        }
    }
}

/// One request of the connection, from its head to its response head. Dropped
/// without [`Stream::answered`], the client cancelled it (RST_STREAM or gone): hyper
/// drops the request's future, which stops its upstream work, and this counts it.
struct Stream<'a, H> {
    shared: &'a ConnShared<H>,
    started: Instant,
    answered: bool,
}

impl<'a, H> Stream<'a, H> {
    fn start(shared: &'a ConnShared<H>) -> Self {
        shared.activity.request_started();
        Self {
            shared,
            started: time::now(),
            answered: false,
        }
    }

    fn answered(mut self) {
        self.answered = true;
    }
}

impl<H> Drop for Stream<'_, H> {
    fn drop(&mut self) {
        self.shared.activity.request_done();
        let end = if self.answered {
            StreamEnd::Answered
        } else {
            StreamEnd::Cancelled(self.started.elapsed())
        };
        self.shared.resets.record(end);
    }
}

/// Why the proxy closed a connection, as the `reason` label of
/// `floodgate_listener_connections_closed_total`.
fn count_close(conn: &ConnInfo, reason: &'static str) {
    metrics::counter!(
        crate::observe::LISTENER_CONNECTIONS_CLOSED,
        "listener" => conn.listener.to_string(),
        "reason" => reason
    )
    .increment(1);
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
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    let shared = Arc::new(ConnShared {
        handler,
        conn,
        activity: Activity::new(),
        resets: Resets {
            policy: ResetPolicy {
                total_stream_count: limits.premature_reset_total_stream_count,
                min_stream_lifetime: limits.premature_reset_min_stream_lifetime,
            },
            tally: Mutex::new(ResetTally::default()),
            abusive: Notify::new(),
        },
    });
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move {
                let stream = Stream::start(&shared);
                let response = shared.handler.call(&shared.conn, req).await;
                stream.answered();
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
    let mut abusive = pin!(shared.resets.abusive.notified());
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
            // Too many premature resets: GOAWAY; the streams in flight may finish.
            if !closing && abusive.as_mut().poll(&mut side_cx).is_ready() {
                closing = true;
                connection.as_mut().graceful_shutdown();
                count_close(&shared.conn, "rapid_reset");
                tracing::info!(client = %shared.conn.client, "too many premature stream resets; GOAWAY");
            }
            while tick.poll_tick(&mut side_cx).is_ready() {
                match watchdog.check(&shared.activity) {
                    Verdict::Keep => {}
                    Verdict::Idle if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                        count_close(&shared.conn, "idle");
                    }
                    Verdict::Idle => {}
                    Verdict::SlowHead => return Poll::Ready(Err("header_timeout")),
                    Verdict::SlowReader => return Poll::Ready(Err("send_timeout")),
                }
            }
        }
        connection.as_mut().poll(cx).map(Ok)
    })
    .await;
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "downstream connection ended with error"),
        Err(reason) => {
            count_close(&shared.conn, reason);
            tracing::debug!(client = %shared.conn.client, reason, "deadline passed; closing");
        }
    }
}
