//! Shared helpers for end-to-end tests: test upstreams, an in-process proxy, a
//! client, the real binary, and an "eventually" wait. Everything binds
//! `127.0.0.1:0`; nothing sleeps for a fixed time to wait for a condition.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod certs;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use floodgate::admin::Admin;
use floodgate::state::Proxy;

/// How a test upstream answers.
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Status for ordinary requests (0 → 200).
    pub status: u16,
    /// Delay before answering.
    pub delay: Duration,
    /// Close the connection instead of answering (after reading the request).
    pub reset: bool,
    /// Status for `/healthz` (0 → 200).
    pub health_status: u16,
    /// Extra response headers for ordinary requests (e.g. `Retry-After`).
    pub headers: Vec<(&'static str, &'static str)>,
}

/// A real HTTP/1.1 + h2c server on 127.0.0.1:0 that echoes what it received.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    health_hits: Arc<AtomicUsize>,
    in_flight: Arc<InFlight>,
    behavior: Arc<Mutex<Behavior>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

/// Requests an upstream is serving: now, at most so far, and how many were given up
/// (the proxy dropped the request before the answer: its future was dropped).
#[derive(Debug, Default)]
pub struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
    abandoned: AtomicUsize,
}

/// One request being served; counts as abandoned unless [`Serving::finish`] ran.
struct Serving<'a> {
    counts: &'a InFlight,
    finished: bool,
}

impl<'a> Serving<'a> {
    fn start(counts: &'a InFlight) -> Self {
        let now = counts.now.fetch_add(1, Ordering::SeqCst) + 1;
        counts.peak.fetch_max(now, Ordering::SeqCst);
        Self {
            counts,
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.counts.now.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.counts.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Upstream {
    /// Ordinary (non-health-check) requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Health-check requests served so far.
    pub fn health_hits(&self) -> usize {
        self.health_hits.load(Ordering::SeqCst)
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.now.load(Ordering::SeqCst)
    }

    /// The most requests served at once so far.
    pub fn peak_in_flight(&self) -> usize {
        self.in_flight.peak.load(Ordering::SeqCst)
    }

    /// Requests whose connection went away before the answer (the proxy gave up on them).
    pub fn abandoned(&self) -> usize {
        self.in_flight.abandoned.load(Ordering::SeqCst)
    }

    /// Changes how the upstream answers from now on.
    pub fn set(&self, behavior: Behavior) {
        *self.behavior.lock().unwrap() = behavior;
    }

    /// `host:port` for config files.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a plain-text upstream.
pub async fn upstream(name: &str) -> Upstream {
    upstream_with(name, None).await
}

/// Starts an upstream, over TLS when `tls` is given.
pub async fn upstream_with(name: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    upstream_on(name, listener, tls)
}

/// Starts an upstream on a listener the caller bound (e.g. a restart on the port
/// of a stopped one: see [`restart_upstream`]).
pub fn upstream_on(
    name: &str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Upstream {
    let addr = listener.local_addr().unwrap();
    let up = Upstream {
        addr,
        name: name.to_owned(),
        hits: Arc::default(),
        health_hits: Arc::default(),
        in_flight: Arc::default(),
        behavior: Arc::default(),
        tasks: Arc::new(Mutex::new(JoinSet::new())),
    };
    let state = (
        up.name.clone(),
        up.hits.clone(),
        up.health_hits.clone(),
        up.in_flight.clone(),
        up.behavior.clone(),
    );
    let tasks = up.tasks.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    up.tasks.lock().unwrap().spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let acceptor = acceptor.clone();
            tasks.lock().unwrap().spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { answer(state, peer, req).await }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                }
            });
        }
    });
    up
}

type UpState = (
    String,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Arc<InFlight>,
    Arc<Mutex<Behavior>>,
);

async fn answer(
    (name, hits, health_hits, in_flight, behavior): UpState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let b = behavior.lock().unwrap().clone();
    if req.uri().path() == "/healthz" {
        health_hits.fetch_add(1, Ordering::SeqCst);
        let status = if b.health_status == 0 {
            200
        } else {
            b.health_status
        };
        return Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"ok")))
            .unwrap());
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let serving = Serving::start(&in_flight);
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    serving.finish();
    if b.reset {
        return Err(std::io::Error::other("test upstream resets"));
    }
    let headers: BTreeMap<String, String> = head
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let echo = serde_json::json!({
        "upstream": name,
        "method": head.method.as_str(),
        "uri": head.uri.to_string(),
        "path": head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", head.version),
        "headers": headers,
        "body_len": body.len(),
        "peer": peer.to_string(),
    });
    let status = if b.status == 0 { 200 } else { b.status };
    let mut response = Response::builder()
        .status(status)
        .header("x-upstream", name.as_str())
        .header("content-type", "application/json");
    for (k, v) in &b.headers {
        response = response.header(*k, *v);
    }
    Ok::<_, std::io::Error>(
        response
            .body(Full::new(Bytes::from(echo.to_string())))
            .unwrap(),
    )
}

/// An in-process proxy started from YAML text.
pub struct TestProxy {
    pub proxy: Arc<Proxy>,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    admin_task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// The bound address of a listener.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.proxy.listener_addr(listener).expect("listener bound")
    }

    /// `http://ADDR{path}` on the listener named `public`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr("public"), path)
    }

    /// `http://ADMIN{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.admin_task.abort();
    }
}

/// Starts a proxy from YAML; relative paths resolve against a fresh temp dir.
pub async fn start_proxy(yaml: &str) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    start_proxy_in(yaml, dir).await
}

/// Starts a proxy from YAML with relative paths resolved in `dir`.
pub async fn start_proxy_in(yaml: &str, dir: tempfile::TempDir) -> TestProxy {
    let config = floodgate::config::parse_str(yaml, "test.yaml", dir.path())
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{yaml}"));
    floodgate::observe::prometheus();
    let proxy = Proxy::start(config).expect("proxy starts");
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let admin_task = tokio::spawn(admin.serve(proxy.clone()));
    TestProxy {
        proxy,
        admin: admin_addr,
        dir,
        admin_task,
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub version: http::Version,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header as text, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A pooled HTTP/1.1 test client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 prior-knowledge (h2c) test client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends a request and reads the whole response.
pub async fn send(client: &Client<HttpConnector, Full<Bytes>>, req: Request<Full<Bytes>>) -> Resp {
    let res = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response within 20s")
        .expect("response");
    let (head, body) = res.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: head.status,
        headers: head.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        version: head.version,
    }
}

/// GET `url` with a fresh client.
pub async fn get(url: &str) -> Resp {
    send(&client(), Request::get(url).body(Full::default()).unwrap()).await
}

/// GET `url` with a `Host` header.
pub async fn get_host(url: &str, host: &str) -> Resp {
    let req = Request::get(url)
        .header("host", host)
        .body(Full::default())
        .unwrap();
    send(&client(), req).await
}

/// Waits until `check` returns true, polling every 20 ms, failing after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > within {
            panic!("not true within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config with one listener `public` on 127.0.0.1:0 routing everything to
/// cluster `app` at `endpoints`; `cluster_extra` and `route_extra` are YAML lines
/// appended (already indented) to the cluster and the route.
pub fn simple_config(endpoints: &[&Upstream], route_extra: &str, cluster_extra: &str) -> String {
    let eps: Vec<String> = endpoints.iter().map(|u| u.endpoint()).collect();
    config_for_endpoints(&eps, route_extra, cluster_extra)
}

/// [`simple_config`] for endpoints given as `host:port` text (upstreams that are
/// not an [`Upstream`], such as raw scripted servers).
pub fn config_for_endpoints(
    endpoints: &[String],
    route_extra: &str,
    cluster_extra: &str,
) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"
server: {{ drain_timeout: 5s, access_log: false }}
listeners:
  - name: public
    listen: 127.0.0.1:0
    routes:
      - name: all
        match: {{ path_prefix: "/" }}
        cluster: app
{route_extra}
clusters:
  - name: app
    endpoints: [{eps}]
    connect_timeout: 500ms
{cluster_extra}
"#,
        eps = eps.join(", ")
    )
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sends `n` GETs to `url`, `concurrency` at a time; returns the statuses in order of completion.
pub async fn burst(url: &str, n: usize, concurrency: usize) -> Vec<StatusCode> {
    let client = client();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let url = url.to_owned();
        set.spawn(async move {
            let r = send(&client, Request::get(url).body(Full::default()).unwrap()).await;
            drop(permit);
            r.status
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(s) = set.join_next().await {
        out.push(s.unwrap());
    }
    out
}

/// The real `floodgate` binary running as a child process.
pub struct Bin {
    pub child: tokio::process::Child,
    pub listeners: BTreeMap<String, SocketAddr>,
    pub admin: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Bin {
    /// Starts `floodgate --config PATH --log-format json` and waits until it listens.
    pub async fn start(config: &std::path::Path) -> Bin {
        Self::start_with(config, &[]).await
    }

    /// Like [`Bin::start`], with extra command-line arguments.
    pub async fn start_with(config: &std::path::Path, args: &[&str]) -> Bin {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_floodgate"))
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("floodgate starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut bin = Bin {
            child,
            listeners: BTreeMap::new(),
            admin: "0.0.0.0:0".parse().unwrap(),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for line in bin.lines.lock().unwrap().iter() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let addr = v["addr"].as_str().and_then(|a| a.parse().ok());
                match (v["message"].as_str(), addr) {
                    (Some("listening"), Some(addr)) => {
                        let name = v["listener"].as_str().unwrap_or("").to_owned();
                        bin.listeners.insert(name, addr);
                    }
                    (Some("admin listening"), Some(addr)) => bin.admin = addr,
                    _ => {}
                }
            }
            if bin.admin.port() != 0 && !bin.listeners.is_empty() {
                return bin;
            }
            if let Ok(Some(status)) = bin.child.try_wait() {
                panic!("floodgate exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "floodgate did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://ADDR{path}` on a listener.
    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.listeners[listener], path)
    }

    /// `http://ADMIN{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Sends a signal by name (`TERM`, `HUP`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid)
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

/// The value of a Prometheus sample whose line starts with `prefix` (name plus labels), or 0.
pub fn metric(page: &str, prefix: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Starts a plain-text upstream on the address of `stopped` (after [`Upstream::stop`]),
/// retrying the bind for a bounded time while the port is released.
pub async fn restart_upstream(stopped: &Upstream) -> Upstream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(stopped.addr).await {
            Ok(listener) => return upstream_on(&stopped.name, listener, None),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot rebind {}: {e}", stopped.addr),
        }
    }
}

impl Bin {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

/// A raw HTTP/1.1 upstream on 127.0.0.1:0 that answers every request head it
/// reads (keep-alive: several per connection) with the same `reply` bytes, for
/// responses no well-behaved server would send.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    /// Starts answering with `reply`.
    pub async fn start(reply: &'static [u8]) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (conns, reqs) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::SeqCst);
                let reqs = reqs.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while let Ok(1) = s.read(&mut byte).await {
                        head.push(byte[0]);
                        if head.ends_with(b"\r\n\r\n") {
                            head.clear();
                            reqs.fetch_add(1, Ordering::SeqCst);
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
            task,
        }
    }

    /// `host:port` for config files.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Request heads read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A paced HTTP/2 rapid reset on one h2c connection to `addr`: up to `max` times,
/// open a GET of `path`, wait (≤ 5 s) until `up` has received it, reset it. Returns
/// how many streams the connection took before the server refused new ones (GOAWAY)
/// and the connection's task (finished once the server closed it).
pub async fn paced_rapid_reset(
    addr: SocketAddr,
    path: &str,
    up: &Upstream,
    max: usize,
) -> (usize, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let before = up.hits();
    let mut opened = 0;
    for _ in 0..max {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        let Ok(mut ready) = client.clone().ready().await else {
            break;
        };
        let Ok((response, mut stream)) = ready.send_request(req, true) else {
            break;
        };
        opened += 1;
        let forwarded = Instant::now();
        while up.hits() < before + opened && forwarded.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stream.send_reset(h2::Reason::CANCEL);
        drop(response);
    }
    (opened, task)
}
