//! Floodgate's data plane: a burst-tolerant reverse proxy and service-mesh sidecar.
//!
//! The request path, outer to inner (see `docs/request-path.md`):
//! [`listener`] accepts and serves HTTP/1.1 and HTTP/2 (optionally over TLS) →
//! [`proxy`] picks a route from the published [`router`] table and fixes headers →
//! [`stack`] runs the route's layers (timeout, retry) → [`balance`] picks an
//! endpoint of the cluster and sends the request on a pooled connection.
//! [`health`] and outlier detection decide which endpoints are eligible;
//! [`state`] holds the published snapshot that a reload swaps atomically;
//! [`workers`] are the per-core runtimes that accept and serve connections.

pub mod admin;
pub mod admission;
pub mod balance;
pub mod body;
pub mod config;
pub mod error;
pub mod headers;
pub mod health;
pub mod listener;
pub mod observe;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod stack;
pub mod state;
pub mod time;
pub mod tls;
pub mod workers;
