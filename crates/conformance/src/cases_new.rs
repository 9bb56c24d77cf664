//! The cases added with the reshaped seam: leases and fencing, the claim cap, concurrent
//! claimers, restarts, the listener, replay, event reads, and the ordering and trace fields.

use super::*;

fn at(ms: u64) -> UnixMillis {
    UnixMillis(T0.0 + ms)
}

/// A lease past `lease_until` is claimable again, under a new token, without counting an
/// attempt; until then nothing is handed out twice, and `next_due` names the expiry.
pub async fn expired_leases_are_claimable_again_with_a_new_token(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let id = enqueue_one(store, event(&[&a], T0, r#"{"lease":1}"#))
        .await
        .deliveries[0]
        .id;
    let first = store.claim(&a, T0, at(30_000), 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].id, id);
    assert_eq!(first[0].lease_until, at(30_000));
    assert!(
        store
            .claim(&a, at(29_999), far(), 10)
            .await
            .unwrap()
            .is_empty(),
        "a lease is not claimable before lease_until"
    );
    assert_eq!(
        store.next_due(&a).await.unwrap(),
        Some(at(30_000)),
        "next_due names the lease's expiry"
    );
    let second = store.claim(&a, at(30_000), lease(), 10).await.unwrap();
    assert_eq!(second.len(), 1, "an expired lease is claimable again");
    let c = &second[0];
    assert_eq!(c.id, id);
    assert_ne!(c.lease, first[0].lease, "a new claim gets a new token");
    assert_eq!(c.attempt, 1, "an expired lease counts no attempt");
    assert_eq!(&c.payload[..], br#"{"lease":1}"#);
    assert_eq!(status(store, id).await, DeliveryStatus::InFlight);
    assert_eq!(counts_of(store, &a).await, counts(0, 1, 0, 0));
    store
        .finish_attempt(
            id,
            attempt(at(30_001), Some(200), None, 1),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    assert_eq!(counts_of(store, &a).await, counts(0, 0, 1, 0));
}

/// A stale token's finish and release are refused with `LeaseLost` and change nothing; the
/// newer lease's outcomes stand.
pub async fn stale_tokens_are_fenced_off(store: Arc<dyn DeliveryStore>) {
    let tracked = Tracked::new(store);
    let store = tracked.inner().as_ref();
    let a = sub("a");
    let id = one(&tracked, &a, T0).await;
    let claim = |now: UnixMillis, until: UnixMillis| {
        let a = a.clone();
        let tracked = tracked.clone();
        async move {
            let mut c = tracked.claim(&a, now, until, 1).await.unwrap();
            assert_eq!(c.len(), 1, "claim at {now:?}");
            c.remove(0)
        }
    };
    let old = claim(T0, at(1_000)).await;
    let new = claim(at(1_000), lease()).await;
    assert_ne!(old.lease, new.lease);

    let lost = |r: Result<(), StoreError>| matches!(r, Err(StoreError::LeaseLost(x)) if x == id);
    let delivered = attempt(at(1_001), Some(200), None, 1);
    assert!(lost(
        store
            .finish_attempt(id, old.lease, delivered.clone(), Outcome::Delivered)
            .await
    ));
    assert!(lost(store.release(id, old.lease, at(2_000)).await));
    let d = store.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::InFlight, "nothing changed");
    assert_eq!(d.record.attempts, 0);
    assert!(d.attempts.is_empty());
    assert_eq!(store.counts(&a).await.unwrap(), counts(0, 1, 0, 0));

    store
        .finish_attempt(
            id,
            new.lease,
            attempt(at(1_001), Some(503), Some("HTTP 503"), 1),
            Outcome::RetryAt(at(5_000)),
        )
        .await
        .unwrap();
    assert!(lost(
        store
            .finish_attempt(id, old.lease, delivered.clone(), Outcome::Delivered)
            .await
    ));
    assert!(
        lost(store.release(id, new.lease, at(1_500)).await),
        "a finished lease cannot be released"
    );
    let d = store.get(id).await.unwrap().unwrap();
    assert_eq!(d.record.status, DeliveryStatus::Pending);
    assert_eq!(d.record.attempts, 1);
    assert_eq!(d.record.next_attempt_at, Some(at(5_000)));

    let third = claim(at(5_000), lease()).await;
    assert_eq!(third.attempt, 2);
    assert_ne!(third.lease, new.lease);
    assert_ne!(third.lease, old.lease);
    store
        .finish_attempt(id, third.lease, delivered.clone(), Outcome::Delivered)
        .await
        .unwrap();
    for token in [old.lease, new.lease, third.lease] {
        assert!(lost(
            store
                .finish_attempt(id, token, delivered.clone(), Outcome::Dead)
                .await
        ));
    }
    let d = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        d.record.status,
        DeliveryStatus::Delivered,
        "the newer outcome stands"
    );
    assert_eq!(d.record.attempts, 2);
    assert_eq!(store.counts(&a).await.unwrap(), counts(0, 0, 1, 0));
    let unknown = DeliveryId::generate();
    assert!(matches!(
        store.finish_attempt(unknown, third.lease, delivered, Outcome::Delivered).await,
        Err(StoreError::NotFound(x)) if x == unknown
    ));
}

/// Many tasks claiming one subscriber in a loop, with valid leases, never get the same
/// delivery twice, and every token is distinct.
pub async fn concurrent_claimers_never_share_a_valid_lease(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let events: Vec<NewEvent> = (0..300).map(|i| event(&[&a], at(i), "{}")).collect();
    store.enqueue(events).await.unwrap();
    let claimers = (0..8).map(|_| {
        let (store, a) = (store.clone(), a.clone());
        async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&a, at(1_000), lease(), 5).await.unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|c| (c.id, c.lease)));
                tokio::task::yield_now().await;
            }
            mine
        }
    });
    let claimed: Vec<(DeliveryId, LeaseToken)> = join_tasks(claimers.collect())
        .await
        .into_iter()
        .flatten()
        .collect();
    let ids: BTreeSet<DeliveryId> = claimed.iter().map(|c| c.0).collect();
    let tokens: std::collections::HashSet<LeaseToken> = claimed.iter().map(|c| c.1).collect();
    assert_eq!(claimed.len(), 300, "every delivery claimed once");
    assert_eq!(ids.len(), 300, "none twice");
    assert_eq!(tokens.len(), 300, "every lease has its own token");
    assert!(store
        .claim(&a, at(2_000), lease(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(counts_of(store, &a).await, counts(0, 300, 0, 0));
}

/// The claim never leases more than `cap` minus the subscriber's unexpired leases; expired
/// leases do not count.
pub async fn claim_cap_counts_unexpired_leases(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let events: Vec<NewEvent> = (0..10).map(|_| event(&[&a], T0, "{}")).collect();
    store.enqueue(events).await.unwrap();
    let claim = |now, until, max, cap| {
        let (store, a) = (store.clone(), a.clone());
        async move { store.claim_capped(&a, now, until, max, cap).await.unwrap() }
    };
    assert_eq!(claim(T0, at(1_000), 10, 3).await.len(), 3);
    assert!(claim(T0, at(1_000), 10, 3).await.is_empty(), "cap reached");
    assert_eq!(
        claim(T0, at(1_000), 1, 5).await.len(),
        1,
        "max still applies"
    );
    let two = claim(T0, at(1_000), 10, 5).await;
    assert_eq!(two.len(), 1, "5 - 4 leases out");
    assert!(
        claim(T0, at(1_000), 10, 0).await.is_empty(),
        "cap 0 leases nothing"
    );
    store
        .finish_attempt(
            two[0].id,
            attempt(T0, Some(200), None, 1),
            Outcome::Delivered,
        )
        .await
        .unwrap();
    assert_eq!(
        claim(at(500), at(5_000), 10, 5).await.len(),
        1,
        "a finish frees a slot"
    );
    // At +1000 the four leases until +1000 have expired; the one until +5000 has not.
    assert_eq!(claim(at(1_000), at(9_000), 10, 3).await.len(), 2);
    assert!(claim(at(1_000), at(9_000), 10, 3).await.is_empty());
    let c = counts_of(store, &a).await;
    assert_eq!(c.delivered, 1);
    assert_eq!(c.pending + c.in_flight, 9);
}

/// Restart: acknowledged deliveries, their states, history, payloads and pauses survive; a
/// lease held at the restart is claimable once it expires (at the latest), and its old token
/// is refused after that claim.
pub async fn reopen_keeps_acknowledged_work_and_leases_expire<E: Engine>(
    engine: &E,
) -> Result<(), String> {
    let (store, handle) = engine.create().await;
    let before = tokio::spawn(async move {
        let store = &Tracked::new(store);
        let a = sub("a");
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(
                enqueue_one(store, event(&[&a], T0, &format!("{{\"n\":{n}}}")))
                    .await
                    .deliveries[0]
                    .id,
            );
        }
        ids.push(
            enqueue_one(store, event(&[&a], at(100), r#"{"n":3}"#))
                .await
                .deliveries[0]
                .id,
        );
        assert_eq!(claim_ids(store, &a, T0, 1).await, vec![ids[0]]);
        store
            .finish_attempt(ids[0], attempt(T0, Some(200), None, 1), Outcome::Delivered)
            .await
            .unwrap();
        make_dead(store, &a, ids[1]).await;
        let leased = store.claim(&a, T0, at(30_000), 1).await.unwrap();
        assert_eq!(leased[0].id, ids[2]);
        store.set_paused(&a, Some("maint")).await.unwrap();
        store.sync().await.unwrap();
        (ids, leased[0].lease)
    })
    .await;
    let (ids, old_token) = before.map_err(|e| format!("before the restart: {}", panic_text(e)))?;

    let store = engine.reopen(&handle).await;
    let after = tokio::spawn(async move {
        let store = &Tracked::new(store);
        let a = sub("a");
        let d = store.get(ids[0]).await.unwrap().unwrap();
        assert_eq!(d.record.status, DeliveryStatus::Delivered);
        assert_eq!(d.attempts.len(), 1);
        assert_eq!(status(store, ids[1]).await, DeliveryStatus::Dead);
        let pending = store.get(ids[3]).await.unwrap().unwrap().record;
        assert_eq!(pending.status, DeliveryStatus::Pending);
        assert_eq!(pending.next_attempt_at, Some(at(100)));
        let c = counts_of(store, &a).await;
        assert_eq!((c.delivered, c.dead, c.pending + c.in_flight), (1, 1, 2));
        assert_eq!(
            store.paused().await.unwrap(),
            vec![(a.clone(), "maint".into())]
        );

        let claimed = store.claim(&a, at(30_000), lease(), 10).await.unwrap();
        let got: Vec<DeliveryId> = claimed.iter().map(|c| c.id).collect();
        assert_eq!(
            got,
            vec![ids[2], ids[3]],
            "the leased one is claimable again"
        );
        assert_eq!(claimed[0].attempt, 1);
        assert_eq!(&claimed[0].payload[..], br#"{"n":2}"#);
        assert_eq!(&claimed[1].payload[..], br#"{"n":3}"#);
        assert!(matches!(
            store
                .inner()
                .finish_attempt(
                    ids[2],
                    old_token,
                    attempt(T0, Some(200), None, 1),
                    Outcome::Delivered
                )
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        store
            .finish_attempt(
                ids[2],
                attempt(at(30_000), Some(200), None, 1),
                Outcome::Delivered,
            )
            .await
            .unwrap();
        assert_eq!(store.redrive(&a, at(40_000)).await.unwrap(), 1);
        assert_eq!(counts_of(store, &a).await, counts(1, 1, 2, 0));
    })
    .await;
    drop(handle);
    after.map_err(|e| format!("after the restart: {}", panic_text(e)))
}

/// The listener hears `work_available` on enqueue, release, retry, redrive and replay, and
/// `subscriber_changed` on pause and resume.
pub async fn listener_is_told_about_work_and_pauses(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let listener = Arc::new(RecordingListener::default());
    store.set_listener(Arc::clone(&listener) as Arc<dyn StoreListener>);
    let (a, b) = (sub("a"), sub("b"));
    let id = enqueue_one(store, event(&[&a, &b], T0, "{}"))
        .await
        .deliveries[0]
        .id;
    listener.expect("work_available", &b, "enqueue").await;
    one(store, &a, at(1)).await;
    listener.expect("work_available", &a, "enqueue").await;

    assert_eq!(claim_ids(store, &a, T0, 1).await, vec![id]);
    store.release(id, T0).await.unwrap();
    listener.expect("work_available", &a, "release").await;

    assert_eq!(claim_ids(store, &a, T0, 1).await, vec![id]);
    let dead = attempt(T0, Some(500), None, 1);
    store
        .finish_attempt(id, dead.clone(), Outcome::Dead)
        .await
        .unwrap();
    store.retry_dead(id, at(10)).await.unwrap();
    listener.expect("work_available", &a, "retry_dead").await;

    let claimed = claim_ids(store, &a, at(10), 10).await;
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        store
            .finish_attempt(*c, dead.clone(), Outcome::Dead)
            .await
            .unwrap();
    }
    assert_eq!(store.redrive(&a, at(20)).await.unwrap(), 2);
    listener.expect("work_available", &a, "redrive").await;

    for c in claim_ids(store, &a, at(20), 10).await {
        store
            .finish_attempt(c, attempt(at(20), Some(200), None, 1), Outcome::Delivered)
            .await
            .unwrap();
    }
    let replayed = store
        .replay(&ReplayRequest {
            subscriber: a.clone(),
            since: T0,
            until: None,
            statuses: vec![DeliveryStatus::Delivered],
            event_types: Vec::new(),
            dry_run: false,
            now: at(30),
        })
        .await
        .unwrap();
    assert_eq!(replayed.replayed, 2);
    listener.expect("work_available", &a, "replay").await;

    store.set_paused(&a, Some("maint")).await.unwrap();
    listener.expect("subscriber_changed", &a, "pause").await;
    store.set_paused(&a, None).await.unwrap();
    listener.expect("subscriber_changed", &a, "resume").await;
}

/// Replay: the window, the statuses (dead when none are given), the event types; a dry run
/// counts only; replayed deliveries keep their id and history and get a fresh retry budget.
pub async fn replay_makes_finished_deliveries_pending_again(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let typed = |t: &str, ms: u64, subs: &[&SubscriberId]| {
        let mut e = event(subs, at(ms), &format!("{{\"at\":{ms}}}"));
        e.event_type = t.into();
        e
    };
    // a: X delivered (+10), Y dead (+20), X dead (+30), X pending (+40), X delivered (+50).
    let mut ids = Vec::new();
    for (t, ms) in [("X", 10), ("Y", 20), ("X", 30), ("X", 40), ("X", 50)] {
        let r = enqueue_one(store, typed(t, ms, &[&a, &b])).await;
        ids.push(r.deliveries[0].id);
    }
    let fresh = store.claim(&a, at(10), lease(), 1).await.unwrap();
    assert_eq!(fresh[0].id, ids[0]);
    assert_eq!(
        fresh[0].budget,
        RetryBudget::new(at(10)),
        "a fresh budget from creation"
    );
    let ok = attempt(at(60), Some(200), None, 1);
    let fail = attempt(at(60), Some(500), Some("HTTP 500"), 1);
    store
        .finish_attempt(ids[0], ok.clone(), Outcome::Delivered)
        .await
        .unwrap();
    for (i, outcome) in [
        (1, Outcome::Dead),
        (2, Outcome::Dead),
        (4, Outcome::Delivered),
    ] {
        let c = claim_ids(store, &a, at(100), 1).await;
        let c = if c == vec![ids[i]] {
            c
        } else {
            // ids[3] (pending, due +40) comes first in due order: give it back for later.
            assert_eq!(c, vec![ids[3]]);
            store.release(ids[3], far()).await.unwrap();
            claim_ids(store, &a, at(100), 1).await
        };
        assert_eq!(c, vec![ids[i]]);
        let record = if outcome == Outcome::Delivered {
            ok.clone()
        } else {
            fail.clone()
        };
        store.finish_attempt(ids[i], record, outcome).await.unwrap();
    }
    assert_eq!(counts_of(store, &a).await, counts(1, 0, 2, 2));
    let request = |statuses: Vec<DeliveryStatus>, types: &[&str], dry_run: bool| ReplayRequest {
        subscriber: a.clone(),
        since: at(0),
        until: Some(at(45)),
        statuses,
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        dry_run,
        now: at(1_000),
    };

    let dry = store.replay(&request(vec![], &[], true)).await.unwrap();
    assert_eq!(
        (dry.matched, dry.replayed),
        (2, 0),
        "dead by default; +50 is outside"
    );
    assert_eq!(
        counts_of(store, &a).await,
        counts(1, 0, 2, 2),
        "a dry run changes nothing"
    );

    let done = store
        .replay(&request(
            vec![DeliveryStatus::Delivered, DeliveryStatus::Dead],
            &["X"],
            false,
        ))
        .await
        .unwrap();
    assert_eq!((done.matched, done.replayed), (2, 2));
    for id in [ids[0], ids[2]] {
        let d = store.get(id).await.unwrap().unwrap();
        assert_eq!(d.record.id, id);
        assert_eq!(d.record.status, DeliveryStatus::Pending);
        assert_eq!(d.record.next_attempt_at, Some(at(1_000)));
        assert_eq!(d.record.attempts, 1, "history is kept");
        assert_eq!(d.attempts.len(), 1);
    }
    assert_eq!(
        status(store, ids[1]).await,
        DeliveryStatus::Dead,
        "Y is filtered out"
    );
    assert_eq!(
        status(store, ids[4]).await,
        DeliveryStatus::Delivered,
        "outside the window"
    );
    assert_eq!(counts_of(store, &a).await, counts(3, 0, 1, 1));
    assert_eq!(
        counts_of(store, &b).await,
        counts(5, 0, 0, 0),
        "b is untouched"
    );

    let claimed = store.claim(&a, at(1_000), lease(), 10).await.unwrap();
    let replayed: Vec<&ClaimedDelivery> = claimed
        .iter()
        .filter(|c| c.id == ids[0] || c.id == ids[2])
        .collect();
    assert_eq!(replayed.len(), 2);
    for c in replayed {
        assert_eq!(c.attempt, 2);
        assert_eq!(
            c.budget,
            RetryBudget {
                first_attempt: 2,
                since: at(1_000)
            },
            "a replay starts a fresh retry budget"
        );
        assert_eq!(c.budget.attempt_in_budget(c.attempt), 1);
    }
    let none = store
        .replay(&ReplayRequest {
            since: at(100),
            until: None,
            ..request(vec![DeliveryStatus::Delivered], &[], false)
        })
        .await
        .unwrap();
    assert_eq!((none.matched, none.replayed), (0, 0));
}

/// `get_event` returns the event's fields, its payload byte for byte and its deliveries with
/// their current states.
pub async fn get_event_returns_payload_and_deliveries(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let mut e = keyed(event(&[&a, &b], at(7), ""), "ek-1");
    e.payload = Bytes::from_static(b"{\"x\":\"\xc3\xa9\"}\n\x00\xff");
    e.event_type = "ORDER_PLACED".into();
    e.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let r = enqueue_one(store, e.clone()).await;
    let got = store.get_event(r.event_id).await.unwrap().unwrap();
    assert_eq!(got.id, r.event_id);
    assert_eq!(got.event_type, "ORDER_PLACED");
    assert_eq!(got.received_at, at(7));
    assert_eq!(got.idempotency_key.as_deref(), Some("ek-1"));
    assert_eq!(got.traceparent, e.traceparent);
    assert_eq!(got.ordering_key, None);
    assert_eq!(got.payload, e.payload, "payload byte for byte");
    let subs: Vec<(&SubscriberId, DeliveryStatus)> = got
        .deliveries
        .iter()
        .map(|d| (&d.subscriber, d.status))
        .collect();
    assert_eq!(
        subs,
        vec![(&a, DeliveryStatus::Pending), (&b, DeliveryStatus::Pending)]
    );
    assert_eq!(got.deliveries[0].id, r.deliveries[0].id);

    let c = claim_ids(store, &a, at(7), 1).await;
    store
        .finish_attempt(c[0], attempt(at(8), Some(200), None, 1), Outcome::Delivered)
        .await
        .unwrap();
    claim_ids(store, &b, at(7), 1).await;
    let got = store.get_event(r.event_id).await.unwrap().unwrap();
    let states: Vec<DeliveryStatus> = got.deliveries.iter().map(|d| d.status).collect();
    assert_eq!(
        states,
        vec![DeliveryStatus::Delivered, DeliveryStatus::InFlight]
    );
    assert!(store
        .get_event(herald_core::EventId::generate())
        .await
        .unwrap()
        .is_none());
}

/// `list_events` pages in id (acceptance) order and filters by since, until and event type.
pub async fn list_events_pages_and_filters(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let mut ids = Vec::new();
    for i in 0..25u64 {
        let mut e = event(&[&a], at(i * 10), &format!("{{\"i\":{i}}}"));
        e.event_type = if i % 2 == 0 { "A" } else { "B" }.into();
        ids.push(enqueue_one(store, e).await.event_id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "event ids follow acceptance order");

    let page = |query: EventQuery| async move { store.list_events(&query).await.unwrap() };
    let collect = |base: EventQuery| async move {
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..100 {
            let p = page(EventQuery {
                cursor,
                ..base.clone()
            })
            .await;
            assert!(p.events.len() <= base.limit.max(1));
            seen.extend(
                p.events
                    .iter()
                    .map(|e| (e.id, e.event_type.clone(), e.received_at)),
            );
            match p.next_cursor {
                Some(c) => {
                    assert_eq!(Some(c), p.events.last().map(|e| e.id));
                    cursor = Some(c);
                }
                None => return seen,
            }
        }
        panic!("paging does not end");
    };
    let all = collect(EventQuery {
        limit: 10,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), ids);
    let first = page(EventQuery {
        limit: 10,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(first.events.len(), 10);
    assert_eq!(first.events[3].received_at, at(30));
    assert_eq!(first.events[3].payload, Bytes::from_static(br#"{"i":3}"#));

    let window = collect(EventQuery {
        since: Some(at(50)),
        until: Some(at(150)),
        limit: 4,
        ..EventQuery::default()
    })
    .await;
    assert_eq!(
        window.iter().map(|e| e.0).collect::<Vec<_>>(),
        ids[5..15].to_vec(),
        "since is inclusive, until exclusive"
    );
    let only_a = collect(EventQuery {
        event_type: Some("A".into()),
        since: Some(at(100)),
        limit: 3,
        ..EventQuery::default()
    })
    .await;
    let expect: Vec<_> = (10..25).step_by(2).map(|i| ids[i]).collect();
    assert_eq!(only_a.iter().map(|e| e.0).collect::<Vec<_>>(), expect);
    assert!(only_a.iter().all(|e| e.1 == "A"));
    let none = page(EventQuery {
        since: Some(far()),
        ..EventQuery::default()
    })
    .await;
    assert!(none.events.is_empty());
    assert_eq!(none.next_cursor, None);
}

/// A subscriber whose deliveries were all purged is still listed by `all_counts`, at zero,
/// so its gauges fall to 0 instead of keeping their last value.
pub async fn all_counts_keeps_subscribers_that_fell_to_zero(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let id = one(store, &a, T0).await;
    one(store, &b, T0).await;
    assert_eq!(claim_ids(store, &a, T0, 1).await, vec![id]);
    store
        .finish_attempt(id, attempt(T0, Some(200), None, 1), Outcome::Delivered)
        .await
        .unwrap();
    let stats = store.purge(far()).await.unwrap();
    assert_eq!(stats.deliveries, 1);
    let mut all = store.all_counts().await.unwrap();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        all,
        vec![
            (a.clone(), QueueCounts::default()),
            (b.clone(), counts(1, 0, 0, 0))
        ]
    );
}

/// The ordering key and traceparent are stored with the event; the key shows on the records
/// and claims of the subscribers in `ordered_for` only; the traceparent on every claim.
pub async fn ordering_and_trace_fields_round_trip(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b) = (sub("a"), sub("b"));
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut e = event(&[&a, &b], T0, "{}");
    e.ordering_key = Some("customer-42".into());
    e.ordered_for = vec![a.clone()];
    e.traceparent = Some(trace.into());
    let r = enqueue_one(store, e).await;
    let plain = enqueue_one(store, event(&[&a], T0, "{}")).await;
    let (da, db) = (r.deliveries[0].id, r.deliveries[1].id);

    let event = store.get_event(r.event_id).await.unwrap().unwrap();
    assert_eq!(event.ordering_key.as_deref(), Some("customer-42"));
    assert_eq!(event.traceparent.as_deref(), Some(trace));
    let rec_a = store.get(da).await.unwrap().unwrap().record;
    let rec_b = store.get(db).await.unwrap().unwrap().record;
    assert_eq!(rec_a.ordering_key.as_deref(), Some("customer-42"));
    assert_eq!(rec_b.ordering_key, None, "b is not ordered by the key");

    let claimed = store.claim(&a, T0, lease(), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let ca = claimed.iter().find(|c| c.id == da).unwrap();
    assert_eq!(ca.ordering_key.as_deref(), Some("customer-42"));
    assert_eq!(ca.traceparent.as_deref(), Some(trace));
    let cp = claimed
        .iter()
        .find(|c| c.id == plain.deliveries[0].id)
        .unwrap();
    assert_eq!(
        (cp.ordering_key.as_deref(), cp.traceparent.as_deref()),
        (None, None)
    );
    let cb = store.claim(&b, T0, lease(), 10).await.unwrap();
    assert_eq!(cb[0].ordering_key, None);
    assert_eq!(cb[0].traceparent.as_deref(), Some(trace));
    // Still there after the record is rewritten by a transition.
    store
        .finish_attempt(da, attempt(T0, Some(500), None, 1), Outcome::Dead)
        .await
        .unwrap();
    let rec_a = store.get(da).await.unwrap().unwrap().record;
    assert_eq!(rec_a.ordering_key.as_deref(), Some("customer-42"));
}
