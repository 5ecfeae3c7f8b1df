//! Reload drivers: the config file's watcher and SIGHUP both end in
//! [`reload_file`], which validates and then calls [`Proxy::apply`], the one
//! reload path (a control-plane client will call `apply` the same way).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, watch::ConfigWatcher, watch::WatchOptions};
use crate::observe;
use crate::state::{Applied, Proxy};

/// What a reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new config is serving with this version.
    Applied(u64),
    /// The file's config equals the running one.
    Unchanged(u64),
    /// The file was rejected; the running config keeps serving.
    Rejected(String),
}

/// Loads, validates and applies the config file; a rejected file is logged with
/// every error and counted, and changes nothing.
pub fn reload_file(proxy: &Arc<Proxy>, path: &Path) -> ReloadOutcome {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(errors) => {
            metrics::counter!(observe::CONFIG_RELOADS, "result" => "rejected").increment(1);
            for line in errors.to_string().lines() {
                tracing::error!(
                    error = line,
                    "config rejected; the running config keeps serving"
                );
            }
            return ReloadOutcome::Rejected(errors.to_string());
        }
    };
    match proxy.apply(config) {
        Ok(Applied::New(v)) => ReloadOutcome::Applied(v),
        Ok(Applied::Unchanged(v)) => ReloadOutcome::Unchanged(v),
        Err(e) => {
            tracing::error!(error = %e, "config could not be applied; the running config keeps serving");
            ReloadOutcome::Rejected(e.to_string())
        }
    }
}

/// Starts the file watcher for `path` and reloads on its changes and on each
/// signal from `hangup` (a SIGHUP stream the caller installed before serving, so
/// that an early SIGHUP never meets the default action, which ends the process).
pub fn spawn(
    proxy: Arc<Proxy>,
    path: PathBuf,
    hangup: Option<tokio::signal::unix::Signal>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut watcher = match ConfigWatcher::spawn(path.clone(), WatchOptions::default()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP");
                None
            }
        };
        let mut hangup = hangup;
        loop {
            let trigger = tokio::select! {
                Some(()) = async { match watcher.as_mut() { Some(w) => w.changed().await, None => None } } => "file change",
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => "SIGHUP",
                else => return,
            };
            tracing::info!(trigger, path = %path.display(), "reloading config");
            let outcome = reload_file(&proxy, &path);
            tracing::debug!(?outcome, "reload finished");
        }
    })
}
