//! The HTTP side of the client: one HTTP/1.1 exchange with the control plane over
//! plain TCP or rustls (trusting only `control_plane.ca`), on hyper's client
//! connection. A connection per poll, ACK and NACK: a long poll lasts tens of
//! seconds, so a pool would save one handshake per half minute and add a state to
//! reason about. Load reports (twice a second) keep one connection alive
//! ([`ReportConnection`]).

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};

use crate::config::file::FileConfig;
use crate::config::{ControlPlaneConfig, UpstreamTlsConfig};

/// Time allowed to open the TCP connection (and finish the TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for an ACK or NACK.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a snapshot is a config file's text).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Why an exchange with the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch, ...).
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS client could not be configured.
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The answer's body could not be read (too long, cut off).
    #[error("reading the answer: {0}")]
    Body(String),
    /// The request could not be built (a name not fit for a URL or a header).
    #[error("building the request: {0}")]
    Request(String),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The control plane answered with an unexpected status.
    #[error("the control plane answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of the answer's body (the control plane's `{"error": ...}`).
        body: String,
    },
    /// A 200 whose JSON is not a snapshot of this group.
    #[error("not a snapshot: {0}")]
    BadSnapshot(String),
}

/// A snapshot as `GET /v1/snapshot` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct SnapshotBody {
    /// The node group.
    pub group: String,
    /// The control plane's version.
    pub version: u64,
    /// The proxy config, YAML text.
    pub config: String,
    /// The same config in file form, as the control plane validated it (newer control
    /// planes send it): validated without parsing `config` again.
    #[serde(default)]
    pub file: Option<Box<FileConfig>>,
}

/// What one long poll returned.
#[derive(Debug)]
pub enum PollAnswer {
    /// A version other than the one running.
    Snapshot(SnapshotBody),
    /// Nothing new within the control plane's long-poll timeout.
    NotModified,
}

/// An ACK or NACK body.
#[derive(Debug, Serialize)]
struct Report<'a> {
    group: &'a str,
    node: &'a str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// Talks to one control plane.
pub struct ControlHttp {
    cp: ControlPlaneConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    auth: HeaderValue,
}

impl ControlHttp {
    /// Builds the client (the rustls config once, from `ca`).
    pub fn new(cp: &ControlPlaneConfig) -> Result<Self, HttpError> {
        let tls = if cp.tls {
            let upstream = UpstreamTlsConfig {
                ca: cp.ca.clone().unwrap_or_default(),
                sni: None,
                client_cert: None,
                client_key: None,
                ca_pem: cp.ca_pem.clone(),
                client_cert_pem: Vec::new(),
                client_key_pem: Vec::new(),
            };
            let config = crate::tls::client_config(&upstream, false)
                .map_err(|e| HttpError::TlsSetup(e.to_string()))?;
            Some(tokio_rustls::TlsConnector::from(config))
        } else {
            None
        };
        let mut bearer = b"Bearer ".to_vec();
        bearer.extend_from_slice(cp.token.expose());
        let mut auth = HeaderValue::from_bytes(&bearer)
            .map_err(|_| HttpError::Request("the token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        Ok(Self {
            cp: cp.clone(),
            tls,
            auth,
        })
    }

    /// One long poll for a version other than `running` (0: none yet).
    pub async fn poll(&self, running: u64) -> Result<PollAnswer, HttpError> {
        let path = format!(
            "{}/v1/snapshot?group={}&node={}&version={running}",
            self.cp.base_path, self.cp.group, self.cp.node_id
        );
        let (status, body) = self
            .exchange(Method::GET, &path, Bytes::new(), self.cp.poll_timeout)
            .await?;
        match status {
            StatusCode::NOT_MODIFIED => Ok(PollAnswer::NotModified),
            StatusCode::OK => {
                let snapshot: SnapshotBody = serde_json::from_slice(&body)
                    .map_err(|e| HttpError::BadSnapshot(e.to_string()))?;
                if snapshot.group != self.cp.group {
                    return Err(HttpError::BadSnapshot(format!(
                        "it is for group `{}`, not `{}`",
                        snapshot.group, self.cp.group
                    )));
                }
                Ok(PollAnswer::Snapshot(snapshot))
            }
            status => Err(status_error(status, &body)),
        }
    }

    /// `POST /v1/ack` (`error: None`) or `POST /v1/nack`.
    pub async fn report(&self, version: u64, error: Option<&str>) -> Result<(), HttpError> {
        let body = Report {
            group: &self.cp.group,
            node: &self.cp.node_id,
            version,
            error,
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| HttpError::Request(e.to_string()))?;
        let path = format!(
            "{}/v1/{}",
            self.cp.base_path,
            if error.is_some() { "nack" } else { "ack" }
        );
        let (status, body) = self
            .exchange(Method::POST, &path, Bytes::from(bytes), REPORT_TIMEOUT)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(status, &body))
        }
    }

    /// `POST /v1/reports` with a load report's JSON, within `timeout`, on the kept-alive
    /// connection `conn` (opened when there is none or it closed; a send that fails on a
    /// reused connection is tried once more on a fresh one: a report is cumulative,
    /// so sending it twice is harmless). Returns the reply's body.
    pub async fn send_report(
        &self,
        conn: &mut ReportConnection,
        json: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, HttpError> {
        let path = format!("{}/v1/reports", self.cp.base_path);
        let body = Bytes::from(json);
        let work = async {
            let reused = conn.0.take().filter(|c| !c.sender.is_closed());
            let was_reused = reused.is_some();
            let mut c = match reused {
                Some(c) => c,
                None => self.open().await?,
            };
            let req = self.request(Method::POST, &path, body.clone())?;
            let answer = match c.roundtrip(req).await {
                Err(_) if was_reused => {
                    c = self.open().await?;
                    let req = self.request(Method::POST, &path, body.clone())?;
                    c.roundtrip(req).await
                }
                other => other,
            };
            let (status, body) = answer?;
            conn.0 = Some(c);
            Ok::<_, HttpError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| HttpError::Timeout(timeout))??;
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(status, &body))
        }
    }

    /// The request, with the host, user agent, bearer token and (with a body) content type.
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        let authority = authority(&self.cp);
        let json = !body.is_empty();
        let mut req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, authority.as_str())
            .header(header::USER_AGENT, "floodgate-control-client")
            .body(Full::new(body))
            .map_err(|e| HttpError::Request(e.to_string()))?;
        req.headers_mut()
            .insert(header::AUTHORIZATION, self.auth.clone());
        if json {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Ok(req)
    }

    /// One exchange on a connection of its own, within `timeout`.
    async fn exchange(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let req = self.request(method, path_and_query, body)?;
        let work = async {
            let mut conn = self.open().await?;
            conn.roundtrip(req).await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }

    /// Opens an HTTP/1.1 connection (TCP, then TLS with `ca` for `https://`).
    async fn open(&self) -> Result<Conn, HttpError> {
        let authority = authority(&self.cp);
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((self.cp.endpoint.host.as_str(), self.cp.endpoint.port)),
        )
        .await
        .map_err(|_| HttpError::Timeout(CONNECT_TIMEOUT))?
        .map_err(|source| HttpError::Connect {
            addr: authority.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Conn::handshake(TokioIo::new(tcp)).await,
            Some(connector) => {
                let name = ServerName::try_from(self.cp.endpoint.host.clone())
                    .map_err(|e| HttpError::TlsSetup(e.to_string()))?;
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| HttpError::Timeout(CONNECT_TIMEOUT))?
                    .map_err(|source| HttpError::Tls {
                        addr: authority.clone(),
                        source,
                    })?;
                Conn::handshake(TokioIo::new(stream)).await
            }
        }
    }
}

/// The load reports' kept-alive connection (none until the first report).
#[derive(Default)]
pub struct ReportConnection(Option<Conn>);

/// One HTTP/1.1 client connection; dropping it stops its driver task.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Conn {
    async fn handshake<IO>(io: IO) -> Result<Self, HttpError>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, driver })
    }

    /// Sends one request and reads the whole answer.
    async fn roundtrip(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| HttpError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }
}

/// `host:port`, IPv6 in brackets.
fn authority(cp: &ControlPlaneConfig) -> String {
    if cp.endpoint.host.contains(':') {
        format!("[{}]:{}", cp.endpoint.host, cp.endpoint.port)
    } else {
        format!("{}:{}", cp.endpoint.host, cp.endpoint.port)
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> HttpError {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    HttpError::Status {
        status,
        body: text.trim().to_owned(),
    }
}
