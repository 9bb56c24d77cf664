//! The dispatcher follows the store: pauses written to the store by someone else (another
//! node) reach the pump through the listener, leases held elsewhere count against the cap,
//! and a replay through the dispatcher sends finished deliveries again.

use std::time::Duration;

use herald_core::{ClaimRequest, DeliveryStatus, ReplayRequest, UnixMillis};

use crate::harness::{eventually, ready, serial, sid, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_written_to_the_store_by_another_node_stops_and_resumes_the_pump() {
    let rx = Receiver::start(Mode::status(200)).await;
    let h = Harness::start(vec![subscriber("remote", &rx)]).await;
    // Not through the dispatcher: as another node sharing the store would.
    h.store
        .set_paused(&sid("remote"), Some("from node B"))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(2),
        "the pause to reach the pump",
        || {
            ready(h.dispatcher.stats_of("remote"))
                .unwrap()
                .paused_reason
                .as_deref()
                == Some("from node B")
        },
    )
    .await;
    h.enqueue("remote", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0, "a paused subscriber claims nothing");
    assert_eq!(h.counts("remote").pending, 3);

    h.store.set_paused(&sid("remote"), None).await.unwrap();
    h.wait_delivered("remote", 3, Duration::from_secs(5)).await;
    assert_eq!(rx.count(), 3);
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_held_elsewhere_count_against_max_in_flight() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::ok_after(Duration::from_millis(100))).await;
    let mut cfg = subscriber("shared", &rx);
    cfg.max_in_flight = 4;
    let h = Harness::start(vec![cfg]).await;
    h.dispatcher.pause("shared", "setting up").await.unwrap();
    h.enqueue("shared", 20).await;
    // "Another node" leases 3 of them for a minute.
    let now = UnixMillis::now();
    let held = h
        .store
        .claim(ClaimRequest {
            subscriber: &sid("shared"),
            now,
            lease_until: now.plus(Duration::from_secs(60)),
            max: 3,
            cap: 4,
        })
        .await
        .unwrap();
    assert_eq!(held.len(), 3);
    h.dispatcher.resume("shared").await.unwrap();
    eventually(Duration::from_secs(10), "17 delivered here", || {
        h.counts("shared").delivered == 17
    })
    .await;
    assert_eq!(
        rx.max_concurrent(),
        1,
        "4 in flight across the cluster: 3 held elsewhere leave 1 here"
    );
    assert_eq!(h.counts("shared").in_flight, 3);
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_through_the_dispatcher_sends_delivered_events_again() {
    let rx = Receiver::start(Mode::status(200)).await;
    let h = Harness::start(vec![subscriber("again", &rx)]).await;
    let ids = h.enqueue("again", 2).await;
    h.wait_delivered("again", 2, Duration::from_secs(5)).await;
    let result = h
        .dispatcher
        .replay(&ReplayRequest {
            subscriber: sid("again"),
            since: UnixMillis(0),
            until: None,
            statuses: vec![DeliveryStatus::Delivered],
            event_types: Vec::new(),
            dry_run: false,
            now: UnixMillis::now(),
        })
        .await
        .unwrap();
    assert_eq!((result.matched, result.replayed), (2, 2));
    rx.wait_for_count(4, Duration::from_secs(5)).await;
    h.wait_delivered("again", 2, Duration::from_secs(5)).await;
    let mut sent: Vec<String> = rx.requests().iter().map(|r| r.webhook_id()).collect();
    sent.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .flat_map(|id| [id.to_string(), id.to_string()])
        .collect();
    expected.sort();
    assert_eq!(sent, expected, "the same delivery ids, each sent twice");
    let d = h.store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(d.attempts.len(), 2, "history kept across the replay");
    h.dispatcher.shutdown(Duration::from_secs(1)).await;
}
