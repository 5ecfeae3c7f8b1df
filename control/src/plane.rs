//! The control plane's shared state: the groups read from the config directory,
//! the store, and one `watch` channel per group that wakes every waiting poll at
//! once when a version is published.
//!
//! Publishing is serialized by the `groups` mutex (held only for synchronous work:
//! validation and store calls, never across an `.await`), so versions of a group
//! are published in the order they were handed out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

use floodgate::config::watch::{ConfigWatcher, WatchOptions};
use floodgate::config::{ParseCache, Validated};

use crate::autoscale::{ScaleBoard, ScaleMap};
use crate::config::ControlConfig;
use crate::fence::Fences;
use crate::observe;
use crate::replicas::ReplicaBoard;
use crate::reports::{LoadStore, MemoryLoad};
use crate::snapshot::{self, Additions};
use crate::source::{self, SourceFile};
use crate::store::{Snapshot, Store, StoreError, Version};

/// What a poll waits on: the group's latest snapshot.
pub type SnapshotRx = watch::Receiver<Option<Arc<Snapshot>>>;

/// The running control plane's state.
pub struct Plane {
    /// Settings.
    pub config: ControlConfig,
    /// Where versions, snapshots, nodes and registrations live.
    pub store: Arc<dyn Store>,
    /// The autoscaler's published decisions, per cluster.
    pub scale: ScaleBoard,
    /// Replicas the process scaler is draining: their registrations are refused.
    pub fences: Fences,
    /// What the process scalers run (`GET /v1/scalers`).
    pub replicas: ReplicaBoard,
    /// The proxies' load reports.
    pub load: Arc<dyn LoadStore>,
    /// Woken by every accepted load report: the autoscaler decides at once (at
    /// most every [`crate::autoscale::run::MIN_GAP`]) instead of at its next tick.
    pub reports_arrived: tokio::sync::Notify,
    /// The cluster-wide rate limits' split (leases in the report replies).
    pub quotas: crate::quota::QuotaBoard,
    groups: Mutex<BTreeMap<String, Group>>,
}

/// One node group, as read from its file.
struct Group {
    /// The file it comes from.
    file: PathBuf,
    /// The file's text last read (valid or not), to tell a change from a re-read.
    seen: Option<Arc<str>>,
    /// The last valid file text: the base of every snapshot.
    valid: Option<Arc<str>>,
    /// The last text validated (the file's or a merge of it): the next validation takes
    /// its unchanged routes as they are (#18).
    validated: Option<Validated>,
    /// The route items of the file's text last parsed: the next parse of the file
    /// parses only the items whose text changed (#18).
    parsed: ParseCache,
    /// Clusters the valid text defines.
    clusters: BTreeSet<String>,
    /// Endpoints the valid text lists, per cluster (the static floor).
    static_endpoints: BTreeMap<String, usize>,
    /// Why the file (or its merge with the registry) was last refused.
    error: Option<String>,
    /// The file is gone; its last snapshot keeps being served.
    removed: bool,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
}

/// A group as `GET /v1/groups` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStatus {
    /// The group's name.
    pub group: String,
    /// The source file.
    pub file: String,
    /// The published version; None if nothing valid was ever published.
    pub version: Option<Version>,
    /// The clusters its config defines.
    pub clusters: Vec<String>,
    /// The last refusal (file or merged config), `file:line:col: field: reason` lines.
    pub last_error: Option<String>,
    /// Whether the file was removed (its last version is still served).
    pub removed: bool,
}

impl Plane {
    /// A plane with no groups yet.
    pub fn new(config: ControlConfig, store: Arc<dyn Store>) -> Self {
        Plane {
            config,
            store,
            scale: ScaleBoard::new(),
            fences: Fences::default(),
            replicas: ReplicaBoard::default(),
            load: Arc::new(MemoryLoad::new()),
            reports_arrived: tokio::sync::Notify::new(),
            quotas: crate::quota::QuotaBoard::starting_now(),
            groups: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of the group's snapshots; None for a group without a file.
    pub fn subscribe(&self, group: &str) -> Option<SnapshotRx> {
        self.lock().get(group).map(|g| g.tx.subscribe())
    }

    /// A receiver of the autoscaler's decisions: every cluster's [`crate::autoscale::ScaleState`],
    /// sent again whenever one of them changes (see [`ScaleBoard`]).
    pub fn scale_watch(&self) -> watch::Receiver<ScaleMap> {
        self.scale.subscribe()
    }

    /// Every group's status.
    pub fn groups(&self) -> Vec<GroupStatus> {
        let groups = self.lock();
        groups
            .iter()
            .map(|(name, g)| GroupStatus {
                group: name.clone(),
                file: g.file.display().to_string(),
                version: g.tx.borrow().as_ref().map(|s| s.version),
                clusters: g.clusters.iter().cloned().collect(),
                last_error: g.error.clone(),
                removed: g.removed,
            })
            .collect()
    }

    /// The most endpoints any group's file lists for `cluster` (None: no group
    /// defines it).
    pub fn static_endpoints(&self, cluster: &str) -> Option<usize> {
        self.lock()
            .values()
            .filter_map(|g| g.static_endpoints.get(cluster).copied())
            .max()
    }

    /// The groups whose config defines `cluster`.
    pub fn groups_with_cluster(&self, cluster: &str) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, g)| g.clusters.contains(cluster))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Takes in a fresh read of the config directory: validates changed files with
    /// the proxy's validator, publishes the valid ones, keeps the errors of the rest.
    pub fn load_sources(&self, files: BTreeMap<String, SourceFile>) -> Result<(), StoreError> {
        let registrations = self.store.endpoints()?;
        let mut groups = self.lock();
        for (name, g) in groups.iter_mut() {
            if !files.contains_key(name) && !g.removed {
                g.removed = true;
                g.seen = None;
                g.error = Some(format!(
                    "{}: file removed; its last version keeps being served",
                    g.file.display()
                ));
                tracing::warn!(group = %name, file = %g.file.display(), "group file removed; its last version keeps being served");
            }
        }
        for (name, file) in files {
            let g = groups.entry(name.clone()).or_insert_with(|| Group {
                file: file.path.clone(),
                seen: None,
                valid: None,
                validated: None,
                parsed: ParseCache::new(),
                clusters: BTreeSet::new(),
                static_endpoints: BTreeMap::new(),
                error: None,
                removed: false,
                tx: watch::Sender::new(None),
            });
            g.file = file.path.clone();
            g.removed = false;
            let text = match file.text {
                Ok(t) => t,
                Err(e) => {
                    if g.error.as_deref() != Some(e.as_str()) {
                        tracing::error!(group = %name, error = %e, "cannot read group config; not published");
                    }
                    g.error = Some(e);
                    g.seen = None;
                    continue;
                }
            };
            if g.seen.as_deref() == Some(&*text) {
                continue;
            }
            g.seen = Some(Arc::clone(&text));
            let source = file.path.display().to_string();
            let checked = snapshot::validate_cached(
                &text,
                &source,
                &self.config.configs_dir,
                g.validated.as_ref(),
                &mut g.parsed,
            );
            match checked {
                Ok(validated) => {
                    let config = &validated.config;
                    g.valid = Some(text);
                    g.clusters = snapshot::cluster_names(config).into_iter().collect();
                    g.static_endpoints = config
                        .clusters
                        .iter()
                        .map(|c| (c.name.clone(), c.endpoints.len()))
                        .collect();
                    g.validated = Some(validated);
                    g.error = None;
                    self.publish(&name, g, &registrations)?;
                }
                Err(errors) => {
                    metrics::counter!(observe::REJECTED, "stage" => "file").increment(1);
                    for line in errors.to_string().lines() {
                        tracing::error!(group = %name, error = line, "group config rejected; not published");
                    }
                    g.error = Some(errors.to_string());
                }
            }
        }
        Ok(())
    }

    /// Re-merges the registry into every group that defines one of `clusters`
    /// (every group when None) and publishes the groups whose snapshot changed.
    pub fn registry_changed(&self, clusters: Option<&BTreeSet<String>>) -> Result<(), StoreError> {
        let registrations = self.store.endpoints()?;
        let mut groups = self.lock();
        for (name, g) in groups.iter_mut() {
            let affected = clusters.is_none_or(|cs| cs.iter().any(|c| g.clusters.contains(c)));
            if affected {
                self.publish(name, g, &registrations)?;
            }
        }
        Ok(())
    }

    /// Re-merges and publishes the groups that define one of `clusters` after their
    /// burst mode changed (the autoscaler entered or left panic).
    pub fn burst_changed(&self, clusters: &BTreeSet<String>) -> Result<(), StoreError> {
        self.registry_changed(Some(clusters))
    }

    /// Builds the group's snapshot from its valid text and the registry, validates
    /// it, and publishes it under a new version if it differs from the current one.
    fn publish(
        &self,
        name: &str,
        g: &mut Group,
        registrations: &[crate::store::Registration],
    ) -> Result<(), StoreError> {
        let Some(base) = g.valid.clone() else {
            return Ok(());
        };
        let mut additions = Additions::new();
        for r in registrations
            .iter()
            .filter(|r| g.clusters.contains(&r.cluster))
        {
            additions
                .entry(r.cluster.clone())
                .or_default()
                .push(r.address.clone());
        }
        for list in additions.values_mut() {
            list.sort();
        }
        // Clusters in panic run their routes' burst-mode overrides.
        let bursting = panicking(&self.scale.current());
        let merged = match snapshot::merge_with_burst(&base, name, &additions, &bursting) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(group = %name, error = %e, "cannot merge registered endpoints; not published");
                g.error = Some(format!("{}: merge: {e}", g.file.display()));
                return Ok(());
            }
        };
        let source = format!("{} (merged with the registry)", g.file.display());
        // Text the merge left as it was is the file that was just validated: a second
        // pass of the proxy's validator would only repeat it (about 50 ms at 10,000
        // routes, #18).
        let revalidate = matches!(merged, std::borrow::Cow::Owned(_));
        let checked = match revalidate {
            true => snapshot::validate_reusing(
                &merged,
                &source,
                &self.config.configs_dir,
                g.validated.as_ref(),
            )
            .map(Some),
            false => Ok(None),
        };
        let merged_validated = match checked {
            Ok(v) => v,
            Err(errors) => {
                metrics::counter!(observe::REJECTED, "stage" => "merged").increment(1);
                for line in errors.to_string().lines() {
                    tracing::error!(group = %name, error = line, "merged config rejected; not published");
                }
                g.error = Some(errors.to_string());
                return Ok(());
            }
        };
        if g.seen.as_deref() == g.valid.as_deref() {
            // The file is valid and so is its merge: nothing is refused any more.
            g.error = None;
        }
        let current = g.tx.borrow().clone();
        if current.as_ref().is_some_and(|c| *c.config == *merged) {
            return Ok(());
        }
        // The file form the proxies validate instead of parsing the text again.
        let file = merged_validated.as_ref().or(g.validated.as_ref()).and_then(|v| {
            serde_json::to_string(v.file())
                .map_err(|e| tracing::warn!(group = %name, error = %e, "cannot render the file form; proxies parse the text"))
                .ok()
        });
        let snapshot = Snapshot {
            group: name.to_owned(),
            version: self.store.next_version()?,
            config: Arc::from(merged.as_ref()),
            file: file.map(Arc::from),
            published_at: SystemTime::now(),
        };
        self.store.put_snapshot(snapshot.clone())?;
        tracing::info!(group = %name, version = snapshot.version, endpoints_merged = additions.values().map(Vec::len).sum::<usize>(), "published");
        metrics::counter!(observe::PUBLISHED, "group" => name.to_owned()).increment(1);
        metrics::gauge!(observe::GROUP_VERSION, "group" => name.to_owned())
            .set(snapshot.version as f64);
        // Wakes every poll waiting on this group at once.
        g.tx.send_replace(Some(Arc::new(snapshot)));
        Ok(())
    }
}

/// The clusters whose autoscaler is in panic in `map`: they are in burst mode.
pub fn panicking(map: &ScaleMap) -> BTreeSet<String> {
    map.values()
        .filter(|s| s.panic)
        .map(|s| s.cluster.clone())
        .collect()
}

impl Plane {
    /// Loads the config directory once.
    pub fn load_dir(&self) -> anyhow::Result<()> {
        let files = source::scan(&self.config.configs_dir)?;
        self.load_sources(files)?;
        Ok(())
    }

    /// Watches the config directory and reloads it on every change, until the
    /// returned task is aborted.
    pub fn watch_dir(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let options = WatchOptions {
            debounce: self.config.source_watch.debounce,
            poll_interval: self.config.source_watch.poll_interval,
            force_poll: false,
        };
        let mut watcher = ConfigWatcher::spawn(self.config.configs_dir.clone(), options)?;
        Ok(tokio::spawn(async move {
            while watcher.changed().await.is_some() {
                tracing::info!(dir = %self.config.configs_dir.display(), "config directory changed; reloading");
                if let Err(e) = self.load_dir() {
                    tracing::error!(error = %e, "cannot reload the config directory");
                }
            }
        }))
    }
}
