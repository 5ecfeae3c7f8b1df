//! Shared by the control plane's integration tests: a control plane started
//! in-process from its library on 127.0.0.1 with a temporary configs directory
//! (stoppable and restartable on the same port), tiny upstreams, an HTTP client
//! and a bounded `eventually`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// The proxy role's token.
pub const PROXY: &str = "proxy-token-for-tests-0001";
/// The app role's token.
pub const APP: &str = "app-token-for-tests-000002";
/// The operator role's token.
pub const OPERATOR: &str = "operator-token-for-tests-3";

/// A control plane with its temporary directory (`groups/` holds the group files).
pub struct ControlPlane {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
    running: Option<floodgate_control::Running>,
    addr: SocketAddr,
}

impl ControlPlane {
    /// Starts a control plane whose group `name` has `config`; long polls wait 1s.
    pub async fn start(group: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("groups")).unwrap();
        std::fs::write(dir.path().join(format!("groups/{group}.yaml")), config).unwrap();
        let mut cp = ControlPlane {
            dir,
            running: None,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        cp.restart().await;
        cp
    }

    /// The API's address (kept across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it: the API socket closes, state held in memory is gone.
    pub fn stop(&mut self) {
        self.running = None;
    }

    /// (Re)starts it on the same port, with the same directory.
    pub async fn restart(&mut self) {
        self.stop();
        let text = format!(
            "listen: {}\nconfigs_dir: groups\n\
             tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
             long_poll: {{ timeout: 1s, jitter: 0s }}\n\
             source: {{ debounce: 20ms, poll_interval: 200ms }}\n",
            self.addr
        );
        let config =
            floodgate_control::config::parse_str(&text, "control.yaml", self.dir.path()).unwrap();
        // The old port may take a moment to be free again after a stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        let running = loop {
            match floodgate_control::start(config.clone()).await {
                Ok(r) => break r,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("control plane did not start: {e}"),
            }
        };
        self.addr = running.local_addr();
        self.running = Some(running);
    }

    /// The running plane's shared state (panics when stopped).
    pub fn plane(&self) -> std::sync::Arc<floodgate_control::plane::Plane> {
        std::sync::Arc::clone(self.running.as_ref().unwrap().plane())
    }

    /// The path of group `name`'s file.
    pub fn group_file(&self, group: &str) -> PathBuf {
        self.dir.path().join(format!("groups/{group}.yaml"))
    }

    /// Replaces a group's file atomically (as an editor or a ConfigMap swap would).
    pub fn write_group(&self, group: &str, config: &str) {
        let tmp = self.dir.path().join(format!("groups/.{group}.tmp"));
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, self.group_file(group)).unwrap();
    }

    /// `GET path` with the operator's token, as JSON.
    pub async fn operator_get(&self, path: &str) -> Value {
        let (status, body) = call(self.addr, Method::GET, path, Some(OPERATOR), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        serde_json::from_slice(&body).unwrap()
    }

    /// The published version of `group`.
    pub async fn version(&self, group: &str) -> Option<u64> {
        let groups = self.operator_get("/v1/groups").await;
        groups["groups"]
            .as_array()?
            .iter()
            .find(|g| g["group"] == group)?["version"]
            .as_u64()
    }

    /// `/v1/nodes`' entry of `node`.
    pub async fn node(&self, node: &str) -> Option<Value> {
        let nodes = self.operator_get("/v1/nodes").await;
        nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["node"] == node)
            .cloned()
    }
}

/// A group config with listener `web` on 127.0.0.1:0 routing everything to
/// cluster `app` at `endpoint`.
pub fn group_config(endpoint: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    routes: [ {{ name: all, cluster: app }} ]\n\
         clusters:\n  - name: app\n    endpoints: [\"{endpoint}\"]\n"
    )
}

/// A tiny upstream answering every request with `name`.
pub async fn upstream(name: &'static str) -> SocketAddr {
    serve_each(move || async move { Response::new(Full::new(Bytes::from(name))) }).await
}

/// A real HTTP/1.1 server on 127.0.0.1:0 answering every request with `answer()`.
pub async fn serve_each<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    let answer = answer();
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// One request; `(status, body)`.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// `GET http://addr/path`'s body as text, or `None` when the request fails.
pub async fn get_text(addr: SocketAddr, path: &str) -> Option<(StatusCode, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.ok()?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Polls `check` until it returns `Some`, for at most 15 s (generous on a shared
/// machine; a passing test returns as soon as the state is reached).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream answering 200 to every request and counting them.
pub async fn counting_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let counter = std::sync::Arc::clone(&count);
    let addr = serve_each(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        async { Response::new(Full::new(Bytes::from("ok"))) }
    })
    .await;
    (addr, count)
}

/// A proxy (`floodgate::control_client::Managed`, in this process) driven by `cp`
/// as node `node` of `group` (default report interval), with its snapshot file in
/// `dir`; fast retries so tests do not wait on the backoff.
pub fn managed_proxy(
    cp: &ControlPlane,
    group: &str,
    node: &str,
    dir: &std::path::Path,
) -> floodgate::control_client::Managed {
    let bootstrap = format!(
        "control_plane:\n  url: {}\n  node_id: {node}\n  group: {group}\n  token: {PROXY}\n  \
         snapshot_file: {}\n  poll_timeout: 5s\n  backoff: {{ initial: 20ms, max: 200ms }}\n",
        cp.url(),
        dir.join(format!("{node}.snapshot.yaml")).display()
    );
    let config = floodgate::config::parse_str(&bootstrap, "bootstrap.yaml", dir).unwrap();
    floodgate::control_client::Managed::start(config, dir).unwrap()
}

/// Serves `m`'s admin API (with `/control` and `/metrics`) on 127.0.0.1:0.
pub async fn managed_admin(m: &floodgate::control_client::Managed) -> SocketAddr {
    floodgate::observe::prometheus();
    let admin = floodgate::admin::Admin::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
        .with_control(std::sync::Arc::clone(m.status()));
    let addr = admin.local_addr().unwrap();
    tokio::spawn(admin.serve(std::sync::Arc::clone(m.proxy())));
    addr
}

/// An upstream answering every request with `name` after `delay`, counting the
/// requests in flight.
pub async fn slow_upstream(
    name: &'static str,
    delay: Duration,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let in_flight = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&in_flight);
    let addr = serve_each(move || {
        let counter = std::sync::Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            counter.fetch_sub(1, Ordering::SeqCst);
            Response::new(Full::new(Bytes::from(name)))
        }
    })
    .await;
    (addr, in_flight)
}
