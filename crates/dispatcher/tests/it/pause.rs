//! Pause holds deliveries in the store, survives a dispatcher restart, and resume releases them.

use std::time::Duration;

use herald_dispatcher::Dispatcher;

use crate::harness::{client, enqueue, serial, subscriber, Harness};
use crate::receiver::{Mode, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_survives_restart_and_resume_delivers() {
    let _serial = serial().await;
    let rx = Receiver::start(Mode::status(204)).await;
    let cfg = subscriber("paused", &rx);
    let h = Harness::start(vec![cfg.clone()]).await;

    h.dispatcher.pause("paused", "maintenance").await.unwrap();
    h.enqueue("paused", 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 0, "a paused subscriber receives nothing");
    let c = h.counts("paused");
    assert_eq!((c.pending, c.in_flight, c.delivered), (20, 0, 0));
    let stats = h.dispatcher.stats_of("paused").await.unwrap();
    assert_eq!(stats.paused_reason.as_deref(), Some("maintenance"));

    // Restart on the same store: the pause is restored from `store.paused()`.
    assert!(h.dispatcher.shutdown(Duration::from_secs(1)).await.drained);
    let restarted = Dispatcher::start(h.store.clone(), client(), vec![cfg])
        .await
        .unwrap();
    let stats = restarted.stats_of("paused").await.unwrap();
    assert_eq!(stats.paused_reason.as_deref(), Some("maintenance"));
    enqueue(&h.store, &restarted, "paused", 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0, "still paused after the restart");

    restarted.resume("paused").await.unwrap();
    h.wait_delivered("paused", 25, Duration::from_secs(10))
        .await;
    assert_eq!(rx.count(), 25);
    assert_eq!(
        restarted.stats_of("paused").await.unwrap().paused_reason,
        None
    );
    assert!(
        h.store.paused().await.unwrap().is_empty(),
        "resume is persisted"
    );
    restarted.shutdown(Duration::from_secs(1)).await;
}
