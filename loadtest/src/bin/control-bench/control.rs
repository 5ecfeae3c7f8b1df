//! The control plane under measurement: its process, its temporary configs
//! directory and group file, and one-shot API calls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::real;
use super::{APP, FIRST_TIMEOUT_MS, OPERATOR, PROXY};

/// The control-plane process; killed (by its own handle) when dropped.
pub struct ControlPlane {
    pub child: Child,
    pub addr: SocketAddr,
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// Kills it (SIGKILL: no goodbye to anyone), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same directory (a fresh memory).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = spawn_control(&self.bin, &self.dir)?;
        Ok(())
    }

    /// Its resident memory, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }
}

/// The temporary directory; removed when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Version `k` of the group file: listener `web` on a free port of each proxy,
/// cluster `bench` with the static upstream; a push changes the route timeout.
pub fn group_yaml(static_upstream: SocketAddr, k: usize) -> String {
    format!(
        "server: {{ access_log: false }}\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    \
         routes: [ {{ name: all, cluster: bench, timeout: {}ms }} ]\n\
         clusters:\n  - name: bench\n    endpoints: [\"{static_upstream}\"]\n    connect_timeout: 500ms\n",
        FIRST_TIMEOUT_MS + k
    )
}

/// Writes the group file atomically (a hidden temp file, which the watcher skips, then a rename).
pub fn write_group(dir: &Path, static_upstream: SocketAddr, k: usize) -> anyhow::Result<()> {
    let tmp = dir.join(".bench.yaml.tmp");
    std::fs::write(&tmp, group_yaml(static_upstream, k))?;
    std::fs::rename(&tmp, dir.join("bench.yaml"))?;
    Ok(())
}

/// Starts the control plane binary (`control_bin`, else beside this one) with a
/// temporary configs directory holding version 0 of the group file.
pub fn start_control(
    control_bin: Option<&Path>,
    debounce: &str,
    dir: &Path,
    static_upstream: SocketAddr,
) -> anyhow::Result<ControlPlane> {
    let bin = match control_bin {
        Some(b) => b.to_owned(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this binary")?
            .join("floodgate-control"),
    };
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build --release -p floodgate-control) or pass --control-bin",
        bin.display()
    );
    let groups = dir.join("groups");
    std::fs::create_dir_all(&groups)?;
    write_group(&groups, static_upstream, 0)?;
    // A free port, released for the control plane to bind (loopback, a tiny window).
    let addr = real::free_addr()?;
    std::fs::write(
        dir.join("control.yaml"),
        format!(
            "listen: {addr}\nconfigs_dir: groups\n\
             tokens: {{ proxy: {PROXY}, app: {APP}, operator: {OPERATOR} }}\n\
             source: {{ debounce: {} }}\n",
            debounce
        ),
    )?;
    let child = spawn_control(&bin, dir)?;
    Ok(ControlPlane {
        child,
        addr,
        bin,
        dir: dir.to_owned(),
    })
}

/// Spawns the control plane binary, its output appended to `control.log`.
pub fn spawn_control(bin: &Path, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("control.log"))?;
    Command::new(bin)
        .arg("--config")
        .arg(dir.join("control.yaml"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

/// Waits (≤ 20 s) until the control plane answers with a version of the group.
pub async fn wait_control(cp: &ControlPlane) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((StatusCode::OK, g)) =
            call(cp.addr, Method::GET, "/v1/groups", OPERATOR, None).await
        {
            if g["groups"][0]["version"].as_u64().is_some() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the control plane did not come up; see {}",
            cp.dir.join("control.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request on a fresh connection (operator calls; pollers keep theirs).
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (status, bytes) = send(&mut sender, addr, method, path, token, body).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// One request on an open connection: status and body.
pub async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// The group's current version, from `/v1/groups`.
pub async fn group_version(cp: &ControlPlane) -> anyhow::Result<u64> {
    let (_, g) = call(cp.addr, Method::GET, "/v1/groups", OPERATOR, None).await?;
    g["groups"][0]["version"]
        .as_u64()
        .context("the group has no version")
}
