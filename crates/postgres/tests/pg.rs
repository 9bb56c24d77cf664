//! herald-postgres against a real PostgreSQL.
//!
//! The server comes from `HERALD_TEST_DATABASE_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`; `scripts/test` provisions one). Each test
//! creates its own database `herald_t_<random>` and drops it at the end. Without the variable
//! every test fails with a message saying how to set it: they never skip silently.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, ClusterState, DeliveryId, DeliveryStatus,
    DeliveryStore, EnqueueReceipt, ListQuery, NewEvent, Outcome, QueueCounts, RateLimitConfig,
    ReplayRequest, StoreError, StoreListener, SubscriberId, ThrottleConfig, UnixMillis,
};
use herald_postgres::{migrate, PgError, PgOptions, PgStore, SCHEMA_VERSION};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

use herald_postgres::testing::TestDb;

// ---------------------------------------------------------------------------------------------
// Helpers.

const T0: UnixMillis = UnixMillis(1_700_000_000_000);

fn sub(s: &str) -> SubscriberId {
    SubscriberId::new(s).unwrap()
}

fn event(subs: &[&SubscriberId], at: UnixMillis, payload: &str) -> NewEvent {
    NewEvent {
        event_type: "TEST_EVENT".into(),
        payload: Bytes::from(payload.to_owned()),
        subscribers: subs.iter().map(|s| (*s).clone()).collect(),
        idempotency_key: None,
        received_at: at,
        ordering_key: None,
        ordered_for: Vec::new(),
        traceparent: None,
    }
}

async fn enqueue_one(store: &PgStore, e: NewEvent) -> EnqueueReceipt {
    store.enqueue(vec![e]).await.unwrap().remove(0)
}

async fn claim(
    store: &PgStore,
    s: &SubscriberId,
    now: UnixMillis,
    lease_ms: u64,
    max: usize,
    cap: u32,
) -> Vec<ClaimedDelivery> {
    store
        .claim(ClaimRequest {
            subscriber: s,
            now,
            lease_until: UnixMillis(now.0 + lease_ms),
            max,
            cap,
        })
        .await
        .unwrap()
}

fn attempt(at: UnixMillis, code: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        attempt: 1,
        at,
        status_code: code,
        error: error.map(str::to_owned),
        duration_ms: 5,
    }
}

fn counts(pending: u64, in_flight: u64, delivered: u64, dead: u64) -> QueueCounts {
    QueueCounts {
        pending,
        in_flight,
        delivered,
        dead,
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------------------------------------
// Migrations.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_fresh_idempotent_and_refuse_a_newer_schema() {
    let db = TestDb::create().await;
    assert_eq!(migrate(&db.url).await.unwrap(), SCHEMA_VERSION);
    // Again: nothing to do, same version, one row per version.
    assert_eq!(migrate(&db.url).await.unwrap(), SCHEMA_VERSION);
    let c = db.client().await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM herald_schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(SCHEMA_VERSION));
    // connect applies (and accepts) the current schema.
    drop(db.store("a").await);

    c.execute(
        "INSERT INTO herald_schema_version (version) VALUES ($1)",
        &[&(SCHEMA_VERSION + 1)],
    )
    .await
    .unwrap();
    let err = migrate(&db.url).await.unwrap_err();
    assert!(
        matches!(err, PgError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    let err = PgStore::connect(db.options("a")).await.unwrap_err();
    assert!(matches!(err, PgError::SchemaTooNew { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Ingest.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_transactions() {
    let db = TestDb::create().await;
    let store = Arc::new(db.store("a").await);
    let a = sub("a");
    let before = store.enqueue_transactions();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            enqueue_one(&store, event(&[&a], T0, &format!("{{\"i\":{i}}}"))).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.deliveries.len(), 1);
        assert!(ids.insert(r.deliveries[0].id));
    }
    let txs = store.enqueue_transactions() - before;
    assert!(
        txs < 50,
        "200 concurrent enqueues took {txs} transactions: not group-committed"
    );
    assert_eq!(store.counts(&a).await.unwrap(), counts(200, 0, 0, 0));
}

/// The counts rows a subscriber's writes lock are per connection (migration 3): another
/// transaction holding the subscriber's other rows open (as a slow COMMIT does) blocks none of
/// this store's writes, and the summed counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_counts_rows_of_other_connections_block_no_write_and_the_sum_stays_exact() {
    let db = TestDb::create().await;
    // A pool of 2: every write of this store goes through one of two known connections.
    let store = Arc::new(
        PgStore::connect(PgOptions::new(&db.url).node_id("a").pool_size(2))
            .await
            .unwrap(),
    );
    let a = sub("a");
    // Both pool connections in use once (concurrent enqueues and a claim).
    let warm: Vec<_> = (0..8)
        .map(|i| {
            let (store, a) = (store.clone(), a.clone());
            tokio::spawn(
                async move { enqueue_one(&store, event(&[&a], T0, &format!("{i}"))).await },
            )
        })
        .collect();
    for t in warm {
        t.await.unwrap();
    }
    let first = claim(&store, &a, T0, 60_000, 2, 100).await;
    assert_eq!(first.len(), 2);

    // The shards of the store's connections (and of its LISTEN connection).
    let client = db.client().await;
    let store_shards: std::collections::HashSet<i32> = client
        .query(
            "SELECT pid % 16 FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'herald'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!store_shards.is_empty());
    // Another connection holds the rows of `a` of every other shard open (uncommitted).
    let holder = db.client().await;
    let taken: Vec<i16> = store_shards
        .iter()
        .map(|&s| i16::try_from(s).unwrap())
        .collect();
    holder.batch_execute("BEGIN").await.unwrap();
    let held = holder
        .execute(
            "INSERT INTO herald_counts AS c (subscriber, shard, pending)
             SELECT 'a', s, 0 FROM generate_series(0, 15) AS s WHERE s <> ALL($1::int2[])
             ON CONFLICT (subscriber, shard) DO UPDATE SET pending = c.pending",
            &[&taken],
        )
        .await
        .unwrap();
    assert_eq!(held, 16 - taken.len() as u64);

    // Every kind of write of `a` goes through meanwhile: ingest, claim, outcome, release.
    let writes = async {
        enqueue_one(&store, event(&[&a], T0, "during")).await;
        let claimed = claim(&store, &a, T0, 60_000, 3, 100).await;
        assert_eq!(claimed.len(), 3);
        let ok = attempt(T0, Some(204), None);
        store
            .finish_attempt(first[0].id, first[0].lease, ok.clone(), Outcome::Delivered)
            .await
            .unwrap();
        store
            .finish_attempt(claimed[0].id, claimed[0].lease, ok, Outcome::Dead)
            .await
            .unwrap();
        store
            .release(first[1].id, first[1].lease, T0)
            .await
            .unwrap();
    };
    tokio::time::timeout(Duration::from_secs(30), writes)
        .await
        .expect("a write of the subscriber waited on another connection's counts row");
    holder.batch_execute("COMMIT").await.unwrap();

    // 9 enqueued; 1 delivered, 1 dead, 2 in flight (claimed[1..]), 5 pending.
    let expected = counts(5, 2, 1, 1);
    assert_eq!(store.counts(&a).await.unwrap(), expected);
    let all = store.all_counts().await.unwrap();
    assert_eq!(all, vec![(a.clone(), expected)]);
    // The same as a scan of the deliveries.
    let scanned: Vec<(i16, i64)> = client
        .query(
            "SELECT status, count(*) FROM herald_deliveries WHERE subscriber = 'a'
             GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(scanned, vec![(0, 5), (1, 2), (2, 1), (3, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_return_the_first_receipt_within_a_batch_and_across_nodes() {
    let db = TestDb::create().await;
    let (n1, n2) = (db.store("n1").await, db.store("n2").await);
    let (a, b) = (sub("a"), sub("b"));
    let keyed = |subs: &[&SubscriberId], key: &str| {
        let mut e = event(subs, T0, "{}");
        e.idempotency_key = Some(key.into());
        e
    };
    let first = enqueue_one(&n1, keyed(&[&a, &b], "k1")).await;
    assert!(!first.duplicate);
    // Another node, same key: the first receipt, nothing created.
    let again = enqueue_one(&n2, keyed(&[&a], "k1")).await;
    assert!(again.duplicate);
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.deliveries, first.deliveries);
    // Within one batch: the first occurrence wins.
    let batch = n2
        .enqueue(vec![
            keyed(&[&a], "k2"),
            keyed(&[&b], "k2"),
            keyed(&[&a], "k1"),
            event(&[&a], T0, "{}"),
        ])
        .await
        .unwrap();
    assert!(!batch[0].duplicate);
    assert!(batch[1].duplicate);
    assert_eq!(
        batch[1],
        EnqueueReceipt {
            duplicate: true,
            ..batch[0].clone()
        }
    );
    assert!(batch[2].duplicate);
    assert_eq!(batch[2].event_id, first.event_id);
    assert!(!batch[3].duplicate);
    assert_eq!(n1.counts(&a).await.unwrap(), counts(3, 0, 0, 0));
    assert_eq!(n1.counts(&b).await.unwrap(), counts(1, 0, 0, 0));

    // Concurrent enqueues of one key on two nodes create it once.
    let mut tasks = Vec::new();
    for (i, store) in [Arc::new(n1), Arc::new(n2)].into_iter().enumerate() {
        for _ in 0..10 {
            let store = store.clone();
            let e = keyed(&[&a], "race");
            tasks.push(tokio::spawn(async move {
                let _ = i;
                enqueue_one(&store, e).await
            }));
        }
    }
    let mut events = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        events.insert(r.event_id);
        created += usize::from(!r.duplicate);
    }
    assert_eq!(events.len(), 1);
    assert_eq!(created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_synchronous_whatever_the_database_default() {
    let db = TestDb::create().await;
    // An operator (or a managed service) made asynchronous commit the database's default.
    db.client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            db.name
        ))
        .await
        .unwrap();
    let plain: String = db
        .client()
        .await
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, "off");
    // Herald's sessions commit synchronously all the same: 202 means durable.
    let store = db.store("n1").await;
    let client = store.pool().get().await.unwrap();
    let ours: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ours, "on");
    // And a transaction left idle (a frozen node) is ended by the server, freeing its locks.
    let idle: String = client
        .query_one("SHOW idle_in_transaction_session_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(idle, "10s");
}

// ---------------------------------------------------------------------------------------------
// Claims, the cluster-wide cap, fencing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_across_two_nodes() {
    let db = TestDb::create().await;
    let n1 = Arc::new(db.store("n1").await);
    let n2 = Arc::new(db.store("n2").await);
    let a = sub("a");
    let events: Vec<NewEvent> = (0..60).map(|_| event(&[&a], T0, "{}")).collect();
    n1.enqueue(events).await.unwrap();
    let now = UnixMillis::now();
    // Both nodes claim as fast as they can; the leases out never exceed the cap of 7.
    let mut tasks = Vec::new();
    for store in [n1.clone(), n2.clone(), n1.clone(), n2.clone()] {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                got.extend(claim(&store, &a, now, 60_000, 3, 7).await);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 7, "exactly the cap is leased across nodes");
    assert_eq!(n2.counts(&a).await.unwrap(), counts(53, 7, 0, 0));
    // Finishing one makes room for exactly one more.
    let c = &all[0];
    n2.finish_attempt(
        c.id,
        c.lease,
        attempt(now, Some(200), None),
        Outcome::Delivered,
    )
    .await
    .unwrap();
    assert_eq!(claim(&n1, &a, now, 60_000, 10, 7).await.len(), 1);
    assert!(claim(&n2, &a, now, 60_000, 10, 7).await.is_empty());
    // Expired leases do not count against the cap and are claimable again.
    let later = UnixMillis(now.0 + 61_000);
    let again = claim(&n2, &a, later, 1_000, 100, 100).await;
    assert_eq!(again.len(), 59, "52 pending + 7 expired leases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_cannot_overwrite_a_newer_outcome() {
    let db = TestDb::create().await;
    let (n1, n2) = (db.store("n1").await, db.store("n2").await);
    let a = sub("a");
    let id = enqueue_one(&n1, event(&[&a], T0, "{}")).await.deliveries[0].id;
    let first = claim(&n1, &a, T0, 100, 1, 10).await.remove(0);
    // n1's lease expires; n2 claims the delivery again with a new token.
    let second = claim(&n2, &a, UnixMillis(T0.0 + 200), 60_000, 1, 10)
        .await
        .remove(0);
    assert_eq!(second.id, id);
    assert_ne!(second.lease, first.lease);
    assert_eq!(second.attempt, 1);
    // While n2's attempt is under way, n1's late outcome is refused and changes nothing.
    let late = n1
        .finish_attempt(
            id,
            first.lease,
            attempt(T0, Some(500), Some("HTTP 500")),
            Outcome::Dead,
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost(x)) if x == id),
        "{late:?}"
    );
    let d = n2.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::InFlight);
    assert!(d.attempts.is_empty());
    n2.finish_attempt(
        id,
        second.lease,
        attempt(T0, Some(200), None),
        Outcome::Delivered,
    )
    .await
    .unwrap();
    // The stale holder's outcome and release are refused and change nothing.
    let stale = n1
        .finish_attempt(
            id,
            first.lease,
            attempt(T0, Some(500), Some("HTTP 500")),
            Outcome::Dead,
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost(x)) if x == id),
        "{stale:?}"
    );
    let stale = n1.release(id, first.lease, T0).await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");
    let d = n1.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Delivered);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status_code, Some(200));
    assert_eq!(n1.counts(&a).await.unwrap(), counts(0, 0, 1, 0));
    // The same lease twice: the second is refused.
    let twice = n2
        .finish_attempt(
            id,
            second.lease,
            attempt(T0, Some(200), None),
            Outcome::Delivered,
        )
        .await;
    assert!(matches!(twice, Err(StoreError::LeaseLost(_))), "{twice:?}");
    let unknown = DeliveryId::generate();
    let r = n2.release(unknown, second.lease, T0).await;
    assert!(
        matches!(r, Err(StoreError::NotFound(x)) if x == unknown),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_releases_its_previous_leases() {
    let db = TestDb::create().await;
    let a = sub("a");
    let other = db.store("other").await;
    let n1 = db.store("n1").await;
    let id = enqueue_one(&n1, event(&[&a], T0, "{}")).await.deliveries[0].id;
    let now = UnixMillis::now();
    let held = claim(&n1, &a, now, 3_600_000, 1, 10).await;
    assert_eq!(held.len(), 1);
    assert!(claim(&other, &a, now, 60_000, 1, 10).await.is_empty());
    drop(n1);
    // The same node id starts again: its old lease is given back at once, not after an hour.
    let n1 = db.store("n1").await;
    let again = claim(&other, &a, UnixMillis::now(), 60_000, 1, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, id);
    // Another node's restart does not touch them.
    drop(db.store("n2").await);
    assert!(claim(&n1, &a, UnixMillis::now(), 60_000, 1, 10)
        .await
        .is_empty());
    let old = held[0].lease;
    let r = n1
        .finish_attempt(id, old, attempt(now, Some(200), None), Outcome::Delivered)
        .await;
    assert!(matches!(r, Err(StoreError::LeaseLost(_))), "{r:?}");
    assert_eq!(n1.counts(&a).await.unwrap(), counts(0, 1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_retry_dead_redrive_replay_and_ordering() {
    let db = TestDb::create().await;
    let store = db.store("n1").await;
    let a = sub("a");
    // Due order; the payload comes back byte for byte.
    let late = enqueue_one(&store, event(&[&a], UnixMillis(T0.0 + 100), "late")).await;
    let early = enqueue_one(&store, event(&[&a], T0, "\u{0}early")).await;
    assert_eq!(store.next_due(&a).await.unwrap(), Some(T0));
    let c = claim(&store, &a, UnixMillis(T0.0 + 100), 60_000, 10, 10).await;
    assert_eq!(
        c.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![early.deliveries[0].id, late.deliveries[0].id]
    );
    assert_eq!(&c[0].payload[..], b"\0early");
    // Retry later, then dead.
    let retry_at = UnixMillis(T0.0 + 5_000);
    store
        .finish_attempt(
            c[0].id,
            c[0].lease,
            attempt(T0, Some(503), Some("HTTP 503")),
            Outcome::RetryAt(retry_at),
        )
        .await
        .unwrap();
    let d = store.get(c[0].id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.next_attempt_at, Some(retry_at));
    assert_eq!(d.record.last_error.as_deref(), Some("HTTP 503"));
    let again = claim(&store, &a, retry_at, 60_000, 10, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    store
        .finish_attempt(
            again[0].id,
            again[0].lease,
            attempt(retry_at, None, Some("timeout")),
            Outcome::Dead,
        )
        .await
        .unwrap();
    store
        .release(c[1].id, c[1].lease, UnixMillis(T0.0 + 700))
        .await
        .unwrap();
    assert_eq!(store.counts(&a).await.unwrap(), counts(1, 0, 0, 1));
    // Retry the dead one; retrying a pending one is refused.
    let rec = store.retry_dead(c[0].id, retry_at).await.unwrap();
    assert_eq!(rec.status, DeliveryStatus::Pending);
    assert_eq!(rec.attempts, 2);
    assert!(matches!(
        store.retry_dead(c[0].id, retry_at).await,
        Err(StoreError::InvalidState {
            actual: DeliveryStatus::Pending,
            ..
        })
    ));
    let both = claim(&store, &a, retry_at, 60_000, 10, 10).await;
    assert_eq!(both.len(), 2);
    for c in &both {
        store
            .finish_attempt(
                c.id,
                c.lease,
                attempt(retry_at, Some(500), None),
                Outcome::Dead,
            )
            .await
            .unwrap();
    }
    assert_eq!(store.redrive(&a, retry_at).await.unwrap(), 2);
    assert_eq!(store.counts(&a).await.unwrap(), counts(2, 0, 0, 0));
    let both = claim(&store, &a, retry_at, 60_000, 10, 10).await;
    for c in &both {
        store
            .finish_attempt(
                c.id,
                c.lease,
                attempt(retry_at, Some(200), None),
                Outcome::Delivered,
            )
            .await
            .unwrap();
    }
    // Replay of the delivered ones: a dry run counts, the real one gives a fresh budget.
    let mut req = ReplayRequest {
        subscriber: a.clone(),
        since: T0,
        until: None,
        statuses: vec![DeliveryStatus::Delivered],
        event_types: vec!["TEST_EVENT".into()],
        dry_run: true,
        now: UnixMillis(T0.0 + 9_000),
    };
    let r = store.replay(&req).await.unwrap();
    assert_eq!((r.matched, r.replayed), (2, 0));
    req.dry_run = false;
    let r = store.replay(&req).await.unwrap();
    assert_eq!((r.matched, r.replayed), (2, 2));
    let replayed = claim(&store, &a, req.now, 60_000, 10, 10).await;
    assert_eq!(replayed.len(), 2);
    assert!(replayed.iter().all(|c| c.budget.since == req.now));
    assert!(replayed
        .iter()
        .all(|c| c.budget.attempt_in_budget(c.attempt) == 1));

    // Ordering per key: one at a time, in acceptance order; other keys in parallel.
    let o = sub("o");
    let ordered = |key: &str| {
        let mut e = event(&[&o], T0, key);
        e.ordering_key = Some(key.into());
        e.ordered_for = vec![o.clone()];
        e
    };
    let k1a = enqueue_one(&store, ordered("k1")).await.deliveries[0].id;
    let k1b = enqueue_one(&store, ordered("k1")).await.deliveries[0].id;
    let k2 = enqueue_one(&store, ordered("k2")).await.deliveries[0].id;
    let first = claim(&store, &o, T0, 60_000, 10, 10).await;
    assert_eq!(
        first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![k1a, k2]
    );
    assert_eq!(first[0].ordering_key.as_deref(), Some("k1"));
    assert!(claim(&store, &o, T0, 60_000, 10, 10).await.is_empty());
    store
        .finish_attempt(
            k1a,
            first[0].lease,
            attempt(T0, Some(200), None),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    let next = claim(&store, &o, T0, 60_000, 10, 10).await;
    assert_eq!(next.iter().map(|c| c.id).collect::<Vec<_>>(), vec![k1b]);

    // list: id order, filters, pagination.
    let page = store
        .list(&ListQuery {
            subscriber: Some(o.clone()),
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.deliveries.len(), 2);
    assert_eq!(page.deliveries[0].record.id, k1a);
    assert_eq!(page.deliveries[0].attempts.len(), 1);
    let rest = store
        .list(&ListQuery {
            subscriber: Some(o.clone()),
            limit: 2,
            cursor: page.next_cursor,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(rest.next_cursor, None);
    let ev = store.get_event(early.event_id).await.unwrap().unwrap();
    assert_eq!(&ev.payload[..], b"\0early");
    assert_eq!(ev.deliveries.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Notifications across nodes.

#[derive(Default)]
struct Recorder {
    work: Mutex<Vec<String>>,
    changed: Mutex<Vec<String>>,
}

impl StoreListener for Recorder {
    fn work_available(&self, s: &SubscriberId) {
        self.work.lock().push(s.to_string());
    }
    fn subscriber_changed(&self, s: &SubscriberId) {
        self.changed.lock().push(s.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_changes_wake_this_node() {
    let db = TestDb::create().await;
    let (n1, n2) = (db.store("n1").await, db.store("n2").await);
    let rec = Arc::new(Recorder::default());
    n2.set_listener(rec.clone());
    // Let n2's LISTEN connection settle, then forget what it announced on connecting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rec.work.lock().clear();
    rec.changed.lock().clear();
    let a = sub("notified");
    // Future work, so the 1 s poll cannot be what tells n2.
    enqueue_one(&n1, event(&[&a], UnixMillis(u64::MAX / 4), "{}")).await;
    wait_for("work_available on the other node", || {
        rec.work.lock().iter().any(|s| s == "notified")
    })
    .await;
    n1.set_paused(&a, Some("maintenance")).await.unwrap();
    wait_for("subscriber_changed on the other node", || {
        rec.changed.lock().iter().any(|s| s == "notified")
    })
    .await;
    assert_eq!(
        n2.paused().await.unwrap(),
        vec![(a.clone(), "maintenance".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------------
// Cluster state: nodes, rate tokens, the throttle.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_rate_tokens_and_the_throttle_are_shared() {
    let db = TestDb::create().await;
    let (n1, n2) = (db.store("n1").await, db.store("n2").await);
    n1.heartbeat(3).await.unwrap();
    let nodes = n2.nodes(UnixMillis::now()).await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        vec!["n1", "n2"]
    );
    assert_eq!(nodes[0].in_flight, 3);
    let far = UnixMillis(UnixMillis::now().0 + 60_000);
    assert!(n2.nodes(far).await.unwrap().is_empty(), "not seen for 30 s");

    // A bucket of 5, refilled at 10/s, shared by both nodes.
    let a = sub("a");
    let limit = RateLimitConfig {
        per_second: 10.try_into().unwrap(),
        burst: 5.try_into().unwrap(),
    };
    assert_eq!(n1.take_rate_tokens(&a, limit, 3, T0).await.unwrap(), 3);
    assert_eq!(n2.take_rate_tokens(&a, limit, 3, T0).await.unwrap(), 2);
    assert_eq!(n1.take_rate_tokens(&a, limit, 3, T0).await.unwrap(), 0);
    // 250 ms later: 2.5 tokens came back; 2 are taken, the half stays.
    let t = UnixMillis(T0.0 + 250);
    assert_eq!(n2.take_rate_tokens(&a, limit, 10, t).await.unwrap(), 2);
    let t = UnixMillis(T0.0 + 300);
    assert_eq!(n1.take_rate_tokens(&a, limit, 10, t).await.unwrap(), 1);
    // Never more than the burst, however long it rested.
    let t = UnixMillis(T0.0 + 3_600_000);
    assert_eq!(n1.take_rate_tokens(&a, limit, 100, t).await.unwrap(), 5);
    // Over 10 s of steady demand from two nodes, the cluster gets rate × 10 s + burst.
    let mut taken = 0;
    for step in 1..=100u64 {
        let now = UnixMillis(t.0 + step * 100);
        taken += n1.take_rate_tokens(&a, limit, 2, now).await.unwrap();
        taken += n2.take_rate_tokens(&a, limit, 2, now).await.unwrap();
    }
    assert_eq!(taken, 100);

    // The throttle: failures from both nodes cut the one limit; both see it.
    let config = ThrottleConfig {
        error_rate: 0.5,
        window: Duration::from_secs(10),
        min_requests: 10,
    };
    let s = n1
        .record_outcomes(&a, &config, 100, 0, 6, T0)
        .await
        .unwrap();
    assert_eq!(
        s.limit, 100,
        "too few attempts to judge; no change within a step"
    );
    let s = n2
        .record_outcomes(&a, &config, 100, 0, 6, UnixMillis(T0.0 + 1_000))
        .await
        .unwrap();
    assert_eq!(s.limit, 50, "12 failures of 12 across nodes: halved");
    assert!((s.error_rate - 1.0).abs() < 1e-9);
    let s = n1
        .record_outcomes(&a, &config, 100, 0, 1, UnixMillis(T0.0 + 1_500))
        .await
        .unwrap();
    assert_eq!(s.limit, 50, "at most one change per step (1 s)");
    let s = n1
        .record_outcomes(&a, &config, 100, 0, 1, UnixMillis(T0.0 + 2_000))
        .await
        .unwrap();
    assert_eq!(s.limit, 25);
    // Healed: once the failures age out of the window, it grows by max/10 per step.
    let s = n2
        .record_outcomes(&a, &config, 100, 20, 0, UnixMillis(T0.0 + 13_000))
        .await
        .unwrap();
    assert_eq!(s.limit, 35);
    let s = n1
        .record_outcomes(&a, &config, 100, 1, 0, UnixMillis(T0.0 + 14_000))
        .await
        .unwrap();
    assert_eq!(s.limit, 45);
}

// ---------------------------------------------------------------------------------------------
// Purge.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_runs_on_one_node_at_a_time() {
    let db = TestDb::create().await;
    let store = db.store("n1").await;
    let a = sub("a");
    let mut keyed = event(&[&a], T0, "{}");
    keyed.idempotency_key = Some("k".into());
    let done = enqueue_one(&store, keyed).await.deliveries[0].id;
    let nobody = enqueue_one(&store, event(&[], T0, "{}")).await;
    let pending = enqueue_one(&store, event(&[&a], T0, "{}")).await.deliveries[0].id;
    let c = claim(&store, &a, T0, 60_000, 1, 10).await.remove(0);
    assert_eq!(c.id, done);
    store
        .finish_attempt(
            done,
            c.lease,
            attempt(T0, Some(200), None),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    // Another node holds the purge lock: this one does nothing.
    let (mut holder, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&0x6865_7261_6c64_2d70_i64],
    )
    .await
    .unwrap();
    let cutoff = UnixMillis(T0.0 + 1_000);
    assert_eq!(
        store.purge(cutoff).await.unwrap(),
        herald_core::PurgeStats::default()
    );
    assert!(store.get(done).await.unwrap().is_some());
    tx.rollback().await.unwrap();
    // Free: finished deliveries, their events, events for nobody and old keys go.
    let stats = store.purge(cutoff).await.unwrap();
    assert_eq!(
        (stats.deliveries, stats.events, stats.idempotency_keys),
        (1, 2, 1)
    );
    assert!(store.get(done).await.unwrap().is_none());
    assert!(store.get_event(nobody.event_id).await.unwrap().is_none());
    assert_eq!(
        store.get(pending).await.unwrap().unwrap().record.status,
        DeliveryStatus::Pending
    );
    assert_eq!(store.counts(&a).await.unwrap(), counts(1, 0, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// The database unreachable: at start, and while running.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_start_names_the_host_never_the_password() {
    // Nothing listens on port 1.
    let url = "postgres://herald:sekrit-pw-42@127.0.0.1:1/herald";
    let options = PgOptions::new(url).node_id("n1");
    assert!(!format!("{options:?}").contains("sekrit-pw-42"));
    let err = PgStore::connect(options).await.unwrap_err();
    let (shown, debug) = (err.to_string(), format!("{err:?}"));
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
    assert!(matches!(err, PgError::Unreachable { .. }), "{debug}");
    for text in [&shown, &debug] {
        assert!(!text.contains("sekrit-pw-42"), "{text}");
    }
    let err = migrate(url).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("sekrit-pw-42"));
    // A URL that does not parse is not repeated either.
    let err = migrate("postgres://u:sekrit-pw-42@[bad").await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("sekrit-pw-42"), "{err}");

    // A connected store's Debug shows where, not the password.
    let db = TestDb::create().await;
    let with_pw = db.url.replacen(
        "postgres://postgres@",
        "postgres://postgres:sekrit-pw-42@",
        1,
    );
    assert_ne!(with_pw, db.url, "the test URL has the expected form");
    let store = PgStore::connect(PgOptions::new(&with_pw).node_id("n1"))
        .await
        .unwrap();
    let shown = format!("{store:?}");
    assert!(
        shown.contains(&db.name) && !shown.contains("sekrit-pw-42"),
        "{shown}"
    );
}

/// A TCP proxy to the database that the test can cut (every connection dropped, new ones
/// closed at once) and restore.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicUsize::new(0));
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let (c, g) = (c.clone(), g.clone());
                let born = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                                if c.load(Ordering::SeqCst) || g.load(Ordering::SeqCst) != born {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_lost_while_running_then_back() {
    let db = TestDb::create().await;
    // The proxy forwards to the test server's host and port.
    let cfg: tokio_postgres::Config = db.url.parse().unwrap();
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("the test database must be reached over TCP"),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let proxy = Proxy::start(format!("{host}:{port}")).await;
    let via_proxy = db.url.replacen(
        &format!("{host}:{port}"),
        &format!("127.0.0.1:{}", proxy.port),
        1,
    );
    assert_ne!(via_proxy, db.url);
    let mut options = PgOptions::new(&via_proxy).node_id("n1").pool_size(4);
    options.connect_timeout = Duration::from_millis(500);
    let store = PgStore::connect(options).await.unwrap();
    let direct = db.store("observer").await;
    let a = sub("a");
    let ids: Vec<_> = store
        .enqueue((0..3).map(|_| event(&[&a], T0, "{}")).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.deliveries[0].id)
        .collect();
    let leased = claim(&store, &a, UnixMillis::now(), 600_000, 3, 10).await;
    assert_eq!(leased.len(), 3);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Ingest and reads answer Unavailable (the API's 503 storage_unavailable).
    let r = store.enqueue(vec![event(&[&a], T0, "{}")]).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let r = store.counts(&a).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    // Outcomes are acknowledged and kept.
    for c in &leased[..2] {
        store
            .finish_attempt(
                c.id,
                c.lease,
                attempt(T0, Some(200), None),
                Outcome::Delivered,
            )
            .await
            .unwrap();
    }
    store
        .release(leased[2].id, leased[2].lease, T0)
        .await
        .unwrap();
    assert_eq!(store.outcomes_buffered(), 3);
    assert_eq!(direct.counts(&a).await.unwrap(), counts(0, 3, 0, 0));

    // Back: the kept outcomes are written without a restart, and ingest works again.
    proxy.restore();
    wait_for("the buffered outcomes to be written", || {
        store.outcomes_buffered() == 0
    })
    .await;
    assert_eq!(direct.counts(&a).await.unwrap(), counts(1, 0, 2, 0));
    for id in &ids[..2] {
        assert_eq!(
            direct.get(*id).await.unwrap().unwrap().record.status,
            DeliveryStatus::Delivered
        );
    }
    let mut ok = false;
    for _ in 0..50 {
        if store.enqueue(vec![event(&[&a], T0, "{}")]).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "ingest works again once the database is back");
    assert_eq!(direct.counts(&a).await.unwrap(), counts(2, 0, 2, 0));
}

// ---------------------------------------------------------------------------------------------
// Vacuum.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_autovacuum_off_a_node_vacuums_the_deliveries_table_itself() {
    let db = TestDb::create().await;
    let store = db.store("a").await;
    let client = db.client().await;
    // Autovacuum off for the table (as on a server running with autovacuum = off): nothing
    // but Herald vacuums it now.
    client
        .batch_execute("ALTER TABLE herald_deliveries SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let s = sub("s");
    let events = (0..2_000)
        .map(|i| event(&[&s], T0, &format!("{{\"n\":{i}}}")))
        .collect();
    store.enqueue(events).await.unwrap();
    // Two rewrites of every row: 4,000 dead row versions beside 2,000 live ones.
    for _ in 0..2 {
        client
            .batch_execute("UPDATE herald_deliveries SET updated_at = updated_at + 1")
            .await
            .unwrap();
    }
    let vacuums = || async {
        client
            .query_one(
                "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables
                 WHERE relname = 'herald_deliveries'",
                &[],
            )
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (count, dead) = vacuums().await;
        if count > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "herald_deliveries was not vacuumed within 30 s ({dead} dead rows)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The queue is untouched.
    assert_eq!(store.counts(&s).await.unwrap(), counts(2_000, 0, 0, 0));
}
