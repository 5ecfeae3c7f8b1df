//! What the client knows about the control plane, for `/ready`, `/control` and the
//! metrics: connected or not, the version running, where the running config came
//! from, the last error and the last refused version. One writer (the poll loop),
//! any number of readers, behind `ArcSwap`.

use arc_swap::ArcSwap;
use serde::Serialize;

/// `1` while the last exchange with the control plane succeeded, else `0`.
pub const CONTROL_CONNECTED: &str = "floodgate_control_connected";
/// The control plane's version of the running snapshot (0 before the first).
pub const CONTROL_VERSION: &str = "floodgate_control_version";
/// Snapshots received, by `result`: `ack` (applied) or `nack` (refused).
pub const CONTROL_APPLIES: &str = "floodgate_control_applies_total";

/// Where the running config came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The bootstrap file's own listeners and clusters (no snapshot yet).
    Bootstrap,
    /// The snapshot persisted by an earlier run (the control plane not heard yet).
    Persisted,
    /// A snapshot received from the control plane in this run.
    ControlPlane,
}

/// A version the proxy refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    /// The refused version.
    pub version: u64,
    /// The error sent with the NACK.
    pub error: String,
}

/// One view of the client's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusView {
    /// The control plane's URL.
    pub url: String,
    /// This proxy's group.
    pub group: String,
    /// This proxy's node id.
    pub node: String,
    /// Whether the last exchange with the control plane succeeded.
    pub connected: bool,
    /// The control plane's version of the running config (`None`: a bootstrap config).
    pub version: Option<u64>,
    /// Where the running config came from.
    pub origin: Origin,
    /// Whether the running config has something to serve (a listener).
    pub serving: bool,
    /// Why the last exchange failed, while not connected.
    pub last_error: Option<String>,
    /// The last version refused.
    pub last_nack: Option<Nack>,
    /// The routes' cluster-wide limits: share in force, lease or fallback.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub global_limits: Vec<super::quota::ShareView>,
}

/// The shared status.
#[derive(Debug)]
pub struct Status {
    view: ArcSwap<StatusView>,
    /// Written by the report loop (the view's other writer is the poll loop).
    shares: ArcSwap<Vec<super::quota::ShareView>>,
}

impl Status {
    /// A status starting at `view`; publishes the gauges.
    pub fn new(view: StatusView) -> Self {
        publish_gauges(&view);
        Self {
            view: ArcSwap::from_pointee(view),
            shares: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// The current view.
    pub fn view(&self) -> StatusView {
        let mut view = (**self.view.load()).clone();
        view.global_limits = (**self.shares.load()).clone();
        view
    }

    /// The cluster-wide limits' shares now (the report loop's).
    pub(super) fn set_shares(&self, shares: Vec<super::quota::ShareView>) {
        self.shares.store(std::sync::Arc::new(shares));
    }

    /// Updates the view (single writer: the poll loop) and the gauges.
    pub(super) fn update(&self, change: impl FnOnce(&mut StatusView)) {
        let mut next = self.view();
        change(&mut next);
        publish_gauges(&next);
        self.view.store(std::sync::Arc::new(next));
    }

    /// The version the poll carries: the running one, 0 when none.
    pub fn running_version(&self) -> u64 {
        self.view.load().version.unwrap_or(0)
    }

    /// Ready to take traffic: the running config has a listener (from the
    /// bootstrap, a persisted snapshot or the control plane), connected or not.
    pub fn is_serving(&self) -> bool {
        self.view.load().serving
    }

    /// A short text for `/ready`.
    pub fn summary(&self) -> String {
        let v = self.view.load();
        let version = v
            .version
            .map_or_else(|| "none".to_owned(), |n| n.to_string());
        let origin = match v.origin {
            Origin::Bootstrap => "bootstrap",
            Origin::Persisted => "persisted",
            Origin::ControlPlane => "control_plane",
        };
        format!(
            "control_plane: {} version={version} origin={origin}\n",
            if v.connected {
                "connected"
            } else {
                "not_connected"
            }
        )
    }
}

fn publish_gauges(v: &StatusView) {
    metrics::gauge!(CONTROL_CONNECTED).set(if v.connected { 1.0 } else { 0.0 });
    metrics::gauge!(CONTROL_VERSION).set(v.version.unwrap_or(0) as f64);
}
