//! The control-plane client: a proxy whose config file has a `control_plane:` block
//! (a *bootstrap*) long-polls the control plane for its group's snapshots, applies
//! each through [`Proxy::apply`] (the one reload path), ACKs or NACKs it, and
//! persists the last good one so that a restart without the control plane serves it.
//!
//! How bootstrap and snapshot combine ([`Bootstrap::combine`]): a snapshot brings
//! the `listeners`, `clusters` and `server` settings; the bootstrap keeps `admin`
//! (its listener is bound once, at start) and `control_plane`. A snapshot that
//! itself has a `control_plane` block is refused (NACK). The bootstrap's own
//! listeners and clusters, if any, are served until the first snapshot (persisted
//! or received) replaces them.
//!
//! - [`backoff`]: the retry schedule (pure);
//! - [`persist`]: the snapshot file (atomic write, read back);
//! - [`http`]: one exchange with the control plane (HTTP/1.1, plain or rustls);
//! - [`status`]: connected, version, origin, for `/ready`, `/control` and metrics;
//! - [`poll`]: the loop;
//! - [`report`]: the load reports (every `report_interval`, cumulative counters).
//! - [`quota`]: the leases of cluster-wide limits that the reports' replies carry.

pub mod backoff;
pub mod http;
pub mod persist;
pub mod poll;
pub mod quota;
pub mod report;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::file::FileConfig;
use crate::config::{self, Config, ControlPlaneConfig, Validated};
use crate::state::{ApplyError, Proxy};
use crate::workers::Workers;
use status::{Origin, Status, StatusView};

/// The `source` of every config that came from the control plane (received or
/// persisted), so that an identical snapshot is [`crate::state::Applied::Unchanged`].
pub const SNAPSHOT_SOURCE: &str = "control-plane";

/// Why a managed proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config has no `control_plane` block.
    #[error("the config has no control_plane block")]
    NoControlPlane,
    /// The client could not be built (TLS setup).
    #[error("control plane client: {0}")]
    Client(#[from] http::HttpError),
    /// The first config could not be served.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// A validated bootstrap config and the directory snapshots resolve paths against.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    config: Config,
    cp: ControlPlaneConfig,
    base_dir: PathBuf,
}

impl Bootstrap {
    /// `None` when `config` has no `control_plane` block.
    pub fn new(config: Config, base_dir: &Path) -> Option<Self> {
        let cp = config.control_plane.clone()?;
        Some(Self {
            config,
            cp,
            base_dir: base_dir.to_owned(),
        })
    }

    /// The `control_plane` block.
    pub fn control_plane(&self) -> &ControlPlaneConfig {
        &self.cp
    }

    /// Validates a snapshot's text like any config and combines it with the
    /// bootstrap: the snapshot's listeners, clusters and server settings, the
    /// bootstrap's `admin` and `control_plane`. The error is the NACK's text.
    pub fn combine(&self, text: &str, source: &str) -> Result<Config, String> {
        self.combine_reusing(text, None, source, None)
            .map(Validated::into_config)
    }

    /// [`Bootstrap::combine`] of a snapshot's text, or of its file form `file` when the
    /// control plane sent it (the same config, validated by the same validator without
    /// parsing the YAML again), taking the routes of `previous` (the last snapshot
    /// validated) whose file form is unchanged as they were validated
    /// ([`config::parse_str_reusing`]).
    pub fn combine_reusing(
        &self,
        text: &str,
        file: Option<FileConfig>,
        source: &str,
        previous: Option<&Validated>,
    ) -> Result<Validated, String> {
        let validated = match file {
            Some(file) => config::validate_file_reusing(file, source, &self.base_dir, previous),
            None => config::parse_str_reusing(text, source, &self.base_dir, previous),
        };
        let mut validated = validated.map_err(|e| e.to_string())?;
        let c = &mut validated.config;
        if c.control_plane.is_some() {
            return Err(format!(
                "{source}: control_plane: a snapshot must not name a control plane; \
                 only the bootstrap config does"
            ));
        }
        if c.admin != self.config.admin {
            tracing::debug!(
                snapshot = %c.admin.listen,
                bootstrap = %self.config.admin.listen,
                "the snapshot's admin block is ignored: the bootstrap's admin listener stays"
            );
        }
        c.admin = self.config.admin.clone();
        c.control_plane = Some(self.cp.clone());
        c.source = SNAPSHOT_SOURCE.to_owned();
        Ok(validated)
    }

    /// The persisted snapshot, validated and combined, with its version; `None`
    /// (and a log line) when there is none or it is unreadable or invalid.
    pub fn persisted(&self) -> Option<(Config, u64)> {
        let path = &self.cp.snapshot_file;
        let persisted = match persist::read(path, &self.cp.group) {
            Ok(Some(p)) => p,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "persisted snapshot ignored");
                return None;
            }
        };
        match self.combine(&persisted.text, &path.display().to_string()) {
            Ok(c) => Some((c, persisted.version)),
            Err(e) => {
                for line in e.lines() {
                    tracing::warn!(error = line, "persisted snapshot is invalid; ignored");
                }
                None
            }
        }
    }
}

/// A proxy driven by a control plane: the proxy, the client's status, the poll task.
pub struct Managed {
    proxy: Arc<Proxy>,
    status: Arc<Status>,
    task: tokio::task::JoinHandle<()>,
    reports: Option<tokio::task::JoinHandle<()>>,
}

impl Managed {
    /// Starts on the caller's runtime (tests, embedding); see [`Managed::start_on`].
    pub fn start(config: Config, base_dir: &Path) -> Result<Self, StartError> {
        let workers = Workers::current().map_err(ApplyError::Runtime)?;
        Self::start_on(config, base_dir, Arc::new(workers))
    }

    /// Starts serving at once — the persisted snapshot if there is a valid one
    /// that binds, else the bootstrap's own listeners and clusters — and spawns
    /// the poll loop, which brings the config up to date with the control plane.
    pub fn start_on(
        config: Config,
        base_dir: &Path,
        workers: Arc<Workers>,
    ) -> Result<Self, StartError> {
        let boot = Bootstrap::new(config, base_dir).ok_or(StartError::NoControlPlane)?;
        let client = http::ControlHttp::new(&boot.cp)?;
        let mut started = None;
        if let Some((persisted, version)) = boot.persisted() {
            match Proxy::start_on(persisted, Arc::clone(&workers)) {
                Ok(p) => {
                    tracing::info!(version, path = %boot.cp.snapshot_file.display(), "serving the persisted snapshot until the control plane answers");
                    started = Some((p, Some(version), Origin::Persisted));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the persisted snapshot cannot be served; starting from the bootstrap");
                }
            }
        }
        let (proxy, version, origin) = match started {
            Some(s) => s,
            None => (
                Proxy::start_on(boot.config.clone(), workers)?,
                None,
                Origin::Bootstrap,
            ),
        };
        let serving = !proxy.snapshot().config.listeners.is_empty();
        let status = Arc::new(Status::new(StatusView {
            url: boot.cp.url.clone(),
            group: boot.cp.group.clone(),
            node: boot.cp.node_id.clone(),
            connected: false,
            version,
            origin,
            serving,
            last_error: None,
            last_nack: None,
            global_limits: Vec::new(),
        }));
        let reports = if boot.cp.report_interval.is_zero() {
            None
        } else {
            let http = Arc::new(http::ControlHttp::new(&boot.cp)?);
            Some(tokio::spawn(report::run(
                Arc::clone(&proxy),
                http,
                Arc::clone(&status),
                (boot.cp.group.clone(), boot.cp.node_id.clone()),
                boot.cp.report_interval,
            )))
        };
        let task = tokio::spawn(poll::run(
            Arc::clone(&proxy),
            Arc::new(boot),
            client,
            Arc::clone(&status),
        ));
        Ok(Self {
            proxy,
            status,
            task,
            reports,
        })
    }

    /// The running proxy.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// The client's status (for the admin server).
    pub fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// Stops polling and reporting (the proxy keeps serving; drain it separately).
    pub fn stop_polling(&self) {
        self.task.abort();
        if let Some(r) = &self.reports {
            r.abort();
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop_polling();
    }
}
