//! The published state: an immutable [`Snapshot`] behind `ArcSwap`, and the one
//! reload path ([`Proxy::apply`]) that file watch, SIGHUP and — later — the control
//! plane all drive.
//!
//! A reload builds a new snapshot from a validated [`Config`], reusing every
//! cluster whose config did not change (pools, health and ejections survive) and
//! every TLS acceptor whose certificates did not change; binds listeners that are
//! new; then publishes with one pointer swap and drains listeners that went away.
//! If anything fails before the swap, the running snapshot keeps serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use crate::balance::{Cluster, ClusterError, ClusterStatus};
use crate::config::{Config, ListenerConfig};
use crate::listener::{self, ListenerHandle};
use crate::observe;
use crate::router::{Arm, Route, Router};
use crate::stack::{self, RouteState};
use crate::workers::Workers;

/// A listener's published part: its config, router and TLS acceptor.
pub struct ListenerRuntime {
    /// The listener's config.
    pub config: ListenerConfig,
    /// Its route table.
    pub router: Router,
    /// TLS acceptor, when the listener terminates TLS.
    pub tls: Option<TlsAcceptor>,
}

/// Everything a request needs, immutable once published.
pub struct Snapshot {
    /// Monotonic config version (1 for the first config).
    pub version: u64,
    /// The validated config this snapshot runs.
    pub config: Arc<Config>,
    listeners: HashMap<Arc<str>, Arc<ListenerRuntime>>,
    clusters: Vec<Arc<Cluster>>,
}

impl Snapshot {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerRuntime> {
        self.listeners.get(name).map(|l| l.as_ref())
    }

    /// The clusters in config order.
    pub fn clusters(&self) -> &[Arc<Cluster>] {
        &self.clusters
    }

    /// Builds a snapshot, reusing from `previous` what did not change.
    fn build(
        config: Config,
        version: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Self, ApplyError> {
        let mut clusters: Vec<Arc<Cluster>> = Vec::with_capacity(config.clusters.len());
        for cc in &config.clusters {
            let reused = previous
                .and_then(|p| p.clusters.iter().find(|c| c.name() == cc.name))
                .filter(|c| c.config() == cc)
                .cloned();
            clusters.push(match reused {
                Some(c) => c,
                None => Cluster::new(cc.clone())?,
            });
        }
        let by_name: HashMap<&str, &Arc<Cluster>> =
            clusters.iter().map(|c| (c.name(), c)).collect();

        let mut listeners = HashMap::with_capacity(config.listeners.len());
        for lc in &config.listeners {
            let previous_listener = previous.and_then(|p| p.listeners.get(lc.name.as_str()));
            let tls = match (&lc.tls, previous_listener) {
                (None, _) => None,
                (Some(t), Some(prev)) if prev.config.tls.as_ref() == Some(t) => prev.tls.clone(),
                (Some(t), _) => Some(TlsAcceptor::from(crate::tls::server_config(t).map_err(
                    |source| ApplyError::Tls {
                        listener: lc.name.clone(),
                        source,
                    },
                )?)),
            };
            let mut routes = Vec::with_capacity(lc.routes.len());
            for rc in &lc.routes {
                let previous_state = previous_listener
                    .and_then(|l| l.router.route(&rc.name))
                    .map(|r| &r.state);
                let route_state = RouteState::new(rc, previous_state);
                let mut arms = Vec::new();
                for (name, weight) in rc.backend_arms() {
                    let cluster = by_name
                        .get(name)
                        .ok_or_else(|| ApplyError::UnknownCluster {
                            route: rc.name.clone(),
                            cluster: name.to_owned(),
                        })?;
                    arms.push(Arm {
                        cluster: cluster.label().clone(),
                        weight,
                        service: stack::route_stack(rc, &route_state, Arc::clone(cluster)),
                        metrics: observe::RequestMetrics::new(
                            metrics::SharedString::from(rc.name.clone()),
                            cluster.label().clone(),
                        ),
                    });
                }
                routes.push(Route::new(rc.clone(), arms, route_state));
            }
            listeners.insert(
                Arc::from(lc.name.as_str()),
                Arc::new(ListenerRuntime {
                    config: lc.clone(),
                    router: Router::new(routes),
                    tls,
                }),
            );
        }
        Ok(Self {
            version,
            config: Arc::new(config),
            listeners,
            clusters,
        })
    }
}

/// Why a validated config could not be applied; the running one keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A cluster could not be built.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A listener's TLS settings failed.
    #[error("listener {listener}: tls: {source}")]
    Tls {
        /// Listener name.
        listener: String,
        /// The TLS error.
        source: crate::tls::TlsError,
    },
    /// A route names a cluster that does not exist (validation normally catches this).
    #[error("route {route}: unknown cluster {cluster}")]
    UnknownCluster {
        /// Route name.
        route: String,
        /// Cluster name.
        cluster: String,
    },
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
        metrics::gauge!(observe::CONFIG_VERSION).set(1.0);
        Ok(proxy)
    }

    /// The published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Applies a validated config: the one reload path. On error nothing changes.
    pub fn apply(self: &Arc<Self>, config: Config) -> Result<Applied, ApplyError> {
        let _serial = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.snapshot();
        if *current.config == config {
            metrics::counter!(observe::CONFIG_RELOADS, "result" => "unchanged").increment(1);
            return Ok(Applied::Unchanged(current.version));
        }
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let result = self.apply_inner(config, version, &current);
        let label = if result.is_ok() { "applied" } else { "failed" };
        metrics::counter!(observe::CONFIG_RELOADS, "result" => label).increment(1);
        result
    }

    fn apply_inner(
        self: &Arc<Self>,
        config: Config,
        version: u64,
        current: &Snapshot,
    ) -> Result<Applied, ApplyError> {
        let next = Snapshot::build(config, version, Some(current))?;
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
        let keep: Vec<Arc<str>> = next.listeners.keys().cloned().collect();
        self.snapshot.store(Arc::new(next));
        metrics::gauge!(observe::CONFIG_VERSION).set(version as f64);

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
        tracing::info!(version, "config applied");
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
        self.snapshot()
            .clusters
            .iter()
            .map(|c| c.status())
            .collect()
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
