//! Metric names (rendered by the proxy's Prometheus recorder on `/metrics`).

/// Counter: snapshots published, by group.
pub const PUBLISHED: &str = "floodgate_control_published_total";
/// Gauge: the published version, by group.
pub const GROUP_VERSION: &str = "floodgate_control_group_version";
/// Counter: configs refused, by stage (`file`, `merged`).
pub const REJECTED: &str = "floodgate_control_rejected_total";
/// Gauge: long polls waiting now.
pub const POLLS_WAITING: &str = "floodgate_control_polls_waiting";
/// Counter: snapshot answers, by result (`snapshot`, `not_modified`).
pub const POLLS: &str = "floodgate_control_polls_total";
/// Gauge: live registrations.
pub const REGISTRATIONS: &str = "floodgate_control_registrations";
/// Counter: registry changes, by change (`registered`, `deregistered`, `expired`).
pub const REGISTRY_CHANGES: &str = "floodgate_control_registry_changes_total";
/// Counter: requests refused by auth, by status (`401`, `403`).
pub const AUTH_REFUSED: &str = "floodgate_control_auth_refused_total";
/// Counter: API connections refused before HTTP, by reason (`plaintext`, `handshake`, `timeout`, `closed`).
pub const TLS_REFUSED: &str = "floodgate_control_tls_refused_total";
/// Gauge: the autoscaler's desired replicas, by cluster.
pub const DESIRED_REPLICAS: &str = "floodgate_control_desired_replicas";
/// Gauge: ready replicas (registered endpoints, else static ones), by cluster.
pub const READY_REPLICAS: &str = "floodgate_control_ready_replicas";
/// Gauge: the demand behind desired, in the policy's unit, by cluster.
pub const OBSERVED_DEMAND: &str = "floodgate_control_observed_demand";
/// Gauge: 1 while the cluster is in panic mode, by cluster.
pub const PANIC: &str = "floodgate_control_panic";
/// Counter: load reports received, by result (`ok`, `refused`).
pub const REPORTS: &str = "floodgate_control_reports_total";
