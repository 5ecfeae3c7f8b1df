//! The local process scaler: runs one cluster's replicas as child processes of the
//! control plane, from the `process.command` template, between `min_replicas` and
//! `max_replicas`, following the cluster's desired replicas.
//!
//! Each tick (and at once on a new decision) it reaps exited children, reads the
//! registry, asks [`super::plan::step`] what is due and does it:
//!
//! - **start**: allocate a loopback port, fill in the template, spawn the program
//!   with the app token in `FLOODGATE_APP_TOKEN` (never on the command line); the
//!   replica registers itself (`healthcode-app --register {register_url}`) and is
//!   ready once its `127.0.0.1:{port}` is in the registry;
//! - **scale-down** (newest first): fence the address (its heartbeats get 409),
//!   deregister it (proxies stop sending), wait `drain`, SIGTERM the PID it
//!   started (never a name), SIGKILL after `stop_timeout`, reap it, lift the fence;
//! - a replica that exits on its own, or does not register within `start_timeout`,
//!   is a failure: it is deregistered and reaped, and the next start waits for a
//!   jittered backoff (1s ×2 up to 30s, reset by a replica becoming ready), so a
//!   broken command is not restarted in a hot loop. Nothing is restarted beyond
//!   what the target says.
//!
//! On stop ([`super::Scalers::shutdown`]) every replica is deregistered and sent
//! SIGTERM at once (no drain: the control plane is going away), SIGKILLed after
//! `stop_timeout`, and reaped. If the task is dropped without that (the control
//! plane aborted), tokio's `kill_on_drop` SIGKILLs every child. Only a SIGKILL of
//! the control plane itself leaves replicas running (they keep serving and their
//! registrations expire with the control plane's memory).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use floodgate::config::BackoffConfig;
use floodgate::control_client::backoff::Backoff;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::{self, Action, Phase, Timing, View};
use crate::config::template::Vars;
use crate::config::{Ports, ProcessSettings};
use crate::plane::Plane;
use crate::registry::{self, DeregisterRequest};
use crate::replicas::{ProcessStatus, ReplicaStatus};

/// How often the scaler looks at its replicas and the registry.
pub const TICK: Duration = Duration::from_millis(100);
/// The environment variable that carries the app token to a replica.
pub const TOKEN_ENV: &str = "FLOODGATE_APP_TOKEN";
/// The host every replica listens on.
pub const HOST: &str = "127.0.0.1";
/// The restart backoff after a failed replica.
pub const RESTART_BACKOFF: BackoffConfig = BackoffConfig {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(30),
    multiplier: 2.0,
};

struct Replica {
    id: u64,
    port: u16,
    address: String,
    pid: u32,
    child: Child,
    phase: Phase,
    registered: bool,
    fenced: bool,
    started_at: SystemTime,
}

/// One cluster's process scaler (run it with [`ProcessScaler::run`]).
pub struct ProcessScaler {
    cluster: String,
    settings: ProcessSettings,
    plane: Arc<Plane>,
    register_url: String,
    token: String,
    replicas: Vec<Replica>,
    next_id: u64,
    backoff: Backoff,
    backoff_until: Option<Instant>,
    desired: Option<u32>,
}

impl ProcessScaler {
    /// A scaler with no replicas yet; `register_url` fills `{register_url}`,
    /// `token` goes to every replica's `FLOODGATE_APP_TOKEN`.
    pub fn new(
        cluster: &str,
        settings: ProcessSettings,
        plane: Arc<Plane>,
        register_url: String,
        token: String,
    ) -> Self {
        plane.replicas.set(ProcessStatus {
            cluster: cluster.to_owned(),
            min_replicas: settings.min_replicas,
            max_replicas: settings.max_replicas,
            ..ProcessStatus::default()
        });
        ProcessScaler {
            cluster: cluster.to_owned(),
            settings,
            plane,
            register_url,
            token,
            replicas: Vec::new(),
            next_id: 1,
            backoff: Backoff::new(RESTART_BACKOFF),
            backoff_until: None,
            desired: None,
        }
    }

    /// Follows `desired` until `stop` changes (or its sender is dropped), then stops
    /// every replica it started.
    pub async fn run(mut self, mut desired: super::StateRx, mut stop: watch::Receiver<bool>) {
        let mut desired_open = true;
        tracing::info!(cluster = %self.cluster, min = self.settings.min_replicas, max = self.settings.max_replicas, program = %self.settings.program.display(), "process scaler started");
        loop {
            self.desired = desired.borrow_and_update().as_ref().map(|s| s.desired);
            self.tick();
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                changed = desired.changed(), if desired_open => {
                    if changed.is_err() {
                        desired_open = false;
                    }
                }
                () = tokio::time::sleep(TICK) => {}
            }
        }
        self.stop_all().await;
    }

    /// One look: reap, read the registry, plan, act, publish the status.
    fn tick(&mut self) {
        self.reap();
        let registered = self.registered_addresses();
        for r in &mut self.replicas {
            r.registered = registered.contains(&r.address);
        }
        let now = Instant::now();
        let target = plan::target(
            self.desired,
            self.settings.min_replicas,
            self.settings.max_replicas,
        );
        let may_start = self.backoff_until.is_none_or(|t| now >= t);
        let views: Vec<View> = self
            .replicas
            .iter()
            .map(|r| View {
                id: r.id,
                phase: r.phase,
                registered: r.registered,
            })
            .collect();
        let timing = Timing {
            start_timeout: self.settings.start_timeout,
            stop_timeout: self.settings.stop_timeout,
            drain: self.settings.drain,
        };
        for action in plan::step(now, &views, target, may_start, &timing) {
            self.act(action, now);
        }
        self.publish(target);
    }

    fn act(&mut self, action: Action, now: Instant) {
        match action {
            Action::Start(n) => {
                for _ in 0..n {
                    if let Err(why) = self.start_one(now) {
                        tracing::error!(cluster = %self.cluster, error = %why, "cannot start a replica");
                        self.failed(now);
                        break;
                    }
                }
            }
            Action::Ready(id) => {
                let cluster = self.cluster.clone();
                if let Some(r) = self.replica(id) {
                    r.phase = Phase::Ready;
                    tracing::info!(%cluster, replica = id, pid = r.pid, address = %r.address, "replica registered: ready");
                }
                self.backoff.reset();
                metrics::counter!(super::READY_TOTAL, "cluster" => self.cluster.clone())
                    .increment(1);
            }
            Action::GiveUp(id) => {
                tracing::warn!(cluster = %self.cluster, replica = id, timeout = ?self.settings.start_timeout, "replica did not register in time; stopping it");
                self.terminate(id, now);
                self.failed(now);
            }
            Action::Drain(id) => self.drain(id, now),
            Action::Terminate(id) => self.terminate(id, now),
            Action::Kill(id) => {
                if let Some(r) = self.replica(id) {
                    tracing::warn!(
                        replica = id,
                        pid = r.pid,
                        "replica still running after stop_timeout: SIGKILL"
                    );
                    let _ = r.child.start_kill();
                    r.phase = Phase::Killed;
                }
            }
        }
    }

    /// A failed replica (or start): the next start waits for the backoff.
    fn failed(&mut self, now: Instant) {
        let wait = self.backoff.next_delay(rand::random::<f64>());
        self.backoff_until = Some(now + wait);
        metrics::counter!(super::FAILURES_TOTAL, "cluster" => self.cluster.clone()).increment(1);
        tracing::warn!(cluster = %self.cluster, failures = self.backoff.failures(), next_start_in = ?wait, "replica failed; backing off");
    }

    fn start_one(&mut self, now: Instant) -> Result<(), String> {
        let port = self.allocate_port()?;
        let id = self.next_id;
        self.next_id += 1;
        let args = self.settings.args.expand(&Vars {
            host: HOST,
            port,
            cluster: &self.cluster,
            register_url: &self.register_url,
            replica: id,
        });
        let child = Command::new(&self.settings.program)
            .args(&args)
            .env(TOKEN_ENV, &self.token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.settings.program.display()))?;
        let pid = child.id().unwrap_or(0);
        let address = format!("{HOST}:{port}");
        tracing::info!(cluster = %self.cluster, replica = id, pid, %address, "replica started");
        metrics::counter!(super::STARTS_TOTAL, "cluster" => self.cluster.clone()).increment(1);
        self.replicas.push(Replica {
            id,
            port,
            address,
            pid,
            child,
            phase: Phase::Starting { since: now },
            registered: false,
            fenced: false,
            started_at: SystemTime::now(),
        });
        Ok(())
    }

    /// A loopback port: the OS's choice (`auto`), or the lowest port of the range
    /// that no replica holds and that can be bound now. The port is released
    /// before the replica binds it; a replica that loses that race exits and is
    /// counted as a failure.
    fn allocate_port(&self) -> Result<u16, String> {
        let free = |port: u16| {
            std::net::TcpListener::bind((HOST, port))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        };
        match self.settings.ports {
            Ports::Auto => free(0).map_err(|e| format!("no free loopback port: {e}")),
            Ports::Range { first, last } => (first..=last)
                .find(|p| !self.replicas.iter().any(|r| r.port == *p) && free(*p).is_ok())
                .ok_or_else(|| format!("no free port in {first}-{last}")),
        }
    }

    /// Scale-down of a registered replica: fence, deregister, drain.
    fn drain(&mut self, id: u64, now: Instant) {
        let until = now + self.settings.drain;
        self.fence_and_deregister(id);
        if let Some(r) = self.replica(id) {
            tracing::info!(replica = id, pid = r.pid, address = %r.address, drain = ?until.saturating_duration_since(now), "scaling down: deregistered, draining");
            r.phase = Phase::Draining { until };
        }
    }

    /// Fences the replica (deregistering it if registered) and SIGTERMs its PID.
    fn terminate(&mut self, id: u64, now: Instant) {
        self.fence_and_deregister(id);
        let kill_at = now + self.settings.stop_timeout;
        if let Some(r) = self.replica(id) {
            // Signal only a child not yet reaped: its PID cannot have been reused.
            if matches!(r.child.try_wait(), Ok(None)) {
                if let Err(e) = sigterm(r.pid) {
                    tracing::warn!(replica = id, pid = r.pid, error = %e, "SIGTERM failed");
                }
            }
            tracing::info!(replica = id, pid = r.pid, "SIGTERM sent");
            r.phase = Phase::Stopping { kill_at };
        }
    }

    fn fence_and_deregister(&mut self, id: u64) {
        let Some(r) = self.replicas.iter_mut().find(|r| r.id == id) else {
            return;
        };
        if !r.fenced {
            self.plane.fences.fence(&self.cluster, &r.address);
            r.fenced = true;
        }
        if r.registered {
            deregister(&self.plane, &self.cluster, &r.address);
            r.registered = false;
        }
    }

    /// Removes exited children (reaping them), deregistering any still registered.
    fn reap(&mut self) {
        let mut gone = Vec::new();
        for r in &mut self.replicas {
            match r.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => gone.push((r.id, Some(status))),
                Err(e) => {
                    tracing::warn!(replica = r.id, pid = r.pid, error = %e, "cannot wait for replica");
                    gone.push((r.id, None));
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        let registered = self.registered_addresses();
        let now = Instant::now();
        for (id, status) in gone {
            let Some(i) = self.replicas.iter().position(|r| r.id == id) else {
                continue;
            };
            let r = self.replicas.remove(i);
            let expected = matches!(
                r.phase,
                Phase::Stopping { .. } | Phase::Killed | Phase::Draining { .. }
            );
            if registered.contains(&r.address) {
                deregister(&self.plane, &self.cluster, &r.address);
            }
            self.plane.fences.lift(&self.cluster, &r.address);
            let status = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
            if expected {
                tracing::info!(cluster = %self.cluster, replica = id, pid = r.pid, %status, "replica stopped");
            } else {
                tracing::warn!(cluster = %self.cluster, replica = id, pid = r.pid, %status, phase = r.phase.name(), "replica exited on its own");
                self.failed(now);
            }
        }
    }

    fn registered_addresses(&self) -> BTreeSet<String> {
        match self.plane.store.endpoints() {
            Ok(all) => all
                .into_iter()
                .filter(|e| e.cluster == self.cluster)
                .map(|e| e.address)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the registry");
                // Keep what each replica last knew.
                self.replicas
                    .iter()
                    .filter(|r| r.registered)
                    .map(|r| r.address.clone())
                    .collect()
            }
        }
    }

    fn replica(&mut self, id: u64) -> Option<&mut Replica> {
        self.replicas.iter_mut().find(|r| r.id == id)
    }

    fn publish(&self, target: u32) {
        let replicas: Vec<ReplicaStatus> = self
            .replicas
            .iter()
            .map(|r| ReplicaStatus {
                replica: r.id,
                pid: r.pid,
                address: r.address.clone(),
                phase: r.phase.name(),
                started_at: unix_ms(r.started_at),
            })
            .collect();
        for phase in ["starting", "ready", "draining", "stopping"] {
            let n = replicas.iter().filter(|r| r.phase == phase).count();
            metrics::gauge!(super::REPLICAS, "cluster" => self.cluster.clone(), "phase" => phase)
                .set(n as f64);
        }
        let next = ProcessStatus {
            cluster: self.cluster.clone(),
            desired: self.desired,
            target,
            min_replicas: self.settings.min_replicas,
            max_replicas: self.settings.max_replicas,
            failures: self.backoff.failures(),
            replicas,
        };
        self.plane.replicas.set(next);
    }

    /// Deregisters and SIGTERMs every replica, SIGKILLs what still runs after
    /// `stop_timeout`, and reaps them all.
    async fn stop_all(&mut self) {
        let now = Instant::now();
        let ids: Vec<u64> = self
            .replicas
            .iter()
            .filter(|r| !matches!(r.phase, Phase::Stopping { .. } | Phase::Killed))
            .map(|r| r.id)
            .collect();
        if !self.replicas.is_empty() {
            tracing::info!(cluster = %self.cluster, replicas = self.replicas.len(), "stopping every replica");
        }
        let registered = self.registered_addresses();
        for r in &mut self.replicas {
            r.registered = registered.contains(&r.address);
        }
        for id in ids {
            self.terminate(id, now);
        }
        // SIGKILL cannot be refused; the bound only guards against a child stuck
        // in the kernel, which is then left to `kill_on_drop`.
        let give_up = now + self.settings.stop_timeout + Duration::from_secs(5);
        while !self.replicas.is_empty() {
            if Instant::now() >= give_up {
                tracing::error!(cluster = %self.cluster, replicas = self.replicas.len(), "replicas not reaped after SIGKILL; leaving them");
                break;
            }
            self.reap();
            let now = Instant::now();
            for r in &mut self.replicas {
                if matches!(r.phase, Phase::Stopping { kill_at } if now >= kill_at) {
                    tracing::warn!(
                        replica = r.id,
                        pid = r.pid,
                        "replica still running after stop_timeout: SIGKILL"
                    );
                    let _ = r.child.start_kill();
                    r.phase = Phase::Killed;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.publish(0);
    }
}

fn deregister(plane: &Plane, cluster: &str, address: &str) {
    let req = DeregisterRequest {
        cluster: cluster.to_owned(),
        address: address.to_owned(),
    };
    if let Err(e) = registry::deregister(plane, &req) {
        tracing::warn!(%cluster, %address, error = %e, "cannot deregister replica");
    }
}

fn sigterm(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("bad pid {pid}")))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(std::io::Error::from)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
