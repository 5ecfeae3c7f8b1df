//! Real `floodgate` proxies for `control-bench`: each a child process with its own
//! bootstrap (temp dir, admin port, node id) polling the bench's control plane; tiny
//! in-process upstreams that answer with their name; a keep-alive HTTP/1.1
//! connection that reconnects; and the two real-proxy measurements (push → running
//! on every proxy, registration → a request through every proxy answered by the
//! new endpoint).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A `floodgate` child process; killed (by its own handle) when dropped.
pub struct RealProxy {
    child: Child,
    /// Node id in `/v1/nodes`.
    pub node: String,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The public listener `web`, once the first snapshot is served.
    pub web: SocketAddr,
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port, released for a child to bind (a tiny window).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Starts proxy `i` of group `group` against the control plane at `control`, and
/// waits (≤ 20 s) until it serves its first snapshot.
pub async fn start_proxy(
    bin: &Path,
    dir: &Path,
    i: usize,
    control: SocketAddr,
    group: &str,
    token: &str,
) -> anyhow::Result<RealProxy> {
    let node = format!("real-{i}");
    let home = dir.join(&node);
    std::fs::create_dir_all(&home)?;
    let admin = free_addr()?;
    let bootstrap = home.join("bootstrap.yaml");
    std::fs::write(
        &bootstrap,
        format!(
            "admin: {{ listen: \"{admin}\" }}\n\
             control_plane:\n  url: http://{control}\n  group: {group}\n  node_id: {node}\n  \
             token: {token}\n  snapshot_file: snapshot.yaml\n  \
             backoff: {{ initial: 50ms, max: 1s }}\n"
        ),
    )?;
    let log = home.join("floodgate.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&bootstrap)
        .args(["--log-format", "json", "--workers", "1"])
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut proxy = RealProxy {
        child,
        node,
        admin,
        web: admin,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    proxy.web = loop {
        if let Some(addr) = listening(&log, "web") {
            break addr;
        }
        if let Ok(Some(status)) = proxy.child.try_wait() {
            anyhow::bail!("{} exited ({status}); see {}", proxy.node, log.display());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} serves no snapshot; see {}",
            proxy.node,
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(proxy)
}

/// The address of listener `name` from a JSON log (`"message":"listening"`).
fn listening(log: &Path, name: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "listening" && v["listener"] == name)
        .and_then(|v| v["addr"].as_str()?.parse().ok())
}

/// An in-process upstream answering every request with its name; stops accepting
/// when dropped (connections already open finish what they serve).
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Upstream {
    /// Binds 127.0.0.1:0 and serves `name`.
    pub async fn start(name: String) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let name = Bytes::from(name);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let name = name.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let name = name.clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(name))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Upstream { addr, accept })
    }
}

/// A keep-alive HTTP/1.1 connection to one address, reconnected after an error.
pub struct Conn {
    addr: SocketAddr,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Not connected yet: the first request connects.
    pub fn new(addr: SocketAddr) -> Self {
        Conn { addr, sender: None }
    }

    /// `GET path` (with a bearer token when given): status and body; an error drops
    /// the connection, the next call opens a new one.
    pub async fn get(
        &mut self,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let result = self.try_get(path, token).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_get(
        &mut self,
        path: &str,
        token: Option<&str>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => {
                let stream = tokio::net::TcpStream::connect(self.addr).await?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                self.sender.insert(sender)
            }
        };
        sender.ready().await?;
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, self.addr.to_string());
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::new()))?)
            .await?;
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }
}

/// The control-plane version a proxy runs (its admin `/control`).
pub async fn running_version(conn: &mut Conn) -> Option<u64> {
    let (status, body) = conn.get("/control", None).await.ok()?;
    if status != StatusCode::OK {
        return None;
    }
    serde_json::from_slice::<Value>(&body).ok()?["version"].as_u64()
}

/// Whether a proxy's `/control` says it is connected.
pub async fn connected(conn: &mut Conn) -> bool {
    match conn.get("/control", None).await {
        Ok((StatusCode::OK, body)) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["connected"].as_bool())
            .unwrap_or(false),
        _ => false,
    }
}

/// Watches every proxy's `/control` (every 1 ms, one task each) from `t0` until it
/// runs a version other than `old`; the latency of each, `None` past `timeout`.
pub fn watch_versions(
    proxies: &[RealProxy],
    old: Option<u64>,
    t0: Instant,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<Option<Duration>>> {
    proxies
        .iter()
        .map(|p| {
            let admin = p.admin;
            tokio::spawn(async move {
                let mut conn = Conn::new(admin);
                while t0.elapsed() < timeout {
                    let v = running_version(&mut conn).await;
                    if v.is_some() && v != old {
                        return Some(t0.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                None
            })
        })
        .collect()
}

/// Sends requests through every proxy's `web` listener (one task each, back to back)
/// from `t0` until one is answered with body `want`; the latency of each.
pub fn watch_routed(
    proxies: &[RealProxy],
    want: &str,
    t0: Instant,
    timeout: Duration,
) -> Vec<tokio::task::JoinHandle<Option<Duration>>> {
    proxies
        .iter()
        .map(|p| {
            let web = p.web;
            let want = Bytes::from(want.to_owned());
            tokio::spawn(async move {
                let mut conn = Conn::new(web);
                while t0.elapsed() < timeout {
                    if let Ok((StatusCode::OK, body)) = conn.get("/", None).await {
                        if body == want {
                            return Some(t0.elapsed());
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                None
            })
        })
        .collect()
}

/// Joins watchers: the latencies that came in time, and how many did not.
pub async fn gather(
    watchers: Vec<tokio::task::JoinHandle<Option<Duration>>>,
) -> (Vec<Duration>, usize) {
    let mut got = Vec::new();
    let mut missed = 0;
    for w in watchers {
        match w.await {
            Ok(Some(d)) => got.push(d),
            _ => missed += 1,
        }
    }
    (got, missed)
}

/// The `floodgate` binary: `explicit`, or next to this one.
pub fn floodgate_bin(explicit: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match explicit {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this binary")?
            .join("floodgate"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build --release -p floodgate) or pass --floodgate-bin",
        bin.display()
    );
    Ok(bin)
}
