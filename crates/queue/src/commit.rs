//! Group commit: many concurrent [`sync`](GroupCommit::sync) callers share one fsync.
//!
//! A dedicated thread owns the flushing. Flushes are numbered (generations). A caller whose
//! writes are already applied in memory asks for generation `started + 1`: the next flush to
//! *start*, which by construction begins after the caller's writes and therefore covers them.
//! While one flush runs, every caller that arrives asks for the next one, so N concurrent
//! callers cost about two fsyncs, not N. Completion is published on a `tokio::sync::watch`
//! channel, which wakes tasks of any runtime (or none: the thread needs no runtime).

use std::io;
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
