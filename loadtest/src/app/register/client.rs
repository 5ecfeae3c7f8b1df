//! One request to the control plane's registry: `POST`/`DELETE /v1/endpoints` over
//! HTTP/1.1, a fresh connection each time (a heartbeat every few seconds does not
//! need a pool), bounded by a timeout.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the control plane is: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlUrl {
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
    /// A scheme other than `http`.
    #[error("`{0}`: only http:// is supported by --register (https is not yet)")]
    Scheme(String),
    /// No `host:port`.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// A query string, which the registry path would not keep.
    #[error("`{0}`: the URL must not carry a query")]
    Query(String),
}

impl ControlUrl {
    /// Parses `http://host[:port][/prefix]`; the port defaults to 80.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let uri: Uri = text.parse().map_err(|_| UrlError::Syntax(text.into()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(UrlError::Scheme(text.into())),
            None => return Err(UrlError::Syntax(text.into())),
        }
        let Some(auth) = uri.authority() else {
            return Err(UrlError::NoHost(text.into()));
        };
        if auth.host().is_empty() {
            return Err(UrlError::NoHost(text.into()));
        }
        if uri.query().is_some() {
            return Err(UrlError::Query(text.into()));
        }
        let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self {
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

/// Sends `method` with a JSON body to the registry endpoint, within `timeout`.
pub async fn call(
    url: &ControlUrl,
    method: Method,
    token: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Answer, CallError> {
    match tokio::time::timeout(timeout, exchange(url, method, token, body)).await {
        Ok(r) => r,
        Err(_) => Err(CallError::Timeout(timeout)),
    }
}

async fn exchange(
    url: &ControlUrl,
    method: Method,
    token: &str,
    body: &serde_json::Value,
) -> Result<Answer, CallError> {
    let stream = TcpStream::connect(url.authority.as_str())
        .await
        .map_err(|e| CallError::Connect(url.authority.clone(), e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
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
        assert!(matches!(
            ControlUrl::parse("https://cp:7070"),
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
