//! Opening a connection to an endpoint: TCP, then TLS (rustls) when the cluster
//! has `upstream_tls`, within the cluster's `connect_timeout`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::EndpointAddr;
use crate::error::{ErrorKind, ProxyError};

/// A TLS connector and the server name to verify.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The rustls connector (CA, client cert, ALPN).
    pub connector: TlsConnector,
    /// Name verified and sent as SNI; `None` uses the endpoint host.
    pub server_name: Option<ServerName<'static>>,
}

/// An upstream connection's byte stream: plain TCP or TLS over TCP.
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (rustls) over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens a connection to `addr` within `deadline`: TCP (no Nagle), then TLS when
/// `tls` is set. Failures are `connect_failed` or `connect_timeout`, and no
/// request has been sent, so any request may be retried elsewhere.
pub async fn connect(
    addr: &EndpointAddr,
    tls: Option<&UpstreamTls>,
    deadline: Duration,
) -> Result<Transport, ProxyError> {
    match tokio::time::timeout(deadline, connect_inner(addr, tls)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::with_source(
            ErrorKind::ConnectTimeout,
            format!("connect to {} timed out after {:?}", addr, deadline),
        )),
    }
}

async fn connect_inner(
    addr: &EndpointAddr,
    tls: Option<&UpstreamTls>,
) -> Result<Transport, ProxyError> {
    let fail = |e: io::Error| ProxyError::with_source(ErrorKind::ConnectFailed, e);
    let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(fail)?;
    tcp.set_nodelay(true).map_err(fail)?;
    let Some(tls) = tls else {
        return Ok(Transport::Plain(tcp));
    };
    let name = match &tls.server_name {
        Some(name) => name.clone(),
        None => ServerName::try_from(addr.host.clone()).map_err(|e| {
            ProxyError::with_source(ErrorKind::ConnectFailed, format!("bad TLS name: {e}"))
        })?,
    };
    let stream = tls.connector.connect(name, tcp).await.map_err(fail)?;
    Ok(Transport::Tls(Box::new(stream)))
}
