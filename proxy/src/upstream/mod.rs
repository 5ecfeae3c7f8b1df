//! Talking to one endpoint: connecting (TCP, TLS), the HTTP/1.1 client driven in
//! the request's own task, HTTP/2 over hyper's client, the per-endpoint pool of
//! keep-alive connections, and the cluster-wide connection limits the pools share.
//!
//! Nothing here chooses endpoints or knows clusters' policies; that is
//! [`crate::balance`], which sits above.

pub mod connect;
pub mod http1;
pub mod http2;
pub mod limits;
pub mod pool;
pub mod read_timeout;

pub use connect::{Transport, UpstreamTls};
pub use limits::{ConnLimits, ConnPermit, PendingGuard};
pub use pool::{send, Conn, Pool, PoolSettings, Sent, Siblings};
