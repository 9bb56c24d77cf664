//! Reopen and recovery: what survives a restart, and how damage is reported.

use std::path::Path;
use std::time::Duration;

use herald_core::{
    AttemptRecord, DeliveryId, DeliveryStatus, ListQuery, Outcome, QueueCounts, StoreError,
    UnixMillis,
};
use herald_queue::{QueueError, SledStore};

use super::support::{block_on, event, open, options, raw_tree, sub};

fn attempt(at: u64, code: u16) -> AttemptRecord {
    AttemptRecord {
        attempt: 1,
        at: UnixMillis(at),
        status_code: Some(code),
        error: (code >= 300).then(|| format!("HTTP {code}")),
        duration_ms: 5,
    }
}

fn delivery_key(id: DeliveryId) -> Vec<u8> {
    let mut k = vec![b'd'];
    k.extend_from_slice(&id.to_bytes());
    k
}

#[test]
fn in_flight_deliveries_are_pending_again_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = sub("a");
    let ids: Vec<DeliveryId> = {
        let store = open(dir.path());
        let r = store
            .enqueue(vec![
                event(&[&a], 100, b"1"),
                event(&[&a], 200, b"2"),
                event(&[&a], 300, b"3"),
            ])
            .unwrap();
        let claimed = store
            .claim(&a, UnixMillis(250), UnixMillis(9_999), 10)
            .unwrap();
        assert_eq!(claimed.len(), 2);
        block_on(store.sync()).unwrap();
        r.iter().map(|r| r.deliveries[0].id).collect()
    };
    let store = open(dir.path());
    let report = store.open_report();
    assert_eq!(report.deliveries, 3);
    assert_eq!(report.corrupt_records, 0);
    assert_eq!(
        store.counts(&a),
        QueueCounts {
            pending: 3,
            ..QueueCounts::default()
        }
    );
    // Back at the due time they had when claimed: order is kept, and the attempt is repeated
    // with the same number.
    let again = store
        .claim(&a, UnixMillis(1_000), UnixMillis(9_999), 10)
        .unwrap();
    assert_eq!(again.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    assert!(again.iter().all(|c| c.attempt == 1));
    assert_eq!(&again[1].payload[..], b"2");
}

#[test]
fn every_kind_of_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (sub("a"), sub("b"));
    let (delivered, dead, retried, keyed_event) = {
        let store = open(dir.path());
        let mut keyed = event(&[&b], 50, b"{}");
        keyed.idempotency_key = Some("key-1".into());
        let keyed_event = store.enqueue(vec![keyed]).unwrap()[0].event_id;
        let r = store
            .enqueue(vec![
                event(&[&a], 10, b"d"),
                event(&[&a], 20, b"z"),
                event(&[&a], 30, b"r"),
            ])
            .unwrap();
        let ids: Vec<DeliveryId> = r.iter().map(|r| r.deliveries[0].id).collect();
        assert_eq!(
            store
                .claim(&a, UnixMillis(100), UnixMillis(999), 3)
                .unwrap()
                .len(),
            3
        );
        store
            .finish_attempt(ids[0], attempt(100, 200), Outcome::Delivered)
            .unwrap();
        store
            .finish_attempt(ids[1], attempt(100, 500), Outcome::Dead)
            .unwrap();
        store
            .finish_attempt(
                ids[2],
                attempt(100, 503),
                Outcome::RetryAt(UnixMillis(5_000)),
            )
            .unwrap();
        store.set_paused(&b, Some("maintenance")).unwrap();
        block_on(store.sync()).unwrap();
        (ids[0], ids[1], ids[2], keyed_event)
    };

    let store = open(dir.path());
    let get = |id| store.get(id).unwrap().unwrap();
    assert_eq!(get(delivered).record.status, DeliveryStatus::Delivered);
    let z = get(dead);
    assert_eq!(z.record.status, DeliveryStatus::Dead);
    assert_eq!(z.record.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(z.attempts.len(), 1);
    let r = get(retried);
    assert_eq!(r.record.status, DeliveryStatus::Pending);
    assert_eq!(r.record.next_attempt_at, Some(UnixMillis(5_000)));
    assert_eq!(store.next_due(&a).unwrap(), Some(UnixMillis(5_000)));
    assert_eq!(
        store.counts(&a),
        QueueCounts {
            pending: 1,
            in_flight: 0,
            delivered: 1,
            dead: 1
        }
    );
    assert_eq!(
        store.paused().unwrap(),
        vec![(b.clone(), "maintenance".to_owned())]
    );
    let mut again = event(&[&b], 60, b"other");
    again.idempotency_key = Some("key-1".into());
    let receipt = store.enqueue(vec![again]).unwrap();
    assert!(receipt[0].duplicate);
    assert_eq!(receipt[0].event_id, keyed_event);
    // The dead index survived too.
    assert_eq!(store.redrive(&a, UnixMillis(6_000)).unwrap(), 1);
}

#[test]
fn a_locked_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _held = open(dir.path());
    let err = SledStore::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, QueueError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
}

#[test]
fn the_directory_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let store = open(dir.path());
        store.enqueue(vec![event(&[&sub("a")], 1, b"x")]).unwrap();
    }
    assert_eq!(
        open(dir.path()).counts(&sub("a")).pending,
        3,
        "drop flushes"
    );
}

#[test]
fn corrupt_records_are_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let a = sub("a");
    let (bad, good) = {
        let store = open(dir.path());
        let r = store
            .enqueue(vec![event(&[&a], 1, b"bad"), event(&[&a], 2, b"good")])
            .unwrap();
        (r[0].deliveries[0].id, r[1].deliveries[0].id)
    };
    {
        let (_db, tree) = raw_tree(dir.path());
        tree.insert(delivery_key(bad), &b"\x01\xff\xff\xff garbage"[..])
            .unwrap();
        tree.flush().unwrap();
    }
    for _ in 0..2 {
        let store = open(dir.path());
        let report = store.open_report();
        assert_eq!(
            report.corrupt_records, 1,
            "reported at every open: kept, not dropped"
        );
        assert_eq!(report.deliveries, 1);
        match store.get(bad) {
            Err(StoreError::Corrupt { key, reason }) => {
                assert!(key.starts_with("d/"), "{key}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(store.counts(&a).pending, 1);
        let page = store.list(&ListQuery::default()).unwrap();
        assert_eq!(
            page.deliveries
                .iter()
                .map(|d| d.record.id)
                .collect::<Vec<_>>(),
            vec![good]
        );
        assert!(store.corrupt_records() >= 2, "the list met it too");
        let claimed = store.claim(&a, UnixMillis(10), UnixMillis(99), 10).unwrap();
        assert_eq!(claimed.len(), 1);
        store.release(good, UnixMillis(2)).unwrap();
    }
}

#[test]
fn an_unreadable_payload_dead_letters_its_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let a = sub("a");
    let (id, event_id) = {
        let store = open(dir.path());
        let r = store.enqueue(vec![event(&[&a], 1, b"p")]).unwrap();
        (r[0].deliveries[0].id, r[0].event_id)
    };
    {
        let (_db, tree) = raw_tree(dir.path());
        let mut k = vec![b'e'];
        k.extend_from_slice(&event_id.to_bytes());
        tree.insert(k, &b"\x07nonsense"[..]).unwrap();
        tree.flush().unwrap();
    }
    let store = open(dir.path());
    assert!(store
        .claim(&a, UnixMillis(10), UnixMillis(99), 10)
        .unwrap()
        .is_empty());
    let d = store.get(id).unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Dead);
    assert!(
        d.record
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("payload"),
        "{:?}",
        d.record.last_error
    );
    assert_eq!(store.counts(&a).dead, 1);
    assert!(store.corrupt_records() >= 1);
}

#[test]
fn deliveries_without_their_event_are_removed_at_open() {
    // What an enqueue interrupted between its delivery records and its event record leaves.
    let dir = tempfile::tempdir().unwrap();
    let a = sub("a");
    let (orphan, kept) = {
        let store = open(dir.path());
        let r = store
            .enqueue(vec![event(&[&a], 1, b"o"), event(&[&a], 2, b"k")])
            .unwrap();
        (r[0].clone(), r[1].deliveries[0].id)
    };
    {
        let (_db, tree) = raw_tree(dir.path());
        let mut k = vec![b'e'];
        k.extend_from_slice(&orphan.event_id.to_bytes());
        tree.remove(k).unwrap();
        tree.flush().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.open_report().orphans_removed, 1);
    assert!(store.get(orphan.deliveries[0].id).unwrap().is_none());
    assert_eq!(store.counts(&a).pending, 1);
    assert!(store.get(kept).unwrap().is_some());
}

#[test]
fn an_unknown_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let (_db, tree) = raw_tree(dir.path());
        tree.insert(b"mformat", &[9u8][..]).unwrap();
        tree.flush().unwrap();
    }
    let err = SledStore::open(dir.path(), options()).unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::UnsupportedFormat {
                found: 9,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn open_then_recover_a_large_store_is_reasonably_fast() {
    let dir = tempfile::tempdir().unwrap();
    let a = sub("a");
    {
        let store = open(dir.path());
        for chunk in 0..20 {
            let events = (0..1000)
                .map(|i| event(&[&a], chunk * 1000 + i, b"{}"))
                .collect();
            store.enqueue(events).unwrap();
        }
        assert_eq!(
            store
                .claim(&a, UnixMillis(u64::MAX), UnixMillis(1), 500)
                .unwrap()
                .len(),
            500
        );
    }
    let start = std::time::Instant::now();
    let store = open(dir.path());
    let took = start.elapsed();
    assert_eq!(store.open_report().deliveries, 20_000);
    assert_eq!(
        store.counts(&a).pending,
        20_000,
        "the 500 leased are pending again"
    );
    assert!(took < Duration::from_secs(10), "open took {took:?}");
}

/// `/dev/full` accepts an open and fails every write with ENOSPC: a store whose log file is
/// `/dev/full` is a disk that is full from the first byte.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_fails_sync_with_full_and_acknowledges_nothing() {
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full here; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("db")).unwrap();
    let store = open(dir.path());
    let a = sub("a");
    // The write lands in memory; the enqueue's barrier meets the disk: nothing acknowledged.
    match store.enqueue(vec![event(&[&a], 1, b"x")]) {
        Err(StoreError::Full(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
        other => panic!("expected StoreError::Full from the enqueue, got {other:?}"),
    }
    match block_on(store.sync()) {
        Err(StoreError::Full(e)) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull),
        other => panic!("expected StoreError::Full, got {other:?}"),
    }
    // And it stays failed: later syncs do not pretend success.
    assert!(matches!(block_on(store.sync()), Err(StoreError::Full(_))));
}
