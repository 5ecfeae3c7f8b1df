//! One access-log line per exchange, written when the response body ends (or the
//! client goes away): what was known at the response head travels inside the
//! response body ([`LoggedBody`], not boxed again: the listener holds it as it is),
//! which counts the bytes it hands to the connection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Response, Version};
use http_body::{Frame, SizeHint};

use crate::access_log::{format, sink, Line};
use crate::balance::UpstreamServed;
use crate::body::{Body, BoxError};
use crate::config::AccessLogConfig;
use crate::time::Instant;

/// What the line says besides the body's bytes and the end time.
pub struct Pending {
    /// Format and fields (the config that served the request).
    pub config: Arc<AccessLogConfig>,
    /// Arrival.
    pub start: Instant,
    /// Arrival, wall clock (milliseconds since the Unix epoch).
    pub time: u64,
    /// The client.
    pub client: SocketAddr,
    /// The listener.
    pub listener: Arc<str>,
    /// The method.
    pub method: Method,
    /// The routing authority.
    pub host: Option<HeaderValue>,
    /// Path and query as received.
    pub path: PathAndQuery,
    /// Downstream protocol.
    pub version: Version,
    /// Response status.
    pub status: u16,
    /// Request body length, when known.
    pub bytes_in: Option<u64>,
    /// Who answered upstream.
    pub upstream: Option<UpstreamServed>,
    /// Route name.
    pub route: Option<metrics::SharedString>,
    /// Cluster name.
    pub cluster: Option<metrics::SharedString>,
    /// The proxy's own reason.
    pub reason: Option<HeaderValue>,
    /// Request id.
    pub request_id: Option<HeaderValue>,
    /// The `traceparent` request header.
    pub traceparent: Option<HeaderValue>,
}

/// The response body the proxy answers with: the cluster's (or the proxy's own),
/// and with the access log on, the line to write once it ends.
pub struct LoggedBody {
    inner: Body,
    bytes: u64,
    /// Boxed: the body is moved from the handler to hyper several times, and is
    /// small for every request, logged or not.
    pending: Option<Box<Pending>>,
}

impl LoggedBody {
    /// `inner`, not logged.
    pub fn unlogged(inner: Body) -> Self {
        Self {
            inner,
            bytes: 0,
            pending: None,
        }
    }
}

/// The response with its line written once its body ends.
pub fn log_on_end(response: Response<Body>, pending: Pending) -> Response<LoggedBody> {
    response.map(|inner| LoggedBody {
        inner,
        bytes: 0,
        pending: Some(Box::new(pending)),
    })
}

impl LoggedBody {
    fn write(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let line = Line {
            time: p.time,
            client: p.client,
            method: p.method.as_str(),
            host: p.host.as_ref().map(HeaderValue::as_bytes),
            path: p.path.as_str(),
            protocol: protocol(p.version),
            status: p.status,
            bytes_in: p.bytes_in,
            bytes_out: self.bytes,
            duration: crate::time::now().saturating_duration_since(p.start),
            upstream: p.upstream.as_ref().map(|u| {
                let addr = u.endpoint.addr();
                (addr.host.as_str(), addr.port)
            }),
            upstream_time: p.upstream.as_ref().map(|u| u.head_time),
            route: p.route.as_deref(),
            cluster: p.cluster.as_deref(),
            listener: &p.listener,
            reason: p.reason.as_ref().map(HeaderValue::as_bytes),
            request_id: p.request_id.as_ref().map(HeaderValue::as_bytes),
            trace_id: p
                .traceparent
                .as_ref()
                .and_then(|t| format::trace_id(t.as_bytes())),
        };
        let config = &p.config;
        sink::push(|out| format::write(&line, config.format, &config.fields, out));
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if self.pending.is_some() {
            self.write();
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if self.pending.is_none() {
            return polled;
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.write();
                }
            }
            Poll::Ready(None | Some(Err(_))) => self.write(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
