//! The suite's bounded client: open-loop streams of requests, each with its own
//! client timeout, each ending in exactly one [`Outcome`].

// Shared with control/tests/faults.rs, which uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A response head arrived; `complete` is false when the body was cut off.
    Answered {
        status: u16,
        reason: String,
        complete: bool,
    },
    /// The connection was refused: nothing was sent.
    Refused,
    /// Sent, then the connection closed or reset without a response head.
    Reset(String),
    /// No answer within the client timeout.
    Lost,
}

/// One stream of requests: `requests` GETs of `url`, `rate` per second.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Label in failure messages.
    pub name: &'static str,
    /// Target URL.
    pub url: String,
    /// How many requests to send.
    pub requests: usize,
    /// Requests per second (open loop: sent on schedule whatever the answers).
    pub rate: u32,
    /// Counted as normal traffic (its success rate is the table's column).
    pub normal: bool,
    /// Extra header; `{i}` in the value is replaced by the request's index.
    pub header: Option<(&'static str, String)>,
    /// A new connection per request instead of a keep-alive pool.
    pub fresh_connections: bool,
}

impl Stream {
    /// Normal traffic: `requests` at `rate`/s to `url`.
    pub fn normal(url: String, requests: usize, rate: u32) -> Self {
        Stream {
            name: "normal",
            url,
            requests,
            rate,
            normal: true,
            header: None,
            fresh_connections: false,
        }
    }

    /// Traffic aimed at the fault (not counted as normal).
    pub fn fault(url: String, requests: usize, rate: u32) -> Self {
        Stream {
            name: "fault",
            normal: false,
            ..Self::normal(url, requests, rate)
        }
    }
}

/// What every request of every stream ended as.
#[derive(Debug, Default)]
pub struct Report {
    /// Per stream: its name, whether it is normal traffic, and its outcomes.
    pub streams: Vec<(&'static str, bool, Vec<Outcome>)>,
}

impl Report {
    fn all(&self) -> impl Iterator<Item = &Outcome> {
        self.streams.iter().flat_map(|(_, _, o)| o.iter())
    }

    /// Requests sent (every request scheduled is sent or refused).
    pub fn sent(&self) -> usize {
        self.all().count()
    }

    /// Requests that got a response head.
    pub fn answered(&self) -> usize {
        self.all()
            .filter(|o| matches!(o, Outcome::Answered { .. }))
            .count()
    }

    /// Requests with no answer by the client timeout.
    pub fn lost(&self) -> usize {
        self.all().filter(|o| **o == Outcome::Lost).count()
    }

    /// Requests sent and closed without a response.
    pub fn resets(&self) -> Vec<String> {
        self.all()
            .filter_map(|o| match o {
                Outcome::Reset(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Answers whose body was cut off.
    pub fn cut(&self) -> usize {
        self.all()
            .filter(|o| {
                matches!(
                    o,
                    Outcome::Answered {
                        complete: false,
                        ..
                    }
                )
            })
            .count()
    }

    /// Every outcome that is not a complete 2xx, grouped: `502 upstream_reset`,
    /// `200 body cut`, `reset`, `refused`, `lost`.
    pub fn errors(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for o in self.all() {
            let key = match o {
                Outcome::Answered {
                    status,
                    complete: true,
                    ..
                } if (200..300).contains(status) => continue,
                Outcome::Answered {
                    status,
                    complete: false,
                    ..
                } => format!("{status} body cut"),
                Outcome::Answered { status, reason, .. } if reason.is_empty() => {
                    format!("{status}")
                }
                Outcome::Answered { status, reason, .. } => format!("{status} {reason}"),
                Outcome::Refused => "refused".to_owned(),
                Outcome::Reset(_) => "reset".to_owned(),
                Outcome::Lost => "lost".to_owned(),
            };
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    /// Share of normal-traffic requests answered with a complete 2xx, in percent
    /// (100 when there is no normal traffic).
    pub fn normal_success(&self) -> f64 {
        let normal: Vec<&Outcome> = self
            .streams
            .iter()
            .filter(|(_, normal, _)| *normal)
            .flat_map(|(_, _, o)| o.iter())
            .collect();
        if normal.is_empty() {
            return 100.0;
        }
        let ok = normal.iter().filter(|o| is_success(o)).count();
        100.0 * ok as f64 / normal.len() as f64
    }
}

/// A complete 2xx answer.
pub fn is_success(o: &Outcome) -> bool {
    matches!(o, Outcome::Answered { status, complete: true, .. } if (200..300).contains(status))
}

/// One case's load at a time in this binary. The upstreams run in this process,
/// on the same two cores as every case's clients: fourteen cases at once starve
/// them, and an app that serves a quarter of what it is offered is overloaded,
/// so admission (on by default) rightly sheds. A case measures one fault, not the
/// sum of all of them.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Waits until no other case's load runs; the load runs while the permit lives.
pub async fn exclusive() -> tokio::sync::SemaphorePermit<'static> {
    ONE_AT_A_TIME
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

/// Runs every stream at once, each request bounded by `client_timeout`; returns
/// when every request has ended (at most the last send time plus the timeout).
pub async fn run(streams: Vec<Stream>, client_timeout: Duration) -> Report {
    let mut set = JoinSet::new();
    for (index, stream) in streams.into_iter().enumerate() {
        set.spawn(async move { (index, run_stream(stream, client_timeout).await) });
    }
    let mut streams = Vec::new();
    while let Some(done) = set.join_next().await {
        streams.push(done.expect("stream task"));
    }
    streams.sort_by_key(|(i, _)| *i);
    Report {
        streams: streams.into_iter().map(|(_, s)| s).collect(),
    }
}

async fn run_stream(
    stream: Stream,
    client_timeout: Duration,
) -> (&'static str, bool, Vec<Outcome>) {
    let pooled = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let stream = Arc::new(stream);
    let start = tokio::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / f64::from(stream.rate.max(1)));
    let mut set = JoinSet::new();
    for i in 0..stream.requests {
        tokio::time::sleep_until(start + gap * i as u32).await;
        let client = if stream.fresh_connections {
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http::<Full<Bytes>>()
        } else {
            pooled.clone()
        };
        let stream = stream.clone();
        set.spawn(async move { (i, one(&client, &stream, i, client_timeout).await) });
    }
    let mut outcomes = vec![Outcome::Lost; stream.requests];
    while let Some(done) = set.join_next().await {
        let (i, outcome) = done.expect("request task");
        outcomes[i] = outcome;
    }
    (stream.name, stream.normal, outcomes)
}

async fn one(
    client: &Client<HttpConnector, Full<Bytes>>,
    stream: &Stream,
    i: usize,
    client_timeout: Duration,
) -> Outcome {
    let mut req = Request::get(stream.url.as_str());
    if let Some((name, value)) = &stream.header {
        req = req.header(*name, value.replace("{i}", &i.to_string()));
    }
    let req = req.body(Full::default()).expect("request");
    let exchange = async {
        let resp = match client.request(req).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Outcome::Refused,
            Err(e) => return Outcome::Reset(format!("{e:?}")),
        };
        let status = resp.status().as_u16();
        let reason = resp
            .headers()
            .get("x-floodgate-reason")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let complete = resp.into_body().collect().await.is_ok();
        Outcome::Answered {
            status,
            reason,
            complete,
        }
    };
    tokio::time::timeout(client_timeout, exchange)
        .await
        .unwrap_or(Outcome::Lost)
}
