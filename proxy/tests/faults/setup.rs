//! The proxy under test: the real `floodgate` binary started from a config with a
//! `normal` route (healthy upstreams, the traffic whose success rate is measured)
//! and a `fault` route (the upstreams the case breaks).

use std::path::PathBuf;

use super::check::{proc_status_kib, reconcile, requests_counted, Counters, Expect};
use super::load::{self, Report, Stream};
use crate::common::Bin;

/// What a case sets in the generated config (YAML lines, indented as noted).
#[derive(Debug, Default, Clone)]
pub struct Cfg {
    /// Endpoints of cluster `normal` (requests under `/normal/`).
    pub normal: Vec<String>,
    /// Endpoints of cluster `fault` (every other path); empty: no such cluster.
    pub fault: Vec<String>,
    /// Extra lines for the `fault` route (8 spaces of indent).
    pub fault_route: String,
    /// The `fault` route's timeout (`2s` when `None`).
    pub fault_timeout: Option<&'static str>,
    /// Extra lines for the `fault` cluster (4 spaces).
    pub fault_cluster: String,
    /// Extra lines for the `normal` route (8 spaces).
    pub normal_route: String,
    /// The listener's `limits:` block as a flow map, e.g. `{ header_read_timeout: 1s }`.
    pub limits: String,
}

impl Cfg {
    /// The config text (the route timeout 2s, the drain deadline 5s, no access log).
    pub fn text(&self) -> String {
        let list = |eps: &[String]| {
            eps.iter()
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let limits = if self.limits.is_empty() {
            String::new()
        } else {
            format!("    limits: {}\n", self.limits)
        };
        let mut text = format!(
            "admin: {{ listen: 127.0.0.1:0 }}\n\
             server: {{ drain_timeout: 5s, access_log: false }}\n\
             listeners:\n  - name: public\n    listen: 127.0.0.1:0\n{limits}    routes:\n\
             \x20     - name: normal\n        match: {{ path_prefix: \"/normal/\" }}\n        cluster: normal\n        timeout: 2s\n{}\n",
            self.normal_route
        );
        if !self.fault.is_empty() {
            text += &format!(
                "      - name: fault\n        cluster: fault\n        timeout: {}\n{}\n",
                self.fault_timeout.unwrap_or("2s"),
                self.fault_route
            );
        }
        text += &format!(
            "clusters:\n  - name: normal\n    endpoints: [{}]\n    connect_timeout: 500ms\n",
            list(&self.normal)
        );
        if !self.fault.is_empty() {
            text += &format!(
                "  - name: fault\n    endpoints: [{}]\n    connect_timeout: 500ms\n{}\n",
                list(&self.fault),
                self.fault_cluster
            );
        }
        text
    }
}

/// A running `floodgate` child with its config file.
pub struct Proxy {
    /// The child process.
    pub bin: Bin,
    /// The config file (rewrite it to reload).
    pub path: PathBuf,
    /// Keeps the config's directory alive.
    pub dir: tempfile::TempDir,
}

impl Proxy {
    /// Writes `text` to a fresh directory and starts the binary on it.
    pub async fn start(text: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("floodgate.yaml");
        std::fs::write(&path, text).expect("write config");
        let bin = Bin::start(&path).await;
        Proxy { bin, path, dir }
    }

    /// The process's peak RSS so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.bin.pid(), "VmHWM")
    }

    /// `http://LISTENER{path}`.
    pub fn url(&self, path: &str) -> String {
        self.bin.url("public", path)
    }

    /// Runs `streams` (each request bounded by `client_timeout`) while `fault`
    /// runs, then reconciles the case against the proxy's counters and `/proc`.
    /// The fault's output (e.g. a restarted upstream) lives until the reconciliation is done.
    pub async fn case<F, T>(
        &self,
        case: &str,
        streams: Vec<Stream>,
        fault: F,
        expect: Expect,
    ) -> (Report, T)
    where
        F: std::future::Future<Output = T>,
    {
        let metrics = self.bin.admin_url("/metrics");
        let prefix = "floodgate_requests_total";
        let before = requests_counted(&metrics, prefix).await;
        let _alone = load::exclusive().await;
        let (report, kept) = tokio::join!(
            load::run(streams, std::time::Duration::from_secs(10)),
            fault
        );
        if report.normal_success() < expect.min_normal_success {
            // What admission saw (its limit, queue and sheds) explains most shortfalls.
            let clusters = crate::common::get(&self.bin.admin_url("/clusters")).await;
            eprintln!("{case}: /clusters after the load: {}", clusters.body);
        }
        reconcile(
            case,
            &report,
            expect,
            Some(Counters {
                url: &metrics,
                prefix,
                before,
            }),
            self.peak_rss_kib(),
        )
        .await;
        (report, kept)
    }
}
