//! One request to the control plane's registry: `POST`/`DELETE /v1/endpoints` over
//! HTTP/1.1 (plain, or TLS verified against `--register-ca`), a fresh connection each
//! time (a heartbeat every few seconds does not need a pool), bounded by a timeout.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Where the control plane is: `http[s]://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlUrl {
    /// `https://`: TLS, verified against the configured CA.
    pub https: bool,
    /// The host (no brackets), the name the certificate is verified against.
    pub host: String,
    /// `host:port`, as sent in `Host` and resolved for the connection.
    pub authority: String,
    /// The registry endpoint's path (`/prefix/v1/endpoints`).
    pub endpoints_path: String,
}

/// Why the control-plane URL is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("`{0}` is not a URL (expected http://host:port)")]
    Syntax(String),
    /// A scheme other than `http` or `https`.
    #[error("`{0}`: the scheme must be http:// or https://")]
    Scheme(String),
    /// No `host:port`.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// A query string, which the registry path would not keep.
    #[error("`{0}`: the URL must not carry a query")]
    Query(String),
}

impl ControlUrl {
    /// Parses `http[s]://host[:port][/prefix]`; the port defaults to 80 (443 for https).
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let uri: Uri = text.parse().map_err(|_| UrlError::Syntax(text.into()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(_) => return Err(UrlError::Scheme(text.into())),
            None => return Err(UrlError::Syntax(text.into())),
        };
        let Some(auth) = uri.authority() else {
            return Err(UrlError::NoHost(text.into()));
        };
        if auth.host().is_empty() {
            return Err(UrlError::NoHost(text.into()));
        }
        if uri.query().is_some() {
            return Err(UrlError::Query(text.into()));
        }
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = format!("{}:{port}", auth.host());
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self {
            https,
            host: host.to_owned(),
            authority,
            endpoints_path: format!("{prefix}/v1/endpoints"),
        })
    }
}

/// How a call ended without an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// TCP connect (or name resolution) failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// The TLS handshake failed (an untrusted certificate, a plain-HTTP port).
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    /// `https://` without a TLS client config.
    #[error("https:// needs a CA (--register-ca)")]
    NoTls,
    /// The HTTP exchange failed.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Build(#[from] http::Error),
    /// No complete answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer: the status and the `error` message of a JSON error body, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// `{"error": "..."}` of the body, when there is one.
    pub error: Option<String>,
}

/// Sends `method` with a JSON body to the registry endpoint, within `timeout`; `tls`
/// is used for `https://` URLs.
pub async fn call(
    url: &ControlUrl,
    tls: Option<&TlsConnector>,
    method: Method,
    token: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Answer, CallError> {
    match tokio::time::timeout(timeout, connect(url, tls, method, token, body)).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

async fn connect(
    url: &ControlUrl,
    tls: Option<&TlsConnector>,
    method: Method,
    token: &str,
    body: &serde_json::Value,
) -> Result<Answer, CallError> {
    let stream = TcpStream::connect(url.authority.as_str())
        .await
        .map_err(|e| CallError::Connect(url.authority.clone(), e))?;
    let _ = stream.set_nodelay(true);
    if !url.https {
        return exchange(stream, url, method, token, body).await;
    }
    let connector = tls.ok_or(CallError::NoTls)?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| {
        CallError::Tls(
            url.authority.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        )
    })?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| CallError::Tls(url.authority.clone(), e))?;
    exchange(stream, url, method, token, body).await
}

async fn exchange<I>(
    io: I,
    url: &ControlUrl,
    method: Method,
    token: &str,
    body: &serde_json::Value,
) -> Result<Answer, CallError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(url.endpoints_path.as_str())
        .header(header::HOST, url.authority.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    drop(sender);
    conn.abort();
    let error = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    Ok(Answer { status, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ControlUrl::parse("http://127.0.0.1:7070").unwrap();
        assert_eq!(u.authority, "127.0.0.1:7070");
        assert_eq!(u.endpoints_path, "/v1/endpoints");
        let u = ControlUrl::parse("http://cp.local/base/").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.endpoints_path.as_str()),
            ("cp.local:80", "/base/v1/endpoints")
        );
        let u = ControlUrl::parse("https://cp.local").unwrap();
        assert!(u.https);
        assert_eq!(
            (u.host.as_str(), u.authority.as_str()),
            ("cp.local", "cp.local:443")
        );
        let u = ControlUrl::parse("http://[::1]:7070").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str()),
            ("::1", "[::1]:7070")
        );
        assert!(matches!(
            ControlUrl::parse("ftp://cp:7070"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            ControlUrl::parse("127.0.0.1:7070"),
            Err(UrlError::Syntax(_)) | Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            ControlUrl::parse("http://cp:1/?x=1"),
            Err(UrlError::Query(_))
        ));
        assert!(ControlUrl::parse("not a url").is_err());
    }
}
