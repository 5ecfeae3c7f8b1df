//! Scalers: what acts on the autoscaler's decisions (`scalers:` in `control.yaml`).
//!
//! A driver task subscribes to the autoscaler's [`crate::autoscale::ScaleBoard`]
//! ([`Plane::scale_watch`]) and, for each cluster with scalers, replaces that
//! cluster's latest [`ScaleState`] in a `watch` channel whenever its `desired`
//! changes. It never waits on a scaler: each scaler is its own task reading its
//! channel (latest value wins), so a slow replica start or a dead webhook cannot
//! hold up the autoscaler or another cluster.
//!
//! - [`process`]: the local process scaler (child processes, drained before stop);
//! - [`plan`]: its decisions, pure;
//! - [`webhook`]: a POST of the state on each change, retried with backoff.

pub mod plan;
pub mod process;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::autoscale::ScaleState;
use crate::plane::Plane;

pub use crate::replicas::{ProcessStatus, ReplicaStatus};
pub use process::ProcessScaler;
pub use webhook::{Webhook, WebhookError};

/// Counter: replicas started by the process scaler, by cluster.
pub const STARTS_TOTAL: &str = "floodgate_control_scaler_starts_total";
/// Counter: started replicas that registered, by cluster.
pub const READY_TOTAL: &str = "floodgate_control_scaler_ready_total";
/// Counter: replicas that failed (exited on their own, never registered, could not start), by cluster.
pub const FAILURES_TOTAL: &str = "floodgate_control_scaler_failures_total";
/// Gauge: the process scaler's replicas, by cluster and phase (`starting`, `ready`, `draining`, `stopping`).
pub const REPLICAS: &str = "floodgate_control_scaler_replicas";
/// Counter: webhook POSTs, by cluster and result (`ok`, `error`).
pub const WEBHOOK_POSTS: &str = "floodgate_control_webhook_posts_total";

/// What a scaler reads: its cluster's latest state (None before the first decision).
pub type StateRx = watch::Receiver<Option<Arc<ScaleState>>>;

/// Why the scalers could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    /// The app token cannot be passed in an environment variable.
    #[error("tokens.app must be UTF-8 text to be handed to replicas in FLOODGATE_APP_TOKEN")]
    Token,
    /// A webhook's client could not be built.
    #[error("scalers.{cluster}.webhook: {source}")]
    Webhook {
        /// The cluster.
        cluster: String,
        /// Why.
        source: WebhookError,
    },
}

/// The running scalers; [`Scalers::shutdown`] stops every replica they started.
/// Dropped without it, the tasks are aborted and every child is SIGKILLed
/// (`kill_on_drop`).
pub struct Scalers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    plane: Arc<Plane>,
}

impl Scalers {
    /// Starts the driver and one task per configured scaler. `api` is the address
    /// the API is bound to: `{register_url}` defaults to it (`127.0.0.1` for a
    /// wildcard address; `https://` with `tls:`).
    pub fn start(plane: Arc<Plane>, api: SocketAddr) -> Result<Self, ScalerError> {
        let (stop, _) = watch::channel(false);
        let mut scalers = Scalers {
            stop,
            tasks: Vec::new(),
            plane: Arc::clone(&plane),
        };
        if plane.config.scalers.is_empty() {
            return Ok(scalers);
        }
        let default_url = register_url(api, plane.config.tls.is_some());
        let token = String::from_utf8(plane.config.tokens.app().expose().to_vec())
            .map_err(|_| ScalerError::Token)?;
        let mut feeds = BTreeMap::new();
        for (cluster, cs) in &plane.config.scalers {
            let (tx, rx) = watch::channel(None::<Arc<ScaleState>>);
            if let Some(p) = &cs.process {
                let url = p
                    .register_url
                    .clone()
                    .unwrap_or_else(|| default_url.clone());
                let scaler =
                    ProcessScaler::new(cluster, p.clone(), Arc::clone(&plane), url, token.clone());
                let desired = rx.clone();
                let stop = scalers.stop.subscribe();
                scalers.tasks.push(tokio::spawn(scaler.run(desired, stop)));
            }
            if let Some(w) = &cs.webhook {
                let hook =
                    Webhook::new(cluster, w.clone()).map_err(|source| ScalerError::Webhook {
                        cluster: cluster.clone(),
                        source,
                    })?;
                let stop = scalers.stop.subscribe();
                scalers.tasks.push(tokio::spawn(hook.run(rx.clone(), stop)));
            }
            feeds.insert(cluster.clone(), tx);
        }
        let stop = scalers.stop.subscribe();
        scalers
            .tasks
            .push(tokio::spawn(drive(plane.scale_watch(), feeds, stop)));
        Ok(scalers)
    }

    /// Every process scaler's status, by cluster.
    pub fn status(&self) -> Vec<ProcessStatus> {
        self.plane.replicas.all()
    }

    /// Stops the scalers: every replica is deregistered, SIGTERMed, SIGKILLed after
    /// its `stop_timeout`, and reaped before this returns.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Scalers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Forwards each cluster's state to its scalers when its `desired` changes.
async fn drive(
    mut board: watch::Receiver<crate::autoscale::ScaleMap>,
    feeds: BTreeMap<String, watch::Sender<Option<Arc<ScaleState>>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let map = Arc::clone(&board.borrow_and_update());
        for (cluster, tx) in &feeds {
            let Some(state) = map.get(cluster) else {
                continue;
            };
            tx.send_if_modified(|current| {
                if current.as_ref().is_some_and(|c| c.desired == state.desired) {
                    return false;
                }
                *current = Some(Arc::new(state.clone()));
                true
            });
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            changed = board.changed() => if changed.is_err() { return },
        }
    }
}

/// `{register_url}` by default: this control plane's own API.
fn register_url(api: SocketAddr, tls: bool) -> String {
    let ip = match api.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, api.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_url_is_the_api_on_loopback_for_a_wildcard() {
        let any: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert_eq!(register_url(any, false), "http://127.0.0.1:7070");
        let v6: SocketAddr = "[::1]:7443".parse().unwrap();
        assert_eq!(register_url(v6, true), "https://[::1]:7443");
    }
}
