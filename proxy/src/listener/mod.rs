//! Listeners: bind, accept (bounded by `max_connections`), optional TLS, and serve
//! HTTP/1.1 and HTTP/2 on the same port (h2c prior knowledge in plain text, ALPN
//! over TLS); graceful drain on removal or shutdown. Every worker runs an accept
//! loop on each listener's socket (see [`crate::workers`]).

mod deadline;
mod ending;
mod handler;
mod park;
mod resets;
mod rewind;
mod serve;
mod side_wake;
mod spread;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::config::ListenerConfig;
use crate::workers::Workers;
pub use handler::{ConnInfo, ConnSettings, Handler};
use serve::serve_connection;
use spread::WorkerLoad;

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
struct Shared<H> {
    name: Arc<str>,
    handler: Arc<H>,
    /// `max_connections` across all workers.
    permits: Arc<Semaphore>,
    open: Arc<OpenConnections>,
    gauge: metrics::Gauge,
    drain_signal: watch::Receiver<bool>,
    /// The runtimes of the workers, in slot order.
    workers: Vec<tokio::runtime::Handle>,
    /// Connections each worker serves, to place new ones evenly.
    load: Arc<WorkerLoad>,
}

/// Starts serving a bound listener: one accept loop on each worker (as many as
/// `bound` has descriptors), all on the same socket; the worker that accepts a
/// connection places it on the least busy worker (`spread.rs`).
pub fn spawn<H: Handler>(
    name: Arc<str>,
    bound: Bound,
    handler: Arc<H>,
    workers: &Workers,
) -> ListenerHandle {
    let (stop, stopped) = watch::channel(false);
    let (draining, drain_signal) = watch::channel(false);
    let local = bound.local_addr();
    let open = Arc::new(OpenConnections::default());
    let shared = Arc::new(Shared {
        gauge: metrics::gauge!(crate::observe::DOWNSTREAM_CONNECTIONS, "listener" => name.to_string()),
        name: name.clone(),
        handler,
        permits: Arc::new(Semaphore::new(bound.max_connections.max(1))),
        open: Arc::clone(&open),
        drain_signal,
        workers: workers.handles().to_vec(),
        load: Arc::new(WorkerLoad::new(&name, workers.handles().len())),
    });
    let loops = workers
        .handles()
        .iter()
        .zip(bound.sockets)
        .enumerate()
        .map(|(me, (worker, socket))| {
            worker.spawn(accept_loop(
                Arc::clone(&shared),
                me,
                socket,
                stopped.clone(),
            ))
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

/// Accepts on worker `me` and places each connection on a worker.
async fn accept_loop<H: Handler>(
    shared: Arc<Shared<H>>,
    me: usize,
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
        let handler = Arc::clone(&shared.handler);
        let drain_signal = shared.drain_signal.clone();
        let worker = shared.load.pick(me);
        let placed = shared.load.enter(worker);
        let runtime = match shared.workers.get(worker) {
            Some(runtime) if worker != me => runtime,
            _ => {
                let serving = serve_connection(stream, conn, handler, drain_signal);
                // A combinator, not an async block: the task holds the connection's
                // future once, not a copy of what it was made from besides.
                tokio::spawn(serving.map(move |()| drop((placed, guard, permit))));
                continue;
            }
        };
        // Handed over: the socket leaves this worker's reactor for the other's.
        let moved = stream.into_std().and_then(|stream| {
            let _on = runtime.enter();
            TcpStream::from_std(stream)
        });
        match moved {
            Ok(stream) => {
                let serving = serve_connection(stream, conn, handler, drain_signal);
                runtime.spawn(serving.map(move |()| drop((placed, guard, permit))));
            }
            Err(e) => {
                tracing::debug!(listener = %shared.name, error = %e, "cannot move a connection to its worker")
            }
        }
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
