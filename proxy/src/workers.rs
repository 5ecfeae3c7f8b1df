//! The threads that serve traffic: one current-thread tokio runtime per worker,
//! each running its own accept loop on every listener (the nginx worker model).
//!
//! A connection, and everything its requests do — upstream exchanges, timers,
//! HTTP/2 streams — stays on the worker that accepted it: no work stealing, no
//! wake-ups across threads, and the idle upstream connections a worker keeps are
//! its own (see [`slot`]). Admin, health checks, reload and drain run elsewhere,
//! on the control runtime that starts the workers.
//!
//! Library users and tests that do not start workers serve on the runtime they
//! are in ([`Workers::current`]); everything then shares slot 0.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a stopping worker waits for its blocking tasks before it exits.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Slots handed out so far: one per worker thread, plus slot 0 for every other thread.
static SLOTS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread's slot: its worker's number (1, 2, …) on a worker thread,
/// 0 on any other thread. State that must stay with one runtime (idle upstream
/// connections, whose sockets are registered with that runtime) is kept per slot.
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

/// How many slots exist: per-slot state is sized by this.
pub fn slots() -> usize {
    SLOTS.load(Ordering::Acquire)
}

/// The runtimes that serve listeners.
pub struct Workers {
    handles: Vec<Handle>,
    running: Mutex<Vec<Running>>,
}

/// A worker thread and the sender that stops it.
struct Running {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Workers {
    /// Starts `count` worker threads (at least one), each with its own runtime.
    pub fn start(count: usize) -> io::Result<Self> {
        let count = count.max(1);
        let first = SLOTS.fetch_add(count, Ordering::AcqRel);
        let mut handles = Vec::with_capacity(count);
        let mut running = Vec::with_capacity(count);
        for n in 0..count {
            let slot = first + n;
            let (stop, stopped) = oneshot::channel::<()>();
            let (ready, started) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name(format!("floodgate-worker-{slot}"))
                .spawn(move || {
                    SLOT.with(|s| s.set(slot));
                    // One clock read per loop turn: the cached instant expires
                    // each time the runtime wakes up (see `time::cached`).
                    crate::time::cached::enable();
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .on_thread_unpark(crate::time::cached::expire)
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(runtime.handle().clone()));
                    // Serves spawned tasks until stopped (or until `Workers` is dropped).
                    runtime.block_on(async {
                        // Timers are pooled while this runtime serves; the pool is
                        // emptied before the runtime shuts down.
                        let _timers = crate::time::timer_pool::enable();
                        let _ = stopped.await;
                    });
                    runtime.shutdown_timeout(STOP_GRACE);
                })?;
            let handle = started
                .recv()
                .map_err(|_| io::Error::other("worker thread exited while starting"))??;
            handles.push(handle);
            running.push(Running { stop, thread });
        }
        Ok(Self {
            handles,
            running: Mutex::new(running),
        })
    }

    /// Serves on the runtime of the caller (which must be inside one): for tests
    /// and embedding, where the caller's runtime does the work.
    pub fn current() -> io::Result<Self> {
        let handle = Handle::try_current().map_err(io::Error::other)?;
        Ok(Self {
            handles: vec![handle],
            running: Mutex::new(Vec::new()),
        })
    }

    /// The runtime of each worker; a listener runs one accept loop on each.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Stops the worker threads (their remaining tasks are dropped) and waits for
    /// them to exit; call after draining. Does nothing for [`Workers::current`].
    pub fn stop(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        let threads: Vec<JoinHandle<()>> = running
            .into_iter()
            .map(|w| {
                let _ = w.stop.send(());
                w.thread
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_run_tasks_on_their_own_slots_and_stop() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.handles().len(), 2);
        assert_eq!(slot(), 0, "the test thread is no worker");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let seen: Vec<usize> = rt.block_on(async {
            let mut seen = Vec::new();
            for handle in workers.handles() {
                seen.push(handle.spawn(async { slot() }).await.unwrap());
            }
            seen
        });
        assert_ne!(seen[0], 0);
        assert_eq!(seen[1], seen[0] + 1, "consecutive slots: {seen:?}");
        assert!(slots() > seen[1], "slots() covers every worker");
        workers.stop();
        // A stopped worker runs nothing more.
        let late = workers.handles()[0].spawn(async {});
        assert!(rt.block_on(late).is_err());
    }

    #[tokio::test]
    async fn current_serves_on_the_callers_runtime() {
        let workers = Workers::current().unwrap();
        let on = workers.handles()[0].spawn(async { slot() }).await.unwrap();
        assert_eq!(on, 0);
    }
}
