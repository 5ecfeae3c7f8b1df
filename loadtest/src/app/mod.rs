//! `healthcode-app`: a demo upstream that behaves like a real, I/O-bound app.
//!
//! - [`capacity`]: at most `workers` requests in service, a FIFO queue of at most
//!   `max_queue` waiting, 503 immediately beyond it;
//! - [`handlers`]: the routes (`/api/v1/codes/{id}`, `/api/v1/scans`, `/healthz`, `/stats`);
//! - [`server`]: HTTP/1.1 + h2c serving with graceful shutdown, startable in-process on
//!   `127.0.0.1:0` for tests;
//! - [`register`]: self-registration with Floodgate's control plane (`--register`).
//!
//! Service time is a tokio sleep while holding a worker slot: it models an app whose
//! requests wait on I/O (a database, a cache), not one that burns CPU, so a 2-core test
//! machine can host apps with a realistic capacity. Throughput is then bounded by
//! `workers / service_time` requests per second.

pub mod capacity;
pub mod handlers;
pub mod register;
pub mod server;

use std::time::Duration;

/// The app's settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Requests in service at once.
    pub workers: usize,
    /// Time each request holds its worker slot.
    pub service_time: Duration,
    /// Requests allowed to wait for a slot; beyond this, 503 at once.
    pub max_queue: usize,
    /// Fraction of served requests answered 500 (0.0..=1.0).
    pub fail_rate: f64,
    /// `Cache-Control` value added to code responses.
    pub cache_control: Option<String>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            service_time: Duration::from_millis(5),
            max_queue: 64,
            fail_rate: 0.0,
            cache_control: None,
        }
    }
}
