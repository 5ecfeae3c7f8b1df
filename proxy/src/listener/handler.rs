//! What a listener needs from whoever serves its requests: the [`Handler`] trait,
//! the per-connection settings it reads, and the connection facts it passes on.
//!
//! The listener knows sockets, TLS, HTTP serving and deadlines; it does not know
//! routes, clusters or the published snapshot. The proxy's state implements
//! [`Handler`] (see `crate::state`), tests may implement it with anything.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio_rustls::TlsAcceptor;

use crate::body::BoxError;
use crate::config::ListenerLimits;

/// Serves the requests a listener accepts.
pub trait Handler: Send + Sync + 'static {
    /// The body of its responses, held by the connection as it is (not boxed again)
    /// while it is written.
    type Body: http_body::Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static;

    /// The settings of a new connection on `listener` (read once per connection, so
    /// a reload takes effect for the connections that come after it); `None` when
    /// the listener is no longer configured, which closes the connection.
    fn connection(&self, listener: &str) -> Option<ConnSettings>;

    /// Answers one request that arrived on `conn`.
    fn call(
        &self,
        conn: &ConnInfo,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Self::Body>> + Send;
}

/// A listener's settings for one connection.
#[derive(Clone)]
pub struct ConnSettings {
    /// Head size, deadlines and the body limit.
    pub limits: ListenerLimits,
    /// The TLS acceptor, when the listener terminates TLS.
    pub tls: Option<TlsAcceptor>,
}

/// What the proxy knows about the downstream connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Listener name.
    pub listener: Arc<str>,
    /// Client address.
    pub client: SocketAddr,
    /// True when the connection is TLS.
    pub tls: bool,
    /// The client IP as header text, formatted once per connection for `x-forwarded-for`.
    pub client_text: HeaderValue,
}

impl ConnInfo {
    /// The info of a plain-text connection from `client` on `listener`.
    pub fn new(listener: Arc<str>, client: SocketAddr) -> Self {
        let text = client.ip().to_canonical().to_string();
        Self {
            listener,
            client,
            tls: false,
            client_text: HeaderValue::try_from(text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        }
    }
}
