//! The webhook scaler: `POST`s a cluster's [`ScaleState`] as JSON to
//! `webhook.url` each time its desired replicas change.
//!
//! It never blocks the autoscaler: the driver replaces the latest state in a
//! `watch` channel and returns; this task delivers what it finds there. A failed
//! POST (connection error, timeout, a non-2xx answer) is retried after a jittered
//! exponential backoff (`webhook.backoff`, 250ms ×2 up to 30s by default) until
//! it succeeds or a newer state arrives: pending changes are not queued, the
//! latest desired wins, so at most one state is ever pending and the receiver
//! eventually sees the last one. One HTTP/1.1 connection per POST, bounded by
//! `webhook.timeout`; `Authorization: Bearer <token>` when `webhook.token` is set.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floodgate::control_client::backoff::Backoff;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::autoscale::ScaleState;
use crate::config::WebhookSettings;

/// Largest answer body read (it is only logged).
const MAX_ANSWER: usize = 4096;

/// Why one POST did not count.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// TCP connect or TLS handshake failed.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The webhook.
        url: String,
        /// Why.
        reason: String,
    },
    /// The exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// No answer within `webhook.timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer was not 2xx.
    #[error("answered {status}: {body}")]
    Status {
        /// The status.
        status: StatusCode,
        /// The start of its body.
        body: String,
    },
    /// The request or the TLS client could not be built.
    #[error("{0}")]
    Setup(String),
}

/// One cluster's webhook.
pub struct Webhook {
    cluster: String,
    settings: WebhookSettings,
    tls: Option<tokio_rustls::TlsConnector>,
    auth: Option<HeaderValue>,
}

impl Webhook {
    /// Builds the client (the TLS config once, from `webhook.ca`).
    pub fn new(cluster: &str, settings: WebhookSettings) -> Result<Self, WebhookError> {
        let tls = match &settings.ca_pem {
            Some(ca_pem) if settings.url.https => {
                let upstream = floodgate::config::UpstreamTlsConfig {
                    ca: Default::default(),
                    sni: None,
                    client_cert: None,
                    client_key: None,
                    ca_pem: ca_pem.clone(),
                    client_cert_pem: Vec::new(),
                    client_key_pem: Vec::new(),
                };
                let config = floodgate::tls::client_config(&upstream, false)
                    .map_err(|e| WebhookError::Setup(format!("webhook TLS: {e}")))?;
                Some(tokio_rustls::TlsConnector::from(config))
            }
            _ => None,
        };
        let auth = match &settings.token {
            None => None,
            Some(t) => {
                let mut bearer = b"Bearer ".to_vec();
                bearer.extend_from_slice(t.expose());
                let mut v = HeaderValue::from_bytes(&bearer).map_err(|_| {
                    WebhookError::Setup("webhook.token is not a valid header value".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Webhook {
            cluster: cluster.to_owned(),
            settings,
            tls,
            auth,
        })
    }

    /// Delivers every new state of `states` (the latest wins) until `stop` changes
    /// or a sender is dropped.
    pub async fn run(
        self,
        mut states: watch::Receiver<Option<Arc<ScaleState>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let latest = states.borrow_and_update().clone();
            if let Some(state) = latest {
                match self.deliver(&state, &mut states, &mut stop).await {
                    Delivery::Done => {}
                    Delivery::Superseded => continue,
                    Delivery::Stop => return,
                }
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                changed = states.changed() => if changed.is_err() { return },
            }
        }
    }

    /// POSTs `state` until it is accepted, a newer state arrives or stop is asked.
    async fn deliver(
        &self,
        state: &ScaleState,
        states: &mut watch::Receiver<Option<Arc<ScaleState>>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Delivery {
        let mut backoff = Backoff::new(self.settings.backoff);
        loop {
            let result = tokio::select! {
                biased;
                _ = stop.changed() => return Delivery::Stop,
                r = self.post(state) => r,
            };
            match result {
                Ok(()) => {
                    metrics::counter!(super::WEBHOOK_POSTS, "cluster" => self.cluster.clone(), "result" => "ok").increment(1);
                    if backoff.failures() > 0 {
                        tracing::info!(cluster = %self.cluster, url = %self.settings.url, failures = backoff.failures(), "webhook delivered after retries");
                    }
                    tracing::debug!(cluster = %self.cluster, desired = state.desired, "webhook delivered");
                    return Delivery::Done;
                }
                Err(e) => {
                    metrics::counter!(super::WEBHOOK_POSTS, "cluster" => self.cluster.clone(), "result" => "error").increment(1);
                    let wait = backoff.next_delay(rand::random::<f64>());
                    // The first failure and then every tenth: an outage does not flood the log.
                    if backoff.failures() == 1 || backoff.failures() % 10 == 0 {
                        tracing::warn!(cluster = %self.cluster, url = %self.settings.url, error = %e, retry_in = ?wait, attempt = backoff.failures(), "webhook POST failed");
                    }
                    tokio::select! {
                        biased;
                        _ = stop.changed() => return Delivery::Stop,
                        changed = states.changed() => {
                            return if changed.is_err() { Delivery::Stop } else { Delivery::Superseded };
                        }
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// One POST, bounded by `webhook.timeout`.
    pub async fn post(&self, state: &ScaleState) -> Result<(), WebhookError> {
        let timeout = self.settings.timeout;
        tokio::time::timeout(timeout, self.exchange(state))
            .await
            .map_err(|_| WebhookError::Timeout(timeout))?
    }

    async fn exchange(&self, state: &ScaleState) -> Result<(), WebhookError> {
        let url = &self.settings.url;
        let body = serde_json::to_vec(state).map_err(|e| WebhookError::Setup(e.to_string()))?;
        let authority = if url.host.contains(':') {
            format!("[{}]:{}", url.host, url.port)
        } else {
            format!("{}:{}", url.host, url.port)
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(url.path.as_str())
            .header(header::HOST, authority.as_str())
            .header(header::USER_AGENT, "floodgate-control")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WebhookError::Setup(e.to_string()))?;
        if let Some(auth) = &self.auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.clone());
        }
        let connect_error = |reason: String| WebhookError::Connect {
            url: url.to_string(),
            reason,
        };
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => send(TokioIo::new(tcp), req).await,
            Some(connector) => {
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|e| WebhookError::Setup(e.to_string()))?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| connect_error(format!("TLS: {e}")))?;
                send(TokioIo::new(stream), req).await
            }
        }
    }
}

enum Delivery {
    Done,
    Superseded,
    Stop,
}

async fn send<I>(io: TokioIo<I>, req: Request<Full<Bytes>>) -> Result<(), WebhookError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let conn = tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    conn.abort();
    if status.is_success() {
        Ok(())
    } else {
        Err(WebhookError::Status {
            status,
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        })
    }
}
