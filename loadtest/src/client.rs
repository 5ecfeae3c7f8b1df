//! Connections to the target and the execution of one request.
//!
//! HTTP/1.1 connections carry one request at a time (keep-alive, reconnect when the
//! server closes); HTTP/2 connections (h2c, prior knowledge) are cloned per request and
//! multiplex. A request counts as finished when its whole body has been read.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::profile::Protocol;

/// The response header whose value is counted per reason.
pub const REASON_HEADER: &str = "x-floodgate-reason";

/// How a request failed without an HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum ErrorKind {
    /// TCP connect or protocol handshake failed.
    #[error("connect")]
    Connect,
    /// No complete response within the timeout.
    #[error("timeout")]
    Timeout,
    /// The connection was reset or closed mid-request.
    #[error("reset")]
    Reset,
    /// Anything else (e.g. a protocol error).
    #[error("other")]
    Other,
}

impl ErrorKind {
    /// All kinds, in report order.
    pub const ALL: [ErrorKind; 4] = [Self::Connect, Self::Timeout, Self::Reset, Self::Other];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Other => "other",
        }
    }

    /// Index into arrays ordered like [`ErrorKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The `x-floodgate-reason` header, if any.
    pub reason: Option<String>,
    /// Whether the response carried `Retry-After`.
    pub retry_after: bool,
}

/// One connection to one address.
#[derive(Debug)]
pub enum Conn {
    /// An HTTP/1.1 keep-alive connection.
    H1(http1::SendRequest<Full<Bytes>>),
    /// An HTTP/2 connection.
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Opens a connection (TCP_NODELAY) and runs its driver task.
pub async fn connect(
    addr: SocketAddr,
    protocol: Protocol,
    timeout: Duration,
) -> Result<Conn, ErrorKind> {
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(tcp);
        match protocol {
            Protocol::Http1 => {
                let (send, conn) = http1::handshake(io).await.map_err(|_| ErrorKind::Connect)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Conn::H1(send))
            }
            Protocol::Http2 => {
                let (send, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|_| ErrorKind::Connect)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Conn::H2(send))
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ErrorKind::Connect)?
}

impl Conn {
    /// Whether the connection can still take requests.
    pub fn is_open(&self) -> bool {
        match self {
            Self::H1(s) => !s.is_closed(),
            Self::H2(s) => !s.is_closed(),
        }
    }

    /// A handle for one more concurrent request (HTTP/2 only).
    pub fn clone_h2(&self) -> Option<Conn> {
        match self {
            Self::H2(s) => Some(Self::H2(s.clone())),
            Self::H1(_) => None,
        }
    }

    /// Sends `req` and reads the whole response body, within `timeout`.
    pub async fn execute(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, ErrorKind> {
        let fut = async {
            let resp = match self {
                Self::H1(s) => {
                    s.ready().await.map_err(|e| classify(&e))?;
                    s.send_request(req).await
                }
                Self::H2(s) => {
                    s.ready().await.map_err(|e| classify(&e))?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| classify(&e))?;
            let status = resp.status().as_u16();
            let reason = resp
                .headers()
                .get(REASON_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let retry_after = resp.headers().contains_key(http::header::RETRY_AFTER);
            resp.into_body().collect().await.map_err(|e| classify(&e))?;
            Ok(Answer {
                status,
                reason,
                retry_after,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ErrorKind::Timeout)?
    }
}

/// Maps a hyper error to an [`ErrorKind`].
fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ErrorKind::Reset;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    // Error chains are short; bound the walk anyway.
    for _ in 0..16 {
        let Some(s) = src else { break };
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof
            ) {
                return ErrorKind::Reset;
            }
        }
        src = s.source();
    }
    ErrorKind::Other
}
