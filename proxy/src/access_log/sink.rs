//! Where access-log lines go: each thread appends to a buffer of its own; a full
//! buffer (64 KiB) is handed to one writer thread through a bounded queue, and the
//! writer also collects every thread's partial buffer once a second. A request
//! never waits for the log: when the queue is full (the output cannot keep up) the
//! buffer's lines are dropped and counted in `floodgate_access_log_dropped_total`,
//! as Envoy's and nginx's buffered logs do. The writer reopens a file on
//! [`reopen`] (SIGUSR1, for logrotate) and on a change of target.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Counter: access-log lines dropped because the output could not keep up (or failed).
pub const DROPPED: &str = "floodgate_access_log_dropped_total";

/// A thread's buffer is handed over once it holds this much.
const CHUNK_BYTES: usize = 64 * 1024;
/// Full buffers waiting for the writer; beyond, lines are dropped (1 MiB).
const QUEUE_CHUNKS: usize = 16;
/// Partial buffers are collected this often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Where the lines are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The process's standard output (the default).
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to, created if missing, reopened on SIGUSR1.
    File(PathBuf),
}

/// Lines of one thread, not yet handed over.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    lines: u64,
}

enum Msg {
    Chunk(Chunk),
    /// Look at `Sink::target` and `Sink::reopen` now.
    Wake,
    Flush(SyncSender<()>),
}

struct Sink {
    tx: SyncSender<Msg>,
    threads: Mutex<Vec<Weak<Mutex<Chunk>>>>,
    /// A target to switch to (set by a config change).
    target: Mutex<Option<Target>>,
    /// Reopen the file (SIGUSR1).
    reopen: AtomicBool,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
        let spawned = std::thread::Builder::new()
            .name("floodgate-access-log".into())
            .spawn(move || writer(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access-log writer; lines will be dropped");
        }
        Sink {
            tx,
            threads: Mutex::new(Vec::new()),
            target: Mutex::new(None),
            reopen: AtomicBool::new(false),
        }
    })
}

/// This thread's buffer; handed over when the thread ends.
struct Local(Arc<Mutex<Chunk>>);

impl Drop for Local {
    fn drop(&mut self) {
        let chunk = std::mem::take(&mut *lock(&self.0));
        hand_over(chunk);
    }
}

thread_local! {
    static LOCAL: Local = {
        let buf = Arc::new(Mutex::new(Chunk::default()));
        lock(&sink().threads).push(Arc::downgrade(&buf));
        Local(buf)
    };
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends one line, written by `line` into this thread's buffer.
pub fn push(line: impl FnOnce(&mut Vec<u8>)) {
    let mut line = Some(line);
    let full = LOCAL.try_with(|local| {
        let mut chunk = lock(&local.0);
        if chunk.bytes.capacity() == 0 {
            chunk.bytes.reserve(CHUNK_BYTES + 1024);
        }
        if let Some(write) = line.take() {
            write(&mut chunk.bytes);
            chunk.lines += 1;
        }
        (chunk.bytes.len() >= CHUNK_BYTES).then(|| std::mem::take(&mut *chunk))
    });
    match full {
        Ok(Some(chunk)) => hand_over(chunk),
        Ok(None) => {}
        // A thread being torn down: its line goes on its own.
        Err(_) => {
            if let Some(write) = line.take() {
                let mut chunk = Chunk::default();
                write(&mut chunk.bytes);
                chunk.lines = 1;
                hand_over(chunk);
            }
        }
    }
}

/// Queues a chunk for the writer, or drops and counts its lines.
fn hand_over(chunk: Chunk) {
    if chunk.lines == 0 {
        return;
    }
    let lines = chunk.lines;
    match sink().tx.try_send(Msg::Chunk(chunk)) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => count_dropped(lines),
    }
}

fn count_dropped(lines: u64) {
    metrics::counter!(DROPPED).increment(lines);
}

/// Sets where lines go (the writer opens a file before its next write). Never
/// blocks: a writer stuck on its output takes the change when it is free again.
pub fn set_target(target: Target) {
    let s = sink();
    *lock(&s.target) = Some(target);
    let _ = s.tx.try_send(Msg::Wake);
}

/// Reopens the file (after logrotate renamed it): later lines go to a new file of
/// the same name; none is lost or split. Never blocks.
pub fn reopen() {
    let s = sink();
    s.reopen.store(true, Ordering::Release);
    let _ = s.tx.try_send(Msg::Wake);
}

/// Writes out every thread's buffered lines and waits (up to `within`) until the
/// writer has written them; returns whether it did in time.
pub fn flush(within: Duration) -> bool {
    let (ack_tx, ack_rx) = mpsc::sync_channel(1);
    let deadline = Instant::now() + within;
    let mut msg = Msg::Flush(ack_tx);
    loop {
        match sink().tx.try_send(msg) {
            Ok(()) => {
                return ack_rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .is_ok()
            }
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
}

enum Out {
    Stdout,
    Stderr,
    File(File),
    /// A file that could not be opened: lines are dropped and counted.
    Broken,
}

fn open(target: &Target) -> Out {
    match target {
        Target::Stdout => Out::Stdout,
        Target::Stderr => Out::Stderr,
        Target::File(path) => match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Out::File(f),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the access log; its lines are dropped until it can be");
                Out::Broken
            }
        },
    }
}

fn write_out(out: &mut Out, chunk: &Chunk, warned: &mut Option<Instant>) {
    let result = match out {
        Out::Stdout => std::io::stdout().lock().write_all(&chunk.bytes),
        Out::Stderr => std::io::stderr().lock().write_all(&chunk.bytes),
        Out::File(f) => f.write_all(&chunk.bytes),
        Out::Broken => Err(std::io::Error::other("not open")),
    };
    if let Err(e) = result {
        count_dropped(chunk.lines);
        if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            tracing::warn!(error = %e, lines = chunk.lines, "access log write failed; lines dropped");
            *warned = Some(Instant::now());
        }
    }
}

/// The writer thread: writes chunks as they come, collects partial buffers every
/// [`FLUSH_INTERVAL`], (re)opens the target.
fn writer(rx: Receiver<Msg>) {
    let mut target = Target::Stdout;
    let mut out = Out::Stdout;
    let mut warned = None;
    let mut swept = Instant::now();
    loop {
        let wait = FLUSH_INTERVAL.saturating_sub(swept.elapsed());
        let msg = rx.recv_timeout(wait);
        // Target changes and reopens first, so the lines of a flush go where the
        // config now says.
        let next = lock(&sink().target).take();
        if let Some(t) = next {
            if t != target || matches!(out, Out::Broken) {
                sweep(&mut out, &mut warned);
                out = open(&t);
                target = t;
            }
        }
        if sink().reopen.swap(false, Ordering::AcqRel) {
            sweep(&mut out, &mut warned);
            out = open(&target);
        }
        match msg {
            Ok(Msg::Chunk(chunk)) => write_out(&mut out, &chunk, &mut warned),
            Ok(Msg::Wake) => {}
            Ok(Msg::Flush(ack)) => {
                // Chunks queued before the flush were received first (FIFO).
                sweep(&mut out, &mut warned);
                swept = Instant::now();
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if swept.elapsed() >= FLUSH_INTERVAL {
            sweep(&mut out, &mut warned);
            swept = Instant::now();
        }
    }
}

/// Takes and writes every thread's partial buffer; forgets threads that ended.
fn sweep(out: &mut Out, warned: &mut Option<Instant>) {
    let buffers: Vec<Arc<Mutex<Chunk>>> = {
        let mut threads = lock(&sink().threads);
        threads.retain(|w| w.strong_count() > 0);
        threads.iter().filter_map(Weak::upgrade).collect()
    };
    for buf in buffers {
        let chunk = std::mem::take(&mut *lock(&buf));
        if chunk.lines > 0 {
            write_out(out, &chunk, warned);
        }
    }
}
