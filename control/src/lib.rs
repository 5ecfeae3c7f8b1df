//! `floodgate-control`: Floodgate's control plane, first part — versioned config
//! push to proxies (long poll, ACK/NACK, node status) and the endpoint registry,
//! over plain HTTP/JSON (`docs/control-plane.md` has the API).
//!
//! The modules, leaves first:
//!
//! - [`config`]: `control.yaml` file types → validation → [`config::ControlConfig`];
//! - [`store`]: the storage interface (versions, snapshots, nodes, registrations)
//!   and its in-memory implementation;
//! - [`snapshot`]: a group's config merged with the registry, validated by the
//!   proxy's own validator (`floodgate::config::parse_str`);
//! - [`plane`]: the shared state and the one publish path;
//! - [`source`]: the watched config directory; [`registry`]: register, heartbeat,
//!   deregister, TTL sweep; [`push`]: long polls;
//! - [`reports`]: the proxies' load reports, windowed; [`autoscale`]: the
//!   decision (pure) and its task, publishing desired replicas per cluster;
//! - [`tls`]: TLS on the API (the proxy's rustls builder), the handshake of one connection;
//! - [`api`]: the HTTP API and its bearer-token auth.
//!
//! # Embedding
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = floodgate_control::config::load_file("configs/control.yaml".as_ref())?;
//! let running = floodgate_control::start(config).await?;
//! println!("control plane on {}", running.local_addr());
//! running.wait().await;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod autoscale;
pub mod burst;
pub mod config;
pub mod fence;
pub mod observe;
pub mod plane;
pub mod push;
pub mod quota;
pub mod registry;
pub mod replicas;
pub mod reports;
pub mod scaler;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config::{ConfigErrors, ControlConfig};
use crate::plane::Plane;
use crate::store::memory::MemoryStore;

/// A running control plane; dropping it stops every task it started (and SIGKILLs
/// the process scaler's replicas: [`Running::shutdown`] stops them gracefully).
pub struct Running {
    addr: SocketAddr,
    plane: Arc<Plane>,
    scalers: Option<scaler::Scalers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (for embedding and tests).
    pub fn plane(&self) -> &Arc<Plane> {
        &self.plane
    }

    /// The process scalers' status, by cluster.
    pub fn scalers(&self) -> Vec<scaler::ProcessStatus> {
        self.scalers
            .as_ref()
            .map(|s| s.status())
            .unwrap_or_default()
    }

    /// Waits until the server task ends (it does not, unless aborted).
    pub async fn wait(mut self) {
        if let Some(server) = self.tasks.pop() {
            let _ = server.await;
        }
    }

    /// Stops the scalers gracefully (every replica they started is deregistered,
    /// SIGTERMed, SIGKILLed after its `stop_timeout`, and reaped), then the rest.
    pub async fn shutdown(mut self) {
        if let Some(scalers) = self.scalers.take() {
            scalers.shutdown().await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the control plane with the in-memory store: watches the config
/// directory, loads it, starts the registry sweep and serves the API.
pub async fn start(config: ControlConfig) -> anyhow::Result<Running> {
    // Install the Prometheus recorder before anything is counted.
    floodgate::observe::prometheus();
    let tls = match &config.tls {
        Some(t) => Some(tls::acceptor(t).map_err(|e| anyhow::anyhow!("tls: {e}"))?),
        None => None,
    };
    let socket = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", config.listen))?;
    let addr = socket.local_addr()?;
    let plane = Arc::new(Plane::new(config, Arc::new(MemoryStore::new())));
    // The watcher first, so a change made while the first load runs is not missed.
    let watcher = Arc::clone(&plane).watch_dir()?;
    plane.load_dir()?;
    let sweeper = registry::spawn_sweeper(Arc::clone(&plane));
    let scalers = scaler::Scalers::start(Arc::clone(&plane), addr)?;
    let autoscaler = autoscale::run::spawn(Arc::clone(&plane));
    let burst = burst::spawn(Arc::clone(&plane));
    let server = tokio::spawn(api::serve(socket, Arc::clone(&plane), tls));
    tracing::info!(%addr, tls = plane.config.tls.is_some(), configs_dir = %plane.config.configs_dir.display(), groups = plane.groups().len(), "control plane listening");
    Ok(Running {
        addr,
        plane,
        scalers: Some(scalers),
        tasks: vec![watcher, sweeper, autoscaler, burst, server],
    })
}

/// What `--check` found: the control config and every group file, validated
/// with the proxy's own validator. Returns the number of groups, or every error.
pub fn check(path: &Path) -> Result<usize, Vec<String>> {
    let config = config::load_file(path).map_err(|e: ConfigErrors| vec![e.to_string()])?;
    let files = source::scan(&config.configs_dir)
        .map_err(|e| vec![format!("{}: {e}", config.configs_dir.display())])?;
    let mut errors = Vec::new();
    for file in files.values() {
        match &file.text {
            Err(e) => errors.push(e.clone()),
            Ok(text) => {
                let source = file.path.display().to_string();
                if let Err(e) = snapshot::validate(text, &source, &config.configs_dir) {
                    errors.push(e.to_string());
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(files.len())
    } else {
        Err(errors)
    }
}
