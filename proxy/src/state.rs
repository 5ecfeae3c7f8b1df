//! The running proxy: the published [`Snapshot`] behind `ArcSwap`, the listeners
//! serving it, and the one reload path ([`Proxy::apply`]) that file watch, SIGHUP
//! and the control plane all drive.
//!
//! A reload builds a new snapshot from a validated [`Config`] (reusing what did
//! not change, see [`crate::snapshot`]), binds listeners that are new, then
//! publishes with one pointer swap, hands changed endpoint sets to the clusters
//! that kept their state, and drains listeners that went away. If anything fails
//! before the swap, the running snapshot keeps serving and nothing has changed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::balance::ClusterStatus;
use crate::config::{Config, ListenerConfig};
use crate::listener::{self, ConnInfo, ConnSettings, Handler, ListenerHandle};
use crate::observe;
use crate::snapshot::{BuildError, Snapshot};
use crate::workers::Workers;

/// Why a validated config could not be applied; the running one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The snapshot could not be built (a cluster, a listener's TLS, a route).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A listener could not bind its address.
    #[error("listener {listener}: cannot bind {addr}: {source}")]
    Bind {
        /// Listener name.
        listener: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not called from inside a tokio runtime.
    #[error("no runtime to serve on: {0}")]
    Runtime(std::io::Error),
}

/// The result of a successful apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new snapshot with this version is serving.
    New(u64),
    /// The config equals the running one; nothing changed.
    Unchanged(u64),
}

/// The running proxy: the published snapshot and the listeners serving it.
pub struct Proxy {
    snapshot: ArcSwap<Snapshot>,
    listeners: Mutex<HashMap<Arc<str>, ListenerHandle>>,
    apply_lock: Mutex<()>,
    next_version: AtomicU64,
    draining: AtomicBool,
    workers: Arc<Workers>,
}

impl Proxy {
    /// Builds the first snapshot, binds every listener and starts serving on the
    /// caller's runtime (tests, embedding).
    pub fn start(config: Config) -> Result<Arc<Self>, ApplyError> {
        let workers = Workers::current().map_err(ApplyError::Runtime)?;
        Self::start_on(config, Arc::new(workers))
    }

    /// Builds the first snapshot, binds every listener and starts serving on `workers`.
    pub fn start_on(config: Config, workers: Arc<Workers>) -> Result<Arc<Self>, ApplyError> {
        let started = std::time::Instant::now();
        let snapshot = Snapshot::build(config, 1, None)?;
        let proxy = Arc::new(Self {
            snapshot: ArcSwap::from_pointee(snapshot),
            listeners: Mutex::new(HashMap::new()),
            apply_lock: Mutex::new(()),
            next_version: AtomicU64::new(2),
            draining: AtomicBool::new(false),
            workers,
        });
        let configs = proxy.snapshot().config.listeners.clone();
        let mut bound = HashMap::new();
        for lc in &configs {
            bound.insert(Arc::from(lc.name.as_str()), proxy.bind(lc)?);
        }
        proxy.start_listeners(bound);
        log_applied(1, &proxy.snapshot().config, started.elapsed());
        metrics::gauge!(observe::CONFIG_VERSION).set(1.0);
        burst_gauges(&proxy.snapshot().config);
        access_log_target(&proxy.snapshot().config);
        Ok(proxy)
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Applies a validated config: the one reload path. On error nothing changes.
    pub fn apply(self: &Arc<Self>, config: Config) -> Result<Applied, ApplyError> {
        let _serial = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let current = self.snapshot();
        if *current.config == config {
            metrics::counter!(observe::CONFIG_RELOADS, "result" => "unchanged").increment(1);
            return Ok(Applied::Unchanged(current.version));
        }
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let result = self.apply_inner(config, version, &current, started);
        let label = if result.is_ok() { "applied" } else { "failed" };
        metrics::counter!(observe::CONFIG_RELOADS, "result" => label).increment(1);
        result
    }

    fn apply_inner(
        self: &Arc<Self>,
        config: Config,
        version: u64,
        current: &Snapshot,
        started: std::time::Instant,
    ) -> Result<Applied, ApplyError> {
        let mut next = Snapshot::build(config, version, Some(current))?;
        // Bind new or moved listeners before publishing, so a bind failure rejects the config.
        let mut to_bind = HashMap::new();
        {
            let running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            for lc in &next.config.listeners {
                let keep = running
                    .get(lc.name.as_str())
                    .is_some_and(|h| h.configured_addr() == lc.listen);
                if !keep {
                    to_bind.insert(Arc::from(lc.name.as_str()), lc);
                }
            }
        }
        let mut bound = HashMap::new();
        for (name, lc) in to_bind {
            // A listener moving to a new address must release the old one first if they clash.
            bound.insert(name, self.bind(lc)?);
        }
        let drain_timeout = next.config.server.drain_timeout;
        let keep: Vec<Arc<str>> = next.listeners().map(|(name, _)| Arc::from(name)).collect();
        let endpoint_changes = next.take_endpoint_changes();
        self.snapshot.store(Arc::new(next));
        let took = started.elapsed();
        // Clusters that kept their state take their new endpoint sets now that the
        // config is certain to apply.
        for (cluster, set) in endpoint_changes {
            cluster.set_endpoints(Some(set));
        }
        metrics::gauge!(observe::CONFIG_VERSION).set(version as f64);
        burst_gauges(&self.snapshot().config);
        access_log_target(&self.snapshot().config);

        let mut retired = Vec::new();
        {
            let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let names: Vec<Arc<str>> = running.keys().cloned().collect();
            for name in names {
                if !keep.contains(&name) || bound.contains_key(&name) {
                    if let Some(h) = running.remove(&name) {
                        retired.push(h);
                    }
                }
            }
        }
        for handle in retired {
            tracing::info!(listener = %handle.name(), "listener removed; draining");
            tokio::spawn(handle.drain(drain_timeout));
        }
        self.start_listeners(bound);
        log_applied(version, &self.snapshot().config, took);
        Ok(Applied::New(version))
    }

    fn start_listeners(self: &Arc<Self>, bound: HashMap<Arc<str>, listener::Bound>) {
        let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        for (name, socket) in bound {
            tracing::info!(listener = %name, addr = %socket.local_addr(), "listening");
            let handle = listener::spawn(name.clone(), socket, Arc::clone(self), &self.workers);
            running.insert(name, handle);
        }
    }

    /// The address a listener actually bound (differs from the config for port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        let running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        running.get(name).map(ListenerHandle::local_addr)
    }

    /// False once draining has begun (`/ready` turns 503).
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Stops accepting on every listener and waits, up to `drain_timeout`, for
    /// in-flight requests to finish.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let timeout = self.snapshot().config.server.drain_timeout;
        let handles: Vec<ListenerHandle> = {
            let mut running = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            running.drain().map(|(_, h)| h).collect()
        };
        let drains = handles.into_iter().map(|h| h.drain(timeout));
        futures_util::future::join_all(drains).await;
    }

    /// The state of every cluster, for `/clusters` and load reports.
    pub fn cluster_status(&self) -> Vec<ClusterStatus> {
        self.snapshot().clusters().map(|c| c.status()).collect()
    }

    /// Refreshes the gauges that are read from state rather than counted per request.
    pub fn publish_gauges(&self) {
        for status in self.cluster_status() {
            let name = status.name.clone();
            metrics::gauge!(observe::UPSTREAM_ACTIVE, "cluster" => name.clone())
                .set(status.active_requests as f64);
            metrics::gauge!(observe::UPSTREAM_CONNECTIONS, "cluster" => name.clone())
                .set(status.open_connections as f64);
            metrics::gauge!(observe::ENDPOINTS_AVAILABLE, "cluster" => name)
                .set(status.available_endpoints as f64);
        }
    }
}

impl Proxy {
    fn bind(&self, lc: &ListenerConfig) -> Result<listener::Bound, ApplyError> {
        listener::bind(lc, self.workers.handles().len()).map_err(|source| ApplyError::Bind {
            listener: lc.name.clone(),
            addr: lc.listen,
            source,
        })
    }
}

impl Handler for Proxy {
    type Body = crate::forward::LoggedBody;

    fn connection(&self, listener: &str) -> Option<ConnSettings> {
        let snapshot = self.snapshot.load();
        let listener = snapshot.listener(listener)?;
        Some(ConnSettings {
            limits: listener.config.limits.clone(),
            tls: listener.tls.clone(),
        })
    }

    fn call(
        &self,
        conn: &ConnInfo,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Self::Body>> + Send {
        crate::forward::handle(self.snapshot(), conn, req)
    }
}

/// Points the process's access-log writer at the config's target (a no-op when
/// it already writes there).
fn access_log_target(config: &Config) {
    if let Some(log) = &config.server.access_log {
        crate::access_log::sink::set_target(log.path.clone());
    }
}

/// Logs "config applied" with how long the build and swap took (listeners started
/// after it are not counted), and records it in `floodgate_config_apply_seconds`.
fn log_applied(version: u64, config: &Config, took: std::time::Duration) {
    metrics::histogram!(observe::CONFIG_APPLY_SECONDS).record(took.as_secs_f64());
    let routes: usize = config.listeners.iter().map(|l| l.routes.len()).sum();
    tracing::info!(
        version,
        routes,
        took_ms = format_args!("{:.1}", took.as_secs_f64() * 1000.0),
        "config applied"
    );
}

/// `floodgate_route_burst_active` of every route with a `burst:` block, for the
/// config just published.
fn burst_gauges(config: &crate::config::Config) {
    for l in &config.listeners {
        for r in l.routes.iter().filter(|r| r.burst.is_some()) {
            metrics::gauge!(observe::ROUTE_BURST_ACTIVE, "listener" => l.name.clone(), "route" => r.name.clone())
                .set(if r.burst_active { 1.0 } else { 0.0 });
        }
    }
}
