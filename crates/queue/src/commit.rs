//! Group commit: many concurrent [`sync`](GroupCommit::sync) callers share one fsync.
//!
//! A dedicated thread owns the flushing. Flushes are numbered (generations). A caller whose
//! writes are already applied in memory asks for generation `started + 1`: the next flush to
//! *start*, which by construction begins after the caller's writes and therefore covers them.
//! While one flush runs, every caller that arrives asks for the next one, so N concurrent
//! callers cost about two fsyncs, not N. Completion is published on a `tokio::sync::watch`
//! channel, which wakes tasks of any runtime (or none: the thread needs no runtime).
//!
//! Writers that need no answer (attempt outcomes, releases, redrives, pauses) call
//! [`request`](GroupCommit::request) instead: it asks for the next generation and returns at
//! once, so their writes reach the disk within about one flush without anybody waiting.
//!
//! What one flush does is [`Barrier::run`]: sled's own `flush` is not an fsync on Linux, so the
//! barrier adds one (see there).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use herald_core::StoreError;
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct State {
    /// The generation of the last flush that started.
    started: u64,
    /// The highest generation anybody waits for.
    requested: u64,
    shutdown: bool,
}

#[derive(Debug, Clone, Default)]
struct Done {
    /// The generation of the last flush that finished (well or not).
    completed: u64,
    /// The generation of the last flush that succeeded.
    ok: u64,
    /// The last failure, if any.
    error: Option<FlushFailure>,
}

#[derive(Debug, Clone)]
struct FlushFailure {
    full: bool,
    message: Arc<str>,
}

impl FlushFailure {
    fn to_store_error(&self) -> StoreError {
        let io = io::Error::new(
            if self.full {
                io::ErrorKind::StorageFull
            } else {
                io::ErrorKind::Other
            },
            self.message.to_string(),
        );
        if self.full {
            StoreError::Full(io)
        } else {
            StoreError::Backend(Box::new(io))
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// A generation is requested and has not started yet: a [`GroupCommit::request`] that sees
    /// it set is covered by that generation and returns without taking the lock.
    pending: AtomicBool,
    wake: Condvar,
    done: watch::Sender<Done>,
}

/// The flusher thread and its bookkeeping.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher thread; `flush` makes everything written so far durable.
    pub(crate) fn start<F>(flush: F) -> io::Result<Self>
    where
        F: Fn() -> Result<(), StoreError> + Send + 'static,
    {
        let (done, _) = watch::channel(Done::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            pending: AtomicBool::new(false),
            wake: Condvar::new(),
            done,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("herald-queue-sync".into())
            .spawn(move || run(&worker, flush))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Resolves once a flush that started after this call has completed.
    pub(crate) async fn sync(&self) -> Result<(), StoreError> {
        let target = {
            let mut state = self.shared.state.lock();
            if state.shutdown {
                return Err(StoreError::Closed);
            }
            let target = state.started + 1;
            if state.requested < target {
                state.requested = target;
                self.shared.pending.store(true, Ordering::SeqCst);
                self.shared.wake.notify_one();
            }
            target
        };
        let mut rx = self.shared.done.subscribe();
        let done = rx
            .wait_for(|d| d.completed >= target)
            .await
            .map_err(|_| StoreError::Closed)?
            .clone();
        if done.ok >= target {
            // Some flush that started after our writes succeeded: they are on disk.
            Ok(())
        } else {
            Err(done
                .error
                .map_or(StoreError::Closed, |f| f.to_store_error()))
        }
    }

    /// Asks for a flush that starts after this call, without waiting for it (fire and forget):
    /// the writes made before the call reach the disk with the next flush generation. Cheap
    /// when a generation is already waiting to start (one atomic swap, no lock).
    pub(crate) fn request(&self) {
        if self.shared.pending.swap(true, Ordering::SeqCst) {
            // A generation that has not started yet covers the caller's writes.
            return;
        }
        let mut state = self.shared.state.lock();
        if state.shutdown {
            // The owner runs a final barrier after the shutdown.
            return;
        }
        let target = state.started + 1;
        if state.requested < target {
            state.requested = target;
            self.shared.wake.notify_one();
        }
    }

    /// Serves the requests already made, then stops the thread. Idempotent.
    pub(crate) fn shutdown(&self) {
        self.shared.state.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!("herald-queue sync thread panicked");
            }
        }
    }
}

fn run<F>(shared: &Shared, flush: F)
where
    F: Fn() -> Result<(), StoreError>,
{
    loop {
        let generation = {
            let mut state = shared.state.lock();
            while state.requested <= state.started && !state.shutdown {
                shared.wake.wait(&mut state);
            }
            if state.requested <= state.started {
                // Shut down and nothing left to serve.
                return;
            }
            state.started += 1;
            // Requests from now on need a later generation: this one may have missed them.
            shared.pending.store(false, Ordering::SeqCst);
            state.started
        };
        let result = flush();
        shared.done.send_modify(|d| {
            d.completed = generation;
            match &result {
                Ok(()) => d.ok = generation,
                Err(e) => {
                    tracing::error!(error = %e, "queue flush failed; writes are not acknowledged");
                    d.error = Some(FlushFailure {
                        full: matches!(e, StoreError::Full(_)),
                        message: e.to_string().into(),
                    });
                }
            }
        });
    }
}

/// The durability barrier behind every flush generation, every shutdown flush and
/// [`SledStore::flush_blocking`](crate::SledStore::flush_blocking).
///
/// sled 0.34's `flush` writes its log with `pwrite` and, on Linux, only `sync_file_range`: that
/// starts and waits for the write-back of those pages but flushes neither the file's metadata
/// (its size, when the log grew) nor the device's volatile write cache, so it is not durable
/// against power loss or a kernel crash. Only sled's own background thread fsyncs, every
/// `flush_every_ms`. So after sled's `flush` the barrier itself makes it durable:
///
/// 1. an `fsync` of every file in `blobs/` that is new or changed since the last barrier (sled
///    writes values too large for its log segments there, with plain `write`s and no fsync),
///    then of the `blobs/` directory if it has new entries;
/// 2. an `fsync` of the store directory if its entries changed (sled renames snapshot files);
/// 3. an `fdatasync` of sled's log file `db`, on a handle of our own (an fsync covers the
///    file, whichever descriptor made the writes).
///
/// In the common case (no blobs, no new files) that is one `fdatasync` and two short directory
/// reads per flush generation, shared by every waiter of that generation.
#[derive(Debug)]
pub(crate) struct Barrier {
    tree: sled::Tree,
    dir: PathBuf,
    db: File,
    known: Mutex<Known>,
}

/// What the previous barriers already made durable.
#[derive(Debug, Default)]
struct Known {
    /// The store directory's entries.
    top: BTreeSet<OsString>,
    /// The `blobs/` files, with the length they had when fsync'd (a blob still being written
    /// by a writer that this flush does not cover is synced again once it grew).
    blobs: BTreeMap<OsString, u64>,
}

/// sled's data directory for values too large for a log segment.
const BLOBS: &str = "blobs";
/// sled's log file.
const LOG: &str = "db";
/// sled's persisted configuration (written once, at creation, without fsync).
const CONF: &str = "conf";

impl Barrier {
    /// A barrier for the sled store in `dir` (opened already). Makes the creation of the store
    /// durable first: `conf`, the files in `blobs/`, `blobs/` itself, the store directory and
    /// its parent are fsync'd, since sled creates them without any fsync.
    pub(crate) fn open(tree: sled::Tree, dir: &Path) -> io::Result<Self> {
        let db = File::open(dir.join(LOG))?;
        // `db` itself needs no fsync here: its entry is made durable with the directory, and
        // its contents by every barrier.
        File::open(dir.join(CONF))?.sync_all()?;
        let barrier = Self {
            tree,
            dir: dir.to_path_buf(),
            db,
            known: Mutex::new(Known::default()),
        };
        {
            // Records every present blob and entry, fsyncing them (all new to this barrier).
            let mut known = barrier.known.lock();
            barrier.sync_blobs(&mut known)?;
            sync_dir(dir)?;
            known.top = entries(dir)?;
        }
        if let Some(parent) = dir.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_dir(parent)?;
        }
        Ok(barrier)
    }

    /// Makes everything written to the tree so far durable (see the type's docs).
    pub(crate) fn run(&self) -> Result<(), StoreError> {
        self.tree.flush().map_err(crate::error::backend)?;
        self.sync_files().map_err(io_error)
    }

    fn sync_files(&self) -> io::Result<()> {
        {
            let mut known = self.known.lock();
            self.sync_blobs(&mut known)?;
            let top = entries(&self.dir)?;
            if top != known.top {
                sync_dir(&self.dir)?;
                known.top = top;
            }
        }
        self.db.sync_data()
    }

    fn sync_blobs(&self, known: &mut Known) -> io::Result<()> {
        let dir = self.dir.join(BLOBS);
        let mut seen = BTreeMap::new();
        let mut new_entry = false;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                // Removed by sled's blob collection since the listing: nothing to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match known.blobs.get(&name) {
                Some(&synced) if synced == len => {}
                previous => {
                    new_entry |= previous.is_none();
                    match File::open(entry.path()) {
                        Ok(f) => f.sync_all()?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            seen.insert(name, len);
        }
        if new_entry {
            sync_dir(&dir)?;
        }
        known.blobs = seen;
        Ok(())
    }
}

/// The names in `dir`.
fn entries(dir: &Path) -> io::Result<BTreeSet<OsString>> {
    std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// fsync of a directory: makes the creation, rename or removal of its entries durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io_error(e: io::Error) -> StoreError {
    crate::error::backend(sled::Error::Io(e))
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// Make sure a failed flush is reported to exactly the callers it concerns.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn concurrent_callers_share_flushes() {
        let flushes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&flushes);
        let gc = Arc::new(
            GroupCommit::start(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                Ok(())
            })
            .unwrap(),
        );
        rt().block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..200 {
                let gc = Arc::clone(&gc);
                tasks.push(tokio::spawn(async move { gc.sync().await }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        });
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..=20).contains(&n), "200 callers caused {n} flushes");
    }

    #[test]
    fn a_sync_waits_for_a_flush_that_starts_after_it() {
        let flushes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&flushes);
        let gc = GroupCommit::start(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        let rt = rt();
        rt.block_on(gc.sync()).unwrap();
        rt.block_on(gc.sync()).unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn failures_reach_waiters_and_full_is_kept() {
        let fail = Arc::new(AtomicU64::new(1));
        let f = Arc::clone(&fail);
        let gc = GroupCommit::start(move || {
            if f.load(Ordering::SeqCst) == 1 {
                Err(StoreError::Full(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "no space",
                )))
            } else {
                Ok(())
            }
        })
        .unwrap();
        let rt = rt();
        assert!(matches!(rt.block_on(gc.sync()), Err(StoreError::Full(_))));
        fail.store(0, Ordering::SeqCst);
        rt.block_on(gc.sync()).unwrap();
        gc.shutdown();
        assert!(matches!(rt.block_on(gc.sync()), Err(StoreError::Closed)));
    }

    #[test]
    fn works_from_a_current_thread_runtime() {
        let gc = GroupCommit::start(|| Ok(())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(gc.sync()).unwrap();
    }
}
