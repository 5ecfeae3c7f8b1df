//! Serving one accepted connection: optional TLS handshake, then hyper's HTTP/1.1
//! or HTTP/2 server (told apart by the first bytes) handing each request to the
//! listener's [`Handler`], with the connection's deadlines kept by its watchdog
//! ([`super::deadline`]) and its premature stream resets counted
//! ([`super::resets`]): an abusive client gets GOAWAY.
//!
//! A connection waits for its first bytes parked ([`super::park`]): no hyper
//! state yet. An HTTP/1 connection the watchdog finds resting (quiet for a whole
//! tick period) is taken back from hyper and parked again, so an idle keep-alive
//! connection holds its stream and [`ConnShared`], not hyper's buffers; its next
//! bytes are served by a fresh hyper connection on the same task.

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::deadline::{Activity, Verdict, Watchdog, Watched};
use super::ending::Ending;
use super::handler::{ConnInfo, ConnSettings, Handler};
use super::park::{self, Woken};
use super::resets::{ResetPolicy, ResetTally, StreamEnd};
use super::rewind::Rewind;
use super::side_wake::SideWake;
use crate::body::BoxError;
use crate::config::ListenerLimits;
use crate::time::{self, ticker, Instant};

/// Streams a client may reset before the server has accepted them (h2's own
/// default, set here on purpose): more at once is GOAWAY `ENHANCE_YOUR_CALM`.
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams the server may reset because the client broke the protocol, over the
/// connection's life (hyper's default, set here on purpose): more is GOAWAY.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Serves `stream` until the client leaves, a deadline passes, or the drain ends it.
///
/// The connection's settings are read and its shared state built here, before the
/// future is made: the future (the connection's task, paid by every idle
/// connection) holds the stream, that state and the drain signal, not the
/// arguments and the listener's limits besides.
pub(super) fn serve_connection<H: Handler>(
    stream: TcpStream,
    mut conn: ConnInfo,
    handler: Arc<H>,
    drain: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let start = handler
        .connection(&conn.listener)
        .map(|ConnSettings { limits, tls }| {
            conn.tls = tls.is_some();
            (Arc::new(ConnShared::new(handler, conn, &limits)), tls)
        });
    async move {
        let Some((shared, tls)) = start else {
            return;
        };
        match tls {
            None => serve_io(stream, shared, drain).await,
            Some(acceptor) => {
                // Boxed (and dropped with this statement), the handshake's state does
                // not make every connection's task its size.
                let timeout = shared.deadlines.header_read_timeout();
                let handshake = handshake(acceptor, stream, timeout, &shared.conn);
                let Some(tls_stream) = Box::pin(handshake).await else {
                    return;
                };
                serve_io(tls_stream, shared, drain).await;
            }
        }
    }
}

/// The TLS handshake within `timeout`; the session comes boxed, so the TLS state
/// (rustls' connection) is not inline in the connection's task either.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    conn: &ConnInfo,
) -> Option<Box<TlsStream<TcpStream>>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(Box::new(tls_stream)),
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(client = %conn.client, "TLS handshake timed out");
            None
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
    http: HttpLimits,
    /// The deadlines its watchdog keeps (the watchdog is made from these in the
    /// task, so the task holds one copy of it).
    deadlines: Deadlines,
}

/// A connection's deadlines, from the listener's limits, in milliseconds (a
/// deadline past 49 days is 49 days): the shared state of every idle connection
/// stays in a smaller allocation class.
#[derive(Clone, Copy)]
struct Deadlines {
    header_read_ms: u32,
    idle_ms: u32,
    send_ms: u32,
}

impl Deadlines {
    fn new(limits: &ListenerLimits) -> Self {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        Self {
            header_read_ms: ms(limits.header_read_timeout),
            idle_ms: ms(limits.idle_timeout),
            send_ms: ms(limits.send_timeout),
        }
    }

    fn header_read_timeout(self) -> Duration {
        Duration::from_millis(u64::from(self.header_read_ms))
    }

    /// The connection's watchdog.
    fn watchdog(self) -> Watchdog {
        let ms = |ms: u32| Duration::from_millis(u64::from(ms));
        Watchdog::new(ms(self.header_read_ms), ms(self.idle_ms), ms(self.send_ms))
    }
}

/// What hyper's connections are built with (see [`http1_builder`], [`http2_builder`]).
#[derive(Clone, Copy)]
struct HttpLimits {
    max_header_bytes: u32,
    max_concurrent_streams: u32,
}

impl<H> ConnShared<H> {
    fn new(handler: Arc<H>, conn: ConnInfo, limits: &ListenerLimits) -> Self {
        Self {
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
            http: HttpLimits {
                max_header_bytes: u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX),
                max_concurrent_streams: limits.max_concurrent_streams,
            },
            deadlines: Deadlines::new(limits),
        }
    }
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

/// The HTTP connection a downstream connection is in: parked (waiting for bytes,
/// no hyper state: at the start, and when an HTTP/1 connection rests), or served
/// by hyper's HTTP/1 or HTTP/2 server, each boxed so a parked task stays small.
enum Phase<S, H1, H2> {
    Parked(S),
    Http1(Pin<Box<H1>>),
    Http2(Pin<Box<H2>>),
    /// Only while moving between the others.
    Moving,
}

/// How the connection ended, when the proxy ended it and not the client or hyper.
enum Ended {
    /// Closed without a word: the drain, idleness, or too many resets while parked.
    Parked(Option<&'static str>),
    /// A deadline passed: the reason label.
    Deadline(&'static str),
}

async fn serve_io<S, H: Handler>(
    stream: S,
    shared: Arc<ConnShared<H>>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move {
                let stream = Stream::start(&shared);
                let response = shared.handler.call(&shared.conn, req).await;
                stream.answered();
                Ok::<_, Infallible>(response.map(|body| Ending::new(body, shared)))
            }
        })
    };
    let mut phase = Phase::Parked(Watched::new(stream, Arc::clone(&shared)));
    // Bytes read while parked (or given back by hyper), for the next HTTP connection.
    let mut prefix = Vec::new();
    let mut watchdog = shared.deadlines.watchdog();
    // The worker's shared tickers: the watchdog's period, and the shorter rest
    // period while hyper serves HTTP/1 (see `deadline`). No timer of its own.
    let tickers = [
        ticker::shared(watchdog.period()),
        ticker::shared(watchdog.rest_period()),
    ];
    let mut fast = false;
    let mut tick = pin!(tickers[0].tick());
    let mut closing = false;
    let mut drained = pin!(drain.wait_for(|draining| *draining));
    let mut abusive = pin!(shared.resets.abusive.notified());
    // The drain signal and the watchdog are polled only when they woke the task,
    // not on every readiness of the connection (see `side_wake`).
    let side = SideWake::new();
    let shared: &ConnShared<H> = &shared;
    // One closure owns the connection's state (moved in, not borrowed: no
    // reference per variable in the task).
    std::future::poll_fn(move |cx| loop {
        if let Some(mut side_cx) = side.context(cx) {
            // A dropped sender also means the listener is gone: close gracefully either way.
            if !closing && drained.as_mut().poll(&mut side_cx).is_ready() {
                closing = true;
                if !graceful_shutdown(&mut phase) {
                    return ended(shared, Err(Ended::Parked(None)));
                }
            }
            // Too many premature resets: GOAWAY; the streams in flight may finish.
            if !closing && abusive.as_mut().poll(&mut side_cx).is_ready() {
                closing = true;
                count_close(&shared.conn, "rapid_reset");
                tracing::info!(client = %shared.conn.client, "too many premature stream resets; GOAWAY");
                if !graceful_shutdown(&mut phase) {
                    return ended(shared, Err(Ended::Parked(None)));
                }
            }
            while tick.as_mut().poll(&mut side_cx).is_ready() {
                tick.set(tickers[usize::from(fast)].tick());
                match watchdog.check(&shared.activity, time::now()) {
                    Verdict::Keep => {}
                    Verdict::Idle if closing => {}
                    Verdict::Idle => {
                        closing = true;
                        if !graceful_shutdown(&mut phase) {
                            return ended(shared, Err(Ended::Parked(Some("idle"))));
                        }
                        count_close(&shared.conn, "idle");
                    }
                    Verdict::Rest if closing => {}
                    Verdict::Rest => {
                        if park(&mut phase, &mut prefix, &shared.activity) {
                            // Parked: back to the watchdog's own period.
                            fast = false;
                            tick.set(tickers[0].tick());
                            metrics::counter!(
                                crate::observe::LISTENER_PARKS,
                                "listener" => shared.conn.listener.to_string()
                            )
                            .increment(1);
                        }
                    }
                    Verdict::SlowHead => return ended(shared, Err(Ended::Deadline("header_timeout"))),
                    Verdict::SlowReader => return ended(shared, Err(Ended::Deadline("send_timeout"))),
                }
            }
        }
        match &mut phase {
            Phase::Parked(io) => {
                // Bytes given back by hyper (a pipelined request) are served at once.
                if prefix.is_empty() || !shared.activity.protocol_known() {
                    match park::poll_wake(io, cx, &mut prefix) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(Woken::Closed)) => return ended(shared, Ok(Ok(()))),
                        Poll::Ready(Err(e)) => return ended(shared, Ok(Err(e.into()))),
                        Poll::Ready(Ok(Woken::Bytes)) => {}
                    }
                    if !shared.activity.protocol_known() {
                        // A prefix of HTTP/2's preface so far: the next bytes tell.
                        continue;
                    }
                }
                let Phase::Parked(io) = std::mem::replace(&mut phase, Phase::Moving) else {
                    continue;
                };
                let io = TokioIo::new(Rewind::new(Bytes::from(std::mem::take(&mut prefix)), io));
                // The builders are made here, not kept: a parked task holds neither.
                phase = if shared.activity.is_http2() {
                    let http2 = http2_builder(shared.http);
                    Phase::Http2(Box::pin(http2.serve_connection(io, service.clone())))
                } else {
                    // Served by hyper: ticks at the rest period, to park it soon
                    // after it goes quiet (the wait is registered at once).
                    fast = true;
                    tick.set(tickers[1].tick());
                    let _ = side.poll(tick.as_mut());
                    let http1 = http1_builder(shared.http);
                    Phase::Http1(Box::pin(http1.serve_connection(io, service.clone())))
                };
            }
            Phase::Http1(connection) => match connection.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => return ended(shared, Ok(r.map_err(Into::into))),
            },
            Phase::Http2(connection) => match connection.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => return ended(shared, Ok(r.map_err(Into::into))),
            },
            Phase::Moving => return Poll::Ready(()),
        }
    })
    .await;
}

/// Counts and logs how the connection ended; the connection's future is done.
fn ended<H>(shared: &ConnShared<H>, ended: Result<Result<(), BoxError>, Ended>) -> Poll<()> {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "downstream connection ended with error"),
        Err(Ended::Parked(reason)) => {
            if let Some(reason) = reason {
                count_close(&shared.conn, reason);
            }
        }
        Err(Ended::Deadline(reason)) => {
            count_close(&shared.conn, reason);
            tracing::debug!(client = %shared.conn.client, reason, "deadline passed; closing");
        }
    }
    Poll::Ready(())
}

/// hyper's HTTP/1 server as the listener's limits want it.
fn http1_builder(limits: HttpLimits) -> http1::Builder {
    let mut http1 = http1::Builder::new();
    // No hyper header-read timer: the watchdog keeps that deadline without a
    // timer per request.
    http1
        .header_read_timeout(None::<Duration>)
        .max_buf_size(
            usize::try_from(limits.max_header_bytes)
                .unwrap_or(usize::MAX)
                .max(8192),
        )
        .keep_alive(true);
    http1
}

/// hyper's HTTP/2 server as the listener's limits want it.
fn http2_builder(limits: HttpLimits) -> http2::Builder<TokioExecutor> {
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    http2
}

/// Asks the connection to finish gracefully (HTTP/2 GOAWAY; HTTP/1 closes when
/// idle, or after the response in progress); false when it is parked: close it now.
fn graceful_shutdown<S, H1, H2>(phase: &mut Phase<S, H1, H2>) -> bool
where
    H1: GracefulShutdown,
    H2: GracefulShutdown,
{
    match phase {
        Phase::Http1(connection) => connection.as_mut().graceful(),
        Phase::Http2(connection) => connection.as_mut().graceful(),
        Phase::Parked(_) | Phase::Moving => return false,
    }
    true
}

/// Takes a resting HTTP/1 connection back from hyper: its stream is parked, the
/// bytes hyper had read and not parsed are kept to be served first.
/// True when it parked it (false: not an HTTP/1 connection being served).
fn park<S, H1, H2>(phase: &mut Phase<S, H1, H2>, prefix: &mut Vec<u8>, activity: &Activity) -> bool
where
    H1: IntoStream<S> + Unpin,
{
    if !matches!(phase, Phase::Http1(_)) {
        return false;
    }
    let Phase::Http1(connection) = std::mem::replace(phase, Phase::Moving) else {
        return false;
    };
    let (read, io) = Pin::into_inner(connection).into_stream();
    if !read.is_empty() {
        // A head begun while a request was in flight: its deadline runs from now.
        activity.received(&read);
        prefix.extend_from_slice(&read);
    }
    *phase = Phase::Parked(io);
    true
}

/// A hyper server connection that can be asked to finish gracefully.
trait GracefulShutdown {
    /// hyper's `graceful_shutdown`.
    fn graceful(self: Pin<&mut Self>);
}

impl<I, B, Svc> GracefulShutdown for http1::Connection<I, Svc>
where
    Svc: HttpService<Incoming, ResBody = B>,
    Svc::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, B, Svc, E> GracefulShutdown for http2::Connection<I, Svc, E>
where
    Svc: HttpService<Incoming, ResBody = B>,
    Svc::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<Svc::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// An HTTP/1 server connection given up while idle: the client stream `S` back,
/// with the bytes read from it and not parsed yet.
trait IntoStream<S> {
    /// The bytes hyper (and the rewind in front of the stream) still held, and the stream.
    fn into_stream(self) -> (Vec<u8>, S);
}

impl<S, B, Svc> IntoStream<S> for http1::Connection<TokioIo<Rewind<S>>, Svc>
where
    Svc: HttpService<Incoming, ResBody = B>,
    Svc::Error: Into<BoxError>,
    S: AsyncRead + AsyncWrite + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn into_stream(self) -> (Vec<u8>, S) {
        let parts = self.into_parts();
        let (unread, stream) = parts.io.into_inner().into_parts();
        // hyper read its buffer from the rewind before what the rewind still holds.
        let mut held = Vec::with_capacity(parts.read_buf.len() + unread.len());
        held.extend_from_slice(&parts.read_buf);
        held.extend_from_slice(&unread);
        (held, stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};

    /// A handler that is never asked for anything: only the futures' sizes matter here.
    struct Unused;

    impl Handler for Unused {
        type Body = crate::body::Body;

        fn connection(&self, _: &str) -> Option<ConnSettings> {
            None
        }

        async fn call(&self, _: &ConnInfo, _: Request<Incoming>) -> Response<crate::body::Body> {
            Response::new(crate::body::empty())
        }
    }

    #[tokio::test]
    async fn a_connection_task_is_small_while_it_waits() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_drain, drained) = watch::channel(false);
        let serving = serve_connection(
            stream,
            ConnInfo::new("public".into(), peer),
            Arc::new(Unused),
            drained,
        );
        let size = std::mem::size_of_val(&serving);
        // Everything a parked connection's task holds inline (hyper's connections
        // and the TLS session are boxed): the stream, the watchdog, the drain and
        // reset signals. A regression here is paid by every idle connection.
        // 808 bytes when this was written (1,128 with the watchdog and the listener's
        // limits in three copies, 2,360 with the TLS handshake inline); with tokio's
        // task header it is a 1 KiB task.
        assert!(size <= 896, "the connection future is {size} bytes");
        // With its reference counts, the shared state must fit mimalloc's 320-byte
        // class (it was 328 bytes, in the 384-byte class).
        let shared = std::mem::size_of::<ConnShared<Unused>>();
        println!("connection future {size} B, shared state {shared} B");
        assert!(shared + 16 <= 320, "the shared state is {shared} bytes");
    }
}
