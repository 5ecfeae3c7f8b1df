//! Listeners: bind, accept (bounded by `max_connections`), optional TLS, and serve
//! HTTP/1.1 and HTTP/2 on the same port (h2c prior knowledge in plain text, ALPN
//! over TLS); graceful drain on removal or shutdown. Every worker runs an accept
//! loop on each listener's socket (see [`crate::workers`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::config::{ListenerConfig, ListenerLimits};
use crate::proxy::{self, ConnInfo};
use crate::state::Proxy;
use crate::workers::Workers;

/// A bound socket not yet serving: one descriptor of it per worker.
pub struct Bound {
    sockets: Vec<std::net::TcpListener>,
    local: SocketAddr,
    configured: SocketAddr,
    max_connections: usize,
}

impl Bound {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Binds a listener's address (with `SO_REUSEADDR`, a deep accept backlog,
/// non-blocking), with a descriptor of the socket for each of `workers` workers.
pub fn bind(config: &ListenerConfig, workers: usize) -> std::io::Result<Bound> {
    let domain = socket2::Domain::for_address(config.listen);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&config.listen.into())?;
    socket.listen(4096)?;
    let socket: std::net::TcpListener = socket.into();
    let local = socket.local_addr()?;
    let mut sockets = Vec::with_capacity(workers.max(1));
    for _ in 1..workers.max(1) {
        sockets.push(socket.try_clone()?);
    }
    sockets.push(socket);
    Ok(Bound {
        sockets,
        local,
        configured: config.listen,
        max_connections: config.limits.max_connections,
    })
}

/// A serving listener; dropping it does not stop it, [`ListenerHandle::drain`] does.
pub struct ListenerHandle {
    name: Arc<str>,
    configured: SocketAddr,
    local: SocketAddr,
    /// Tells the accept loops to stop.
    stop: watch::Sender<bool>,
    /// One accept loop per worker.
    loops: Vec<tokio::task::JoinHandle<()>>,
    /// Tells open connections to finish gracefully.
    draining: watch::Sender<bool>,
    open: Arc<OpenConnections>,
}

impl ListenerHandle {
    /// Listener name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address from the config.
    pub fn configured_addr(&self) -> SocketAddr {
        self.configured
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting (the socket closes), then lets open connections finish
    /// their requests (HTTP/2 gets GOAWAY, idle HTTP/1.1 keep-alive connections
    /// close) for up to `timeout`.
    pub async fn drain(self, timeout: Duration) {
        let _ = self.stop.send(true);
        for accept_loop in self.loops {
            let _ = accept_loop.await;
        }
        let _ = self.draining.send(true);
        if tokio::time::timeout(timeout, self.open.all_closed())
            .await
            .is_err()
        {
            tracing::warn!(listener = %self.name, ?timeout, "drain timed out; connections still open");
        }
    }
}

/// What the accept loops of one listener share.
struct Shared {
    name: Arc<str>,
    proxy: Arc<Proxy>,
    /// `max_connections` across all workers.
    permits: Arc<Semaphore>,
    open: Arc<OpenConnections>,
    gauge: metrics::Gauge,
    drain_signal: watch::Receiver<bool>,
}

/// Starts serving a bound listener: one accept loop on each worker (as many as
/// `bound` has descriptors), all on the same socket, so the kernel hands each new
/// connection to one of them.
pub fn spawn(name: Arc<str>, bound: Bound, proxy: Arc<Proxy>, workers: &Workers) -> ListenerHandle {
    let (stop, stopped) = watch::channel(false);
    let (draining, drain_signal) = watch::channel(false);
    let local = bound.local_addr();
    let open = Arc::new(OpenConnections::default());
    let shared = Arc::new(Shared {
        gauge: metrics::gauge!(crate::observe::DOWNSTREAM_CONNECTIONS, "listener" => name.to_string()),
        name: name.clone(),
        proxy,
        permits: Arc::new(Semaphore::new(bound.max_connections.max(1))),
        open: Arc::clone(&open),
        drain_signal,
    });
    let loops = workers
        .handles()
        .iter()
        .zip(bound.sockets)
        .map(|(worker, socket)| {
            worker.spawn(accept_loop(Arc::clone(&shared), socket, stopped.clone()))
        })
        .collect();
    ListenerHandle {
        name,
        configured: bound.configured,
        local,
        stop,
        loops,
        draining,
        open,
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    socket: std::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    // Registered with the reactor of the worker this loop runs on.
    let socket = match TcpListener::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(listener = %shared.name, error = %e, "cannot serve the listener on this worker");
            return;
        }
    };
    let stop = stopped.wait_for(|stop| *stop);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            biased;
            _ = &mut stop => break,
            p = Arc::clone(&shared.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = &mut stop => break,
            a = socket.accept() => a,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(listener = %shared.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnInfo::new(shared.name.clone(), client);
        let guard = shared.open.enter(shared.gauge.clone());
        let proxy = Arc::clone(&shared.proxy);
        let drain_signal = shared.drain_signal.clone();
        // On this worker's runtime: the connection stays on the thread that accepted it.
        tokio::spawn(async move {
            serve_connection(stream, conn, proxy, drain_signal).await;
            drop(guard);
            drop(permit);
        });
    }
}

/// Counts a listener's open connections and wakes the drain when none are left.
#[derive(Default)]
struct OpenConnections {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl OpenConnections {
    fn enter(self: &Arc<Self>, gauge: metrics::Gauge) -> OpenGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        gauge.increment(1.0);
        OpenGuard {
            open: Arc::clone(self),
            gauge,
        }
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct OpenGuard {
    open: Arc<OpenConnections>,
    gauge: metrics::Gauge,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
        if self.open.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open.idle.notify_waiters();
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    mut conn: ConnInfo,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
) {
    let snapshot = proxy.snapshot();
    let Some(listener) = snapshot.listener(&conn.listener) else {
        return;
    };
    let limits = listener.config.limits.clone();
    let tls = listener.tls.clone();
    drop(snapshot);
    match tls {
        None => serve_io(TokioIo::new(stream), conn, proxy, drain, &limits).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls_stream)) => {
                    conn.tls = true;
                    serve_io(TokioIo::new(tls_stream), conn, proxy, drain, &limits).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(client = %conn.client, "TLS handshake timed out"),
            }
        }
    }
}

/// What the requests of one downstream connection share.
struct ConnShared {
    proxy: Arc<Proxy>,
    conn: ConnInfo,
    activity: Activity,
}

/// Requests in flight on one connection and when the last one finished, for the idle timeout.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// When the last request finished, as nanoseconds since `opened`.
    last_done_ns: std::sync::atomic::AtomicU64,
    opened: Instant,
}

impl Activity {
    fn mark_done(&self) {
        let ns = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_done_ns.store(ns, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last_done_ns.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }
}

async fn serve_io<I>(
    io: I,
    conn: ConnInfo,
    proxy: Arc<Proxy>,
    mut drain: watch::Receiver<bool>,
    limits: &ListenerLimits,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_concurrent_streams(1024);
    // One reference per request to what the connection's requests share; its
    // count is touched only by the worker serving the connection.
    let shared = Arc::new(ConnShared {
        proxy,
        conn,
        activity: Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last_done_ns: std::sync::atomic::AtomicU64::new(0),
            opened: Instant::now(),
        },
    });
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move {
                let activity = &shared.activity;
                activity.in_flight.fetch_add(1, Ordering::Relaxed);
                let snapshot = shared.proxy.snapshot();
                let response = proxy::handle(snapshot, &shared.conn, req).await;
                activity.in_flight.fetch_sub(1, Ordering::Relaxed);
                activity.mark_done();
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let activity = &shared.activity;
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let idle_timeout = limits.idle_timeout;
    let mut idle_check = tokio::time::interval(idle_timeout.max(Duration::from_millis(10)) / 2);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = *drain.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "downstream connection ended with error");
                }
                return;
            }
            changed = drain.changed(), if !closing => {
                // A dropped sender also means the listener is gone: close gracefully either way.
                let _ = changed;
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = idle_check.tick(), if !closing => {
                let idle_for = activity.idle_for();
                if activity.in_flight.load(Ordering::Relaxed) == 0 && idle_for >= idle_timeout {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
