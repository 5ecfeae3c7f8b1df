//! Floodgate load-test kit.
//!
//! Two tools share this library:
//! - `floodgate-load`, an open-loop (constant arrival rate) HTTP load generator whose
//!   latencies are measured from each request's *intended* send time, so a stalled server
//!   shows up in the percentiles (no coordinated omission);
//! - `healthcode-app`, a demo upstream with a real, finite capacity (workers × service
//!   time, a bounded FIFO queue, 503 beyond it).
//!
//! A run flows through the modules in this order:
//! [`profile`] (what rate, when) → [`schedule`] (intended send instants) →
//! [`runner`] (in-flight cap, queue) → [`client`] (connections, one request) →
//! [`recorder`] (per-second timeline, histograms) → [`report`] (JSON, chart, summary) →
//! [`check`] (CI gates).

pub mod app;
pub mod check;
pub mod client;
pub mod duration;
pub mod keys;
pub mod load;
pub mod profile;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod target;
