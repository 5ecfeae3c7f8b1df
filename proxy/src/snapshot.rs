//! The published snapshot: everything a request needs, immutable once built.
//!
//! [`Snapshot::build`] turns a validated [`Config`] into routers, route stacks and
//! clusters, reusing from the running snapshot what did not change: a cluster whose
//! policy is unchanged keeps its state (admission limit, breaker, pools, health and
//! ejections) and takes the new endpoint set in place; a route whose rate-limit or
//! cache settings are unchanged keeps its buckets and cached responses; a listener
//! whose certificates are unchanged keeps its TLS acceptor. Health checks are
//! started here, for the clusters that are new.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::balance::{Cluster, ClusterError, Endpoint};
use crate::config::{Config, ListenerConfig, RouteConfig};
use crate::health::{self, HealthChecks};
use crate::observe;
use crate::router::{Arm, Route, Router};
use crate::stack::{self, RouteState};

/// A listener's published part: its config, router and TLS acceptor.
pub struct ListenerRuntime {
    /// The listener's config without its routes (empty here: they are in `router`,
    /// and in [`Snapshot::config`]), so a snapshot holds no third copy of every route.
    pub config: ListenerConfig,
    /// Its route table.
    pub router: Router,
    /// TLS acceptor, when the listener terminates TLS.
    pub tls: Option<TlsAcceptor>,
}

/// A cluster as a snapshot holds it: the cluster and its health checks, which
/// run as long as some snapshot holds the entry.
#[derive(Clone)]
struct ClusterEntry {
    cluster: Arc<Cluster>,
    _health: Option<Arc<HealthChecks>>,
}

/// Everything a request needs, immutable once published.
pub struct Snapshot {
    /// Monotonic config version (1 for the first config).
    pub version: u64,
    /// The validated config this snapshot runs.
    pub config: Arc<Config>,
    listeners: HashMap<Arc<str>, Arc<ListenerRuntime>>,
    clusters: Vec<ClusterEntry>,
    /// New endpoint sets of reused clusters, handed over once this snapshot is
    /// published ([`Snapshot::take_endpoint_changes`]).
    endpoint_changes: Vec<(Arc<Cluster>, Vec<Arc<Endpoint>>)>,
}

impl Snapshot {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerRuntime> {
        self.listeners.get(name).map(|l| l.as_ref())
    }

    /// The listeners by name.
    pub fn listeners(&self) -> impl Iterator<Item = (&str, &ListenerRuntime)> {
        self.listeners.iter().map(|(n, l)| (n.as_ref(), l.as_ref()))
    }

    /// The clusters in config order.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.iter().map(|e| &e.cluster)
    }

    /// Builds a snapshot of `config`, reusing from `previous` what did not change.
    pub fn build(
        config: Config,
        version: u64,
        previous: Option<&Snapshot>,
    ) -> Result<Self, BuildError> {
        let mut clusters: Vec<ClusterEntry> = Vec::with_capacity(config.clusters.len());
        let mut endpoint_changes = Vec::new();
        // By name once, so a reload of many clusters or routes stays linear.
        let previous_clusters: HashMap<&str, &ClusterEntry> = previous
            .map(|p| p.clusters.iter().map(|e| (e.cluster.name(), e)).collect())
            .unwrap_or_default();
        for cc in &config.clusters {
            let reused = previous_clusters
                .get(cc.name.as_str())
                .filter(|e| e.cluster.can_update_to(cc));
            clusters.push(match reused {
                Some(entry) => {
                    if let Some(set) = entry.cluster.prepare_endpoints(&cc.endpoints) {
                        endpoint_changes.push((Arc::clone(&entry.cluster), set));
                    }
                    (*entry).clone()
                }
                None => {
                    let cluster = Cluster::new(cc.clone())?;
                    let health = health::spawn(&cluster).map(Arc::new);
                    ClusterEntry {
                        cluster,
                        _health: health,
                    }
                }
            });
        }
        let by_name: HashMap<&str, &Arc<Cluster>> = clusters
            .iter()
            .map(|e| (e.cluster.name(), &e.cluster))
            .collect();

        let mut listeners = HashMap::with_capacity(config.listeners.len());
        for lc in &config.listeners {
            let previous_listener = previous.and_then(|p| p.listeners.get(lc.name.as_str()));
            let tls = match (&lc.tls, previous_listener) {
                (None, _) => None,
                (Some(t), Some(prev)) if prev.config.tls.as_ref() == Some(t) => prev.tls.clone(),
                (Some(t), _) => Some(TlsAcceptor::from(crate::tls::server_config(t).map_err(
                    |source| BuildError::Tls {
                        listener: lc.name.clone(),
                        source,
                    },
                )?)),
            };
            let previous_routes: foldhash::HashMap<&str, &Arc<Route>> = previous_listener
                .map(|l| {
                    l.router
                        .routes()
                        .iter()
                        .map(|r| (r.config.name.as_str(), r))
                        .collect()
                })
                .unwrap_or_default();
            let mut routes = Vec::with_capacity(lc.routes.len());
            for rc in &lc.routes {
                let previous_route = previous_routes.get(rc.name.as_str()).copied();
                // An unchanged route towards unchanged clusters is the running one: its
                // stack, state and metric handles are taken as they are, not rebuilt.
                if let Some(kept) = previous_route.filter(|r| unchanged(r, rc, &by_name)) {
                    routes.push(Arc::clone(kept));
                    continue;
                }
                let route_state = RouteState::new(rc, previous_route.map(|r| &r.state));
                let backends = rc.backend_arms();
                // Exactly as many as there are: an `Arm` is some 400 bytes, and a
                // growing Vec would reserve four (1.6 KB per route at 10,000 routes).
                let mut arms = Vec::with_capacity(backends.len());
                for (name, weight) in backends {
                    let cluster = by_name
                        .get(name)
                        .ok_or_else(|| BuildError::UnknownCluster {
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
                        load: Arc::clone(cluster.load()),
                    });
                }
                routes.push(Arc::new(Route::new(Arc::clone(rc), arms, route_state)));
            }
            listeners.insert(
                Arc::from(lc.name.as_str()),
                Arc::new(ListenerRuntime {
                    config: without_routes(lc),
                    router: Router::shared(routes),
                    tls,
                }),
            );
        }
        Ok(Self {
            version,
            config: Arc::new(config),
            listeners,
            clusters,
            endpoint_changes,
        })
    }

    /// The endpoint sets that reused clusters are to take when this snapshot is
    /// published; applying them before would change the running config's clusters
    /// even if this one were then rejected.
    pub fn take_endpoint_changes(&mut self) -> Vec<(Arc<Cluster>, Vec<Arc<Endpoint>>)> {
        std::mem::take(&mut self.endpoint_changes)
    }
}

/// Whether the running `route` can serve `config` as it is: the same settings and
/// every arm towards the very cluster the new snapshot has under that name (a
/// rebuilt cluster has new admission and breaker state, which the stack holds).
fn unchanged(
    route: &Route,
    config: &Arc<RouteConfig>,
    clusters: &HashMap<&str, &Arc<Cluster>>,
) -> bool {
    // A route the validation took unchanged is the very config the running route holds.
    (Arc::ptr_eq(&route.config, config) || route.config == *config)
        && route.arms.iter().all(|arm| {
            clusters
                .get(arm.cluster.as_ref())
                .is_some_and(|c| Arc::ptr_eq(c.load(), &arm.load))
        })
}

/// A listener's settings with `routes` left empty.
fn without_routes(lc: &ListenerConfig) -> ListenerConfig {
    ListenerConfig {
        name: lc.name.clone(),
        listen: lc.listen,
        tls: lc.tls.clone(),
        limits: lc.limits.clone(),
        trusted_proxies: lc.trusted_proxies.clone(),
        headers: lc.headers,
        routes: Vec::new(),
    }
}

/// Why a validated config could not be built into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
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
}
