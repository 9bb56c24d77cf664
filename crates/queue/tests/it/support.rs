//! Shared helpers.

use std::path::Path;

use herald_core::{NewEvent, SubscriberId, UnixMillis};
use herald_queue::{SledOptions, SledStore};

/// Small cache and no background flush: tests decide when to flush.
pub(crate) fn options() -> SledOptions {
    SledOptions {
        cache_capacity_bytes: 8 * 1024 * 1024,
        flush_every_ms: None,
    }
}

pub(crate) fn open(path: &Path) -> SledStore {
    SledStore::open(path, options()).unwrap()
}

pub(crate) fn sub(s: &str) -> SubscriberId {
    SubscriberId::new(s).unwrap()
}

pub(crate) fn event(subs: &[&SubscriberId], at: u64, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_type: "T".into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        subscribers: subs.iter().map(|s| (*s).clone()).collect(),
        idempotency_key: None,
        received_at: UnixMillis(at),
    }
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Opens the raw sled tree of a closed store (to damage it on purpose). sled's background
/// thread may hold the directory lock for a moment after the store is dropped, so a lock error
/// is retried for up to 5 s (as `SledStore::open` itself does).
pub(crate) fn raw_tree(path: &Path) -> (sled::Db, sled::Tree) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let db = loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("opening the raw tree: {e}"),
        }
    };
    let tree = db.open_tree("herald").unwrap();
    (db, tree)
}
