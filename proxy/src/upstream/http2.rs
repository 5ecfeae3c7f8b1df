//! Upstream HTTP/2 with hyper's client: one multiplexed connection shared by many
//! requests, driven by a task of its own; the response body holds the caller's
//! guard until it ends.

use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::connect::Transport;
use super::http1::ConnTicket;
use super::limits::ConnPermit;
use crate::body::{Body, BoxError};
use crate::config::EndpointAddr;
use crate::error::{ErrorKind, ProxyError};

/// A request sender of a shared HTTP/2 connection.
pub type Sender = http2::SendRequest<Body>;

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

enum ConnTask {
    Plain(Box<http2::Connection<TokioIo<TcpStream>, Body, TokioExecutor>>),
    Tls(Box<http2::Connection<TlsIo, Body, TokioExecutor>>),
}

/// The HTTP/2 handshake over `io`; the connection then runs in a task of its own,
/// counted in `open` (and by `permit`) until it ends.
pub async fn handshake(
    io: Transport,
    addr: &EndpointAddr,
    open: &Arc<AtomicUsize>,
    permit: Option<ConnPermit>,
) -> Result<Sender, ProxyError> {
    let (sender, task) = match io {
        Transport::Plain(tcp) => {
            let (s, c) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .map_err(|e| ProxyError::with_source(ErrorKind::ConnectFailed, e))?;
            (s, ConnTask::Plain(Box::new(c)))
        }
        Transport::Tls(tls) => {
            let (s, c) = http2::handshake(TokioExecutor::new(), TokioIo::new(*tls))
                .await
                .map_err(|e| ProxyError::with_source(ErrorKind::ConnectFailed, e))?;
            (s, ConnTask::Tls(Box::new(c)))
        }
    };
    let ticket = ConnTicket::new(open, permit);
    let addr = addr.clone();
    tokio::spawn(async move {
        let result = match task {
            ConnTask::Plain(c) => (*c).await,
            ConnTask::Tls(c) => (*c).await,
        };
        // Frees the cluster-wide count and wakes requests waiting for a connection.
        drop(ticket);
        if let Err(e) = result {
            tracing::debug!(endpoint = %addr, error = %e, "upstream connection ended with error");
        }
    });
    Ok(sender)
}

/// Sends `req` on a shared connection; the response head arrives without its
/// hop-by-hop fields. A request the connection never took comes back in the error.
pub async fn send(
    mut sender: Sender,
    req: Request<Body>,
) -> Result<Response<Incoming>, ProxyError> {
    match sender.try_send_request(req).await {
        Ok(mut response) => {
            // HTTP/2 forbids connection-specific fields, but `Trailer` and
            // `Proxy-Authenticate` may still come; HTTP/1.1 heads are cleaned as parsed.
            crate::headers::strip_hop_by_hop(response.headers_mut());
            Ok(response)
        }
        Err(mut e) => Err(send_error(e.take_message(), e.into_error())),
    }
}

fn send_error(unsent: Option<Request<Body>>, error: hyper::Error) -> ProxyError {
    let kind = if crate::body::is_length_limit(&error) {
        ErrorKind::BodyTooLarge
    } else {
        ErrorKind::UpstreamReset
    };
    let err = ProxyError::with_source(kind, error);
    match unsent {
        Some(req) => err.with_unsent(req),
        None => err,
    }
}

/// An HTTP/2 response body that holds the caller's guard until it ends or drops.
pub struct GuardedBody<G> {
    inner: Incoming,
    _guard: Option<G>,
}

impl<G> GuardedBody<G> {
    /// `inner`, holding `guard` as long as it lives.
    pub fn new(inner: Incoming, guard: Option<G>) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin> http_body::Body for GuardedBody<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
