//! Watching the config file for changes (in-place edits, atomic renames, symlink swaps).
//!
//! A config file changes in one of three ways, and the watcher must see all of them:
//!
//! 1. **In-place edit**: `echo ... > file` or an editor writing into the same inode,
//!    often as several writes in a row (truncate, write, write, close).
//! 2. **Atomic rename**: the writer creates `file.tmp` and renames it over `file`. The
//!    inode we would have watched is gone; a watch on the file itself goes deaf.
//! 3. **Kubernetes ConfigMap swap**: the mount holds `config.yaml -> ..data/config.yaml`
//!    and `..data -> ..<timestamp>`. An update writes a new timestamped directory,
//!    renames a fresh `..data_tmp` symlink over `..data` and deletes the old directory.
//!    The path `config.yaml` never changes, so no event ever names it (Envoy's file
//!    watch is known to miss exactly this).
//!
//! So we watch the **parent directory** (non-recursively), where all three show up as
//! events on some entry. Any event there only *triggers a check*: after a quiet period
//! (the debounce, capped so a steady trickle of writes cannot postpone it forever) we
//! read the file through its path, following symlinks afresh, and emit a change only
//! when the content hash differs from the last one emitted (or the start-up baseline).
//! Touching the file, rewriting identical bytes, or unrelated files in the directory
//! therefore cause no reload. While the file is briefly missing (between a delete and
//! a create) nothing is emitted; the change is emitted once it reappears with new
//! content.
//!
//! Two polls back the OS watcher up: when it cannot be created at all we poll every
//! second (or faster if [`WatchOptions::poll_interval`] is shorter), and even when it
//! works a slow poll ([`WatchOptions::poll_interval`], 5 s by default) catches events
//! that inotify misses on NFS or overlay filesystems. A poll reads one file and hashes
//! it, nothing more.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

/// Longest a burst of events can postpone the content check (at least the debounce).
const MAX_DEBOUNCE_WAIT: Duration = Duration::from_secs(2);
/// Poll period when the OS watcher cannot be used (unless `poll_interval` is shorter).
const FALLBACK_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest poll period we accept, so a zero in the options cannot spin a core.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Raw events buffered between notify's thread and our task; extra ones are dropped,
/// since one queued event already guarantees a check.
const EVENT_QUEUE: usize = 64;

/// Settings of the config watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    /// Quiet time after the last event before the content is checked.
    pub debounce: Duration,
    /// Period of the safety-net poll that runs even when the OS watcher works.
    pub poll_interval: Duration,
    /// Skip the OS watcher and only poll (for filesystems without notifications, and tests).
    pub force_poll: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            poll_interval: Duration::from_secs(5),
            force_poll: false,
        }
    }
}

/// Watches one config file; yields when its content changed.
///
/// Dropping it stops the background task and the OS watcher.
#[derive(Debug)]
pub struct ConfigWatcher {
    changes: mpsc::Receiver<()>,
    task: JoinHandle<()>,
    polling_only: bool,
}

impl ConfigWatcher {
    /// Starts watching `path` (its parent directory, or `path` itself when it is a
    /// directory); the current content is the baseline.
    ///
    /// Must be called inside a tokio runtime. Fails if there is no runtime or the
    /// parent directory does not exist; a missing file is fine (its appearance is a change).
    pub fn spawn(path: PathBuf, options: WatchOptions) -> io::Result<ConfigWatcher> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("config watcher needs a tokio runtime: {e}")))?;
        let dir = if path.is_dir() {
            path.clone()
        } else {
            parent_dir(&path)
        };
        if !std::fs::metadata(&dir)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }

        let baseline = match fingerprint_sync(&path) {
            Ok(fp) => Some(fp),
            Err(e) => {
                debug!(path = %path.display(), error = %e, "config file unreadable at start; its next content counts as a change");
                None
            }
        };

        let os_watcher = if options.force_poll {
            None
        } else {
            match start_os_watcher(&dir) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "cannot watch config directory; falling back to polling");
                    None
                }
            }
        };
        let polling_only = os_watcher.is_none();
        let poll_interval = if polling_only {
            options.poll_interval.min(FALLBACK_POLL_INTERVAL)
        } else {
            options.poll_interval
        };

        let (tx, changes) = mpsc::channel(1);
        let task = Task {
            path,
            debounce: options.debounce,
            max_wait: MAX_DEBOUNCE_WAIT.max(options.debounce),
            poll_interval: poll_interval.max(MIN_POLL_INTERVAL),
            baseline,
            problem: None,
            errors_seen: 0,
            out: tx,
        };
        let task = runtime.spawn(task.run(os_watcher));
        Ok(ConfigWatcher {
            changes,
            task,
            polling_only,
        })
    }

    /// Waits for the next content change (debounced); None if the watcher stopped.
    pub async fn changed(&mut self) -> Option<()> {
        self.changes.recv().await
    }

    /// Whether the OS watcher is unavailable (or disabled) and only polling runs.
    pub fn is_polling_only(&self) -> bool {
        self.polling_only
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        // Aborting drops the task's future, and with it the notify watcher (which
        // shuts its own thread down).
        self.task.abort();
    }
}

/// The directory to watch: the path's parent, or `.` for a bare file name.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The OS watcher on `dir` and the channel its callback feeds.
type OsWatcher = (RecommendedWatcher, mpsc::Receiver<notify::Result<Event>>);

/// Starts notify's recommended watcher on `dir`, bridged into a tokio channel.
fn start_os_watcher(dir: &Path) -> notify::Result<OsWatcher> {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
        // Opens and reads (ours included) change nothing; passing them on would make
        // every check trigger the next one.
        if let Ok(event) = &res {
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
        }
        // Full means a check is already due; closed means the task is gone.
        let _ = tx.try_send(res);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

/// What identifies one version of the file's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    hash: u64,
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Self {
        let mut hasher = DefaultHasher::new();
        hasher.write(bytes);
        Fingerprint {
            len: bytes.len() as u64,
            hash: hasher.finish(),
        }
    }
}

fn fingerprint_sync(path: &Path) -> io::Result<Fingerprint> {
    if std::fs::metadata(path)?.is_dir() {
        return dir_fingerprint(path);
    }
    std::fs::read(path).map(|b| Fingerprint::of(&b))
}

async fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    if tokio::fs::metadata(path).await?.is_dir() {
        let path = path.to_path_buf();
        return tokio::task::spawn_blocking(move || dir_fingerprint(&path))
            .await
            .map_err(io::Error::other)?;
    }
    tokio::fs::read(path).await.map(|b| Fingerprint::of(&b))
}

/// A directory's content: the names and bytes of its regular, non-hidden files
/// (symlinks followed), in name order.
fn dir_fingerprint(dir: &Path) -> io::Result<Fingerprint> {
    let mut files: Vec<(std::ffi::OsString, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| (e.file_name(), e.path()))
        .collect();
    files.sort();
    let mut hasher = DefaultHasher::new();
    let mut len = 0u64;
    for (name, path) in files {
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        hasher.write(name.as_encoded_bytes());
        hasher.write_u8(0);
        hasher.write_u64(bytes.len() as u64);
        hasher.write(&bytes);
        len += bytes.len() as u64;
    }
    Ok(Fingerprint {
        len,
        hash: hasher.finish(),
    })
}

/// The background task: waits for events or poll ticks, checks content, emits changes.
struct Task {
    path: PathBuf,
    debounce: Duration,
    max_wait: Duration,
    poll_interval: Duration,
    /// Content last emitted (or found at start); None if the file was unreadable then.
    baseline: Option<Fingerprint>,
    /// Why the last read failed, so a missing file is logged once, not on every check.
    problem: Option<io::ErrorKind>,
    /// Watcher errors so far; only the first is a warning.
    errors_seen: u64,
    out: mpsc::Sender<()>,
}

impl Task {
    async fn run(mut self, os_watcher: Option<OsWatcher>) {
        // Keep the watcher alive exactly as long as this task.
        let (_watcher, mut events) = match os_watcher {
            Some((w, rx)) => (Some(w), Some(rx)),
            None => (None, None),
        };
        let mut poll =
            tokio::time::interval_at(Instant::now() + self.poll_interval, self.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            tokio::select! {
                () = self.out.closed() => return,
                event = next_event(&mut events) => match event {
                    Some(event) => {
                        self.log_event(&event);
                        self.settle(&mut events).await;
                        if !self.check_and_emit().await {
                            return;
                        }
                    }
                    None => {
                        warn!(path = %self.path.display(), "config directory watcher stopped; falling back to polling");
                        events = None;
                        let period = self.poll_interval.min(FALLBACK_POLL_INTERVAL);
                        poll = tokio::time::interval_at(Instant::now() + period, period);
                        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                },
                _ = poll.tick() => {
                    // Only a difference starts the debounce; a steady file costs one read.
                    if self.differs().await {
                        debug!(path = %self.path.display(), "poll saw the config content change");
                        self.settle(&mut events).await;
                        if !self.check_and_emit().await {
                            return;
                        }
                    }
                }
            }
        }
    }

    fn log_event(&mut self, event: &notify::Result<Event>) {
        match event {
            Ok(event) => debug!(kind = ?event.kind, paths = ?event.paths, "config directory event"),
            Err(e) => {
                self.errors_seen += 1;
                if self.errors_seen == 1 {
                    warn!(path = %self.path.display(), error = %e, "config watcher error; checking the file anyway");
                } else {
                    debug!(error = %e, "config watcher error");
                }
            }
        }
    }

    /// Waits until no event came for `debounce`, or `max_wait` passed since the start.
    async fn settle(&mut self, events: &mut Option<mpsc::Receiver<notify::Result<Event>>>) {
        let cap = Instant::now() + self.max_wait;
        loop {
            let quiet_until = (Instant::now() + self.debounce).min(cap);
            match tokio::time::timeout_at(quiet_until, next_event(events)).await {
                Ok(Some(event)) => {
                    self.log_event(&event);
                    if Instant::now() >= cap {
                        return;
                    }
                }
                // The watcher went away; the main loop notices on its next turn.
                Ok(None) => return,
                Err(_quiet) => return,
            }
        }
    }

    /// Reads the file and records why not if it cannot; logs each new problem once.
    async fn read(&mut self) -> Option<Fingerprint> {
        match fingerprint(&self.path).await {
            Ok(fp) => {
                if self.problem.take().is_some() {
                    debug!(path = %self.path.display(), "config file readable again");
                }
                Some(fp)
            }
            Err(e) => {
                if self.problem != Some(e.kind()) {
                    self.problem = Some(e.kind());
                    if e.kind() == io::ErrorKind::NotFound {
                        debug!(path = %self.path.display(), "config file missing; waiting for it to reappear");
                    } else {
                        warn!(path = %self.path.display(), error = %e, "cannot read config file; waiting for it to become readable");
                    }
                }
                None
            }
        }
    }

    /// Whether the file now has content other than the baseline (without emitting).
    async fn differs(&mut self) -> bool {
        match self.read().await {
            Some(fp) => Some(fp) != self.baseline,
            None => false,
        }
    }

    /// Emits a change if the content differs from the baseline; false if nobody listens.
    async fn check_and_emit(&mut self) -> bool {
        let Some(fp) = self.read().await else {
            return true;
        };
        if Some(fp) == self.baseline {
            debug!(path = %self.path.display(), "config content unchanged");
            return true;
        }
        self.baseline = Some(fp);
        debug!(path = %self.path.display(), len = fp.len, "config content changed");
        match self.out.try_send(()) {
            // Full: an unconsumed change is pending already; one reload covers both.
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => true,
            Err(mpsc::error::TrySendError::Closed(())) => false,
        }
    }
}

/// The next watcher event; pending forever when there is no watcher.
async fn next_event(
    events: &mut Option<mpsc::Receiver<notify::Result<Event>>>,
) -> Option<notify::Result<Event>> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use tokio::time::timeout;

    /// Generous bound for a change to arrive on a loaded 2-core machine.
    const ARRIVES: Duration = Duration::from_secs(5);
    /// Window in which no event may arrive.
    const QUIET: Duration = Duration::from_secs(1);

    fn options() -> WatchOptions {
        WatchOptions {
            debounce: Duration::from_millis(200),
            // Long enough that the safety-net poll does not mask an OS watcher bug.
            poll_interval: Duration::from_secs(60),
            force_poll: false,
        }
    }

    fn setup(content: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn start(path: &Path, opts: WatchOptions) -> ConfigWatcher {
        let w = ConfigWatcher::spawn(path.to_path_buf(), opts).unwrap();
        // These tests are about the OS watcher; on Linux inotify must be in use.
        if cfg!(target_os = "linux") {
            assert!(!w.is_polling_only(), "inotify watcher could not be created");
        }
        w
    }

    async fn expect_change(w: &mut ConfigWatcher) {
        match timeout(ARRIVES, w.changed()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("watcher stopped"),
            Err(_) => panic!("no change seen within {ARRIVES:?}"),
        }
    }

    async fn expect_quiet(w: &mut ConfigWatcher) {
        if let Ok(r) = timeout(QUIET, w.changed()).await {
            panic!("unexpected event: {r:?}");
        }
    }

    #[tokio::test]
    async fn in_place_write_is_one_change() {
        let (_dir, path) = setup("a: 1\n");
        let mut w = start(&path, options());
        fs::write(&path, "a: 2\n").unwrap();
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn touch_or_identical_bytes_is_no_change() {
        let (dir, path) = setup("a: 1\n");
        let mut w = start(&path, options());
        fs::write(&path, "a: 1\n").unwrap();
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        drop(f);
        fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        let _ = fs::read(&path).unwrap();
        expect_quiet(&mut w).await;
        // Still alive and still seeing real changes afterwards.
        fs::write(&path, "a: 2\n").unwrap();
        expect_change(&mut w).await;
    }

    #[tokio::test]
    async fn rapid_writes_are_one_change() {
        let (_dir, path) = setup("n: 0\n");
        let mut w = start(&path, options());
        for i in 1..=20 {
            fs::write(&path, format!("n: {i}\n")).unwrap();
        }
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn change_and_revert_within_burst_is_no_change() {
        let (_dir, path) = setup("a: 1\n");
        let mut w = start(&path, options());
        fs::write(&path, "a: 2\n").unwrap();
        fs::write(&path, "a: 1\n").unwrap();
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn steady_trickle_of_writes_cannot_postpone_forever() {
        let (_dir, path) = setup("n: 0\n");
        let mut w = start(&path, options());
        let writer_path = path.clone();
        // Writes every 50 ms (well under the debounce) for 8 s; without the cap the
        // change would only come after the writer stopped.
        let writer = tokio::spawn(async move {
            for i in 1..=160 {
                tokio::fs::write(&writer_path, format!("n: {i}\n"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        expect_change(&mut w).await;
        assert!(
            !writer.is_finished(),
            "change only came after the burst ended"
        );
        writer.abort();
    }

    #[tokio::test]
    async fn atomic_rename_over_is_a_change() {
        let (dir, path) = setup("a: 1\n");
        let mut w = start(&path, options());
        let tmp = dir.path().join("config.yaml.tmp");
        fs::write(&tmp, "a: 2\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;
        // The new inode is watched as well as the old one was.
        fs::write(&tmp, "a: 3\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        expect_change(&mut w).await;
    }

    /// Builds `..<ts>/config.yaml`, `..data -> ..<ts>`, `config.yaml -> ..data/config.yaml`.
    fn configmap(dir: &Path, ts: &str, content: &str) {
        let data = dir.join(ts);
        fs::create_dir(&data).unwrap();
        fs::write(data.join("config.yaml"), content).unwrap();
    }

    /// Does what kubelet's atomic writer does on a ConfigMap update.
    fn configmap_swap(dir: &Path, old_ts: &str, new_ts: &str, content: &str) {
        configmap(dir, new_ts, content);
        symlink(new_ts, dir.join("..data_tmp")).unwrap();
        fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        fs::remove_dir_all(dir.join(old_ts)).unwrap();
    }

    #[tokio::test]
    async fn configmap_symlink_swap_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        configmap(d, "..2026_11_22_08_00_00.123", "a: 1\n");
        symlink("..2026_11_22_08_00_00.123", d.join("..data")).unwrap();
        symlink("..data/config.yaml", d.join("config.yaml")).unwrap();
        let path = d.join("config.yaml");
        let mut w = start(&path, options());

        configmap_swap(
            d,
            "..2026_11_22_08_00_00.123",
            "..2026_11_22_08_05_00.456",
            "a: 2\n",
        );
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;

        // A swap to identical content (kubelet resyncs) is not a change.
        configmap_swap(
            d,
            "..2026_11_22_08_05_00.456",
            "..2026_11_22_08_10_00.789",
            "a: 2\n",
        );
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn delete_then_recreate_is_one_change() {
        let (_dir, path) = setup("a: 1\n");
        let mut w = start(&path, options());
        fs::remove_file(&path).unwrap();
        // Missing is not a change, and not an event storm either.
        expect_quiet(&mut w).await;
        fs::write(&path, "a: 2\n").unwrap();
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn delete_then_recreate_identical_is_no_change() {
        let (_dir, path) = setup("a: 1\n");
        let mut w = start(&path, options());
        fs::remove_file(&path).unwrap();
        fs::write(&path, "a: 1\n").unwrap();
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn file_missing_at_start_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let mut w = start(&path, options());
        fs::write(&path, "a: 1\n").unwrap();
        expect_change(&mut w).await;
    }

    fn poll_options() -> WatchOptions {
        WatchOptions {
            debounce: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
            force_poll: true,
        }
    }

    #[tokio::test]
    async fn polling_fallback_sees_changes() {
        let (dir, path) = setup("a: 1\n");
        let mut w = ConfigWatcher::spawn(path.clone(), poll_options()).unwrap();
        assert!(w.is_polling_only());
        expect_quiet(&mut w).await;

        fs::write(&path, "a: 2\n").unwrap();
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;

        let tmp = dir.path().join("config.yaml.tmp");
        fs::write(&tmp, "a: 3\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        expect_change(&mut w).await;

        fs::remove_file(&path).unwrap();
        expect_quiet(&mut w).await;
        fs::write(&path, "a: 4\n").unwrap();
        expect_change(&mut w).await;
        expect_quiet(&mut w).await;
    }

    #[tokio::test]
    async fn polling_fallback_sees_configmap_swap() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        configmap(d, "..old", "a: 1\n");
        symlink("..old", d.join("..data")).unwrap();
        symlink("..data/config.yaml", d.join("config.yaml")).unwrap();
        let mut w = ConfigWatcher::spawn(d.join("config.yaml"), poll_options()).unwrap();
        configmap_swap(d, "..old", "..new", "a: 2\n");
        expect_change(&mut w).await;
    }

    #[tokio::test]
    async fn a_watched_directory_sees_edits_additions_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.yaml"), "a: 1\n").unwrap();
        let mut w = start(d, options());
        fs::write(d.join("a.yaml"), "a: 2\n").unwrap();
        expect_change(&mut w).await;
        fs::write(d.join("b.yaml"), "b: 1\n").unwrap();
        expect_change(&mut w).await;
        // Hidden names (editor swap files, ConfigMap internals) are not content.
        fs::write(d.join(".a.yaml.swp"), "x").unwrap();
        expect_quiet(&mut w).await;
        fs::remove_file(d.join("b.yaml")).unwrap();
        expect_change(&mut w).await;
    }

    #[tokio::test]
    async fn dropping_the_watcher_stops_its_task() {
        let (_dir, path) = setup("a: 1\n");
        let w = start(&path, options());
        let handle = w.task.abort_handle();
        drop(w);
        timeout(ARRIVES, async {
            while !handle.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("task still running after drop");
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let (_dir, path) = setup("a: 1\n");
        assert!(ConfigWatcher::spawn(path, WatchOptions::default()).is_err());
    }

    #[tokio::test]
    async fn spawn_with_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("config.yaml");
        assert!(ConfigWatcher::spawn(path, WatchOptions::default()).is_err());
    }
}
