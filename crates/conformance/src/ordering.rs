//! SPEC §9, per-key ordering: the claim rules every engine must keep (issue 13).
//!
//! A delivery is *ordered* when its subscriber is in the event's `ordered_for` and the event
//! has an `ordering_key`. Its *line* is the subscriber's unfinished (pending or leased)
//! deliveries with the same key, in acceptance order (the order of `enqueue` calls, and of the
//! events within one call). The rules checked here:
//!
//! - a claim hands out an ordered delivery only when it is the first of its line and nothing
//!   of its line is leased: one at a time per key, in acceptance order;
//! - a head that is retried blocks its key through its retries (other keys and keyless
//!   deliveries proceed); a delivered or dead head unblocks its key;
//! - a delivery made pending again (retry of a dead one, redrive, replay) takes its place in
//!   the line by acceptance order: it becomes the head again if it is the earliest, waiting
//!   for any attempt of a later one already under way;
//! - an expired lease of a head makes the head claimable again, and nothing behind it;
//! - lines are per subscriber; subscribers not in `ordered_for` ignore the key; the cap still
//!   applies; `next_due` never names a delivery that is waiting behind its head;
//! - [`DeliveryStore::blocked_keys`] counts the keys whose head has failed at least once and
//!   is not yet finished.

use super::*;

fn at(ms: u64) -> UnixMillis {
    UnixMillis(T0.0 + ms)
}

/// An event with `key`, ordered for `ordered`, delivered to `subs`.
fn with_key(
    subs: &[&SubscriberId],
    ordered: &[&SubscriberId],
    key: Option<&str>,
    n: u32,
) -> NewEvent {
    let mut e = event(subs, T0, &format!("{{\"n\":{n}}}"));
    e.ordering_key = key.map(str::to_owned);
    e.ordered_for = ordered.iter().map(|s| (*s).clone()).collect();
    e
}

/// Enqueues one keyed event (its own `enqueue` call: acceptance order is call order) ordered
/// for every subscriber it goes to; returns the delivery id of each subscriber, in order.
async fn keyed_one(store: &Tracked, subs: &[&SubscriberId], key: &str, n: u32) -> Vec<DeliveryId> {
    let r = enqueue_one(store, with_key(subs, subs, Some(key), n)).await;
    r.deliveries.iter().map(|d| d.id).collect()
}

fn sorted(mut ids: Vec<DeliveryId>) -> Vec<DeliveryId> {
    ids.sort();
    ids
}

async fn finish(store: &Tracked, id: DeliveryId, outcome: Outcome) {
    let code = if outcome == Outcome::Delivered {
        200
    } else {
        500
    };
    store
        .finish_attempt(id, attempt(T0, Some(code), None, 1), outcome)
        .await
        .unwrap();
}

async fn blocked(store: &Tracked, s: &SubscriberId) -> u64 {
    store
        .blocked_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == s)
        .map_or(0, |(_, n)| n)
}

/// Same key: one at a time, in acceptance order; other keys and keyless deliveries proceed.
pub async fn ordered_keys_are_claimed_one_at_a_time_in_acceptance_order(
    store: Arc<dyn DeliveryStore>,
) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let k1 = keyed_one(store, &[&a], "k", 1).await[0];
    let j1 = keyed_one(store, &[&a], "j", 2).await[0];
    let k2 = keyed_one(store, &[&a], "k", 3).await[0];
    let free = one(store, &a, T0).await;
    let k3 = keyed_one(store, &[&a], "k", 4).await[0];
    let j2 = keyed_one(store, &[&a], "j", 5).await[0];

    let first = claim_ids(store, &a, T0, 100).await;
    assert_eq!(
        sorted(first),
        sorted(vec![k1, j1, free]),
        "only the head of each key, and the keyless delivery"
    );
    assert!(
        claim_ids(store, &a, T0, 100).await.is_empty(),
        "nothing behind a head in flight"
    );
    finish(store, k1, Outcome::Delivered).await;
    assert_eq!(claim_ids(store, &a, T0, 100).await, vec![k2]);
    finish(store, j1, Outcome::Delivered).await;
    finish(store, k2, Outcome::Delivered).await;
    assert_eq!(
        sorted(claim_ids(store, &a, T0, 100).await),
        sorted(vec![k3, j2])
    );
    assert_eq!(status(store, k3).await, DeliveryStatus::InFlight);
}

/// A head being retried blocks its key through its retries (and counts as a blocked key);
/// a dead head unblocks it. `next_due` names the head's retry, not the deliveries behind it.
pub async fn a_retried_head_blocks_only_its_key_until_dead(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let k1 = keyed_one(store, &[&a], "k", 1).await[0];
    let k2 = keyed_one(store, &[&a], "k", 2).await[0];
    let j1 = keyed_one(store, &[&a], "j", 3).await[0];
    assert_eq!(blocked(store, &a).await, 0);
    assert_eq!(
        sorted(claim_ids(store, &a, T0, 100).await),
        sorted(vec![k1, j1])
    );
    finish(store, k1, Outcome::RetryAt(at(5_000))).await;
    let j2 = keyed_one(store, &[&a], "j", 4).await[0];
    let free = one(store, &a, T0).await;
    assert_eq!(blocked(store, &a).await, 1, "k's head failed and waits");
    assert_eq!(
        store.next_due(&a).await.unwrap(),
        Some(T0),
        "the keyless delivery is due"
    );
    finish(store, j1, Outcome::Delivered).await;
    assert_eq!(
        sorted(claim_ids(store, &a, at(1_000), 100).await),
        sorted(vec![j2, free]),
        "other keys and keyless deliveries proceed; k2 waits behind its retried head"
    );
    assert_eq!(
        store.next_due(&a).await.unwrap(),
        Some(at(5_000)),
        "next_due is the head's retry, not k2 waiting behind it"
    );
    assert_eq!(claim_ids(store, &a, at(5_000), 100).await, vec![k1]);
    assert_eq!(blocked(store, &a).await, 1, "still failing while retried");
    finish(store, k1, Outcome::RetryAt(at(9_000))).await;
    assert!(claim_ids(store, &a, at(8_000), 100).await.is_empty());
    assert_eq!(claim_ids(store, &a, at(9_000), 100).await, vec![k1]);
    finish(store, k1, Outcome::Dead).await;
    assert_eq!(blocked(store, &a).await, 0, "a dead head unblocks its key");
    assert_eq!(
        claim_ids(store, &a, at(9_000), 100).await,
        vec![k2],
        "a dead head unblocks its key"
    );
    finish(store, k2, Outcome::Delivered).await;
    assert_eq!(blocked(store, &a).await, 0);
}

/// A dead delivery made pending again becomes the head of its line again, ahead of later ones
/// not yet claimed; if a later one is in flight, it waits for that attempt to end. Holds for
/// `retry_dead`, `redrive` and `replay`.
pub async fn a_repended_delivery_takes_its_place_by_acceptance_order(
    store: Arc<dyn DeliveryStore>,
) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let k1 = keyed_one(store, &[&a], "k", 1).await[0];
    let k2 = keyed_one(store, &[&a], "k", 2).await[0];
    let k3 = keyed_one(store, &[&a], "k", 3).await[0];
    make_dead(store, &a, k1).await;

    // retry_dead while k2 is pending (the head, not claimed): k1 goes first again.
    store.retry_dead(k1, at(10)).await.unwrap();
    assert_eq!(claim_ids(store, &a, at(10), 100).await, vec![k1]);
    finish(store, k1, Outcome::Dead).await;

    // k2 in flight; k1 redriven: it waits until k2's attempt ends, then goes before k2's retry.
    assert_eq!(claim_ids(store, &a, at(20), 100).await, vec![k2]);
    assert_eq!(store.redrive(&a, at(20)).await.unwrap(), 1);
    assert!(
        claim_ids(store, &a, at(20), 100).await.is_empty(),
        "never two of one key in flight"
    );
    finish(store, k2, Outcome::RetryAt(at(30))).await;
    assert_eq!(
        claim_ids(store, &a, at(40), 100).await,
        vec![k1],
        "the earlier delivery is the head again"
    );
    finish(store, k1, Outcome::Delivered).await;
    assert_eq!(claim_ids(store, &a, at(40), 100).await, vec![k2]);
    finish(store, k2, Outcome::Delivered).await;

    // replay of delivered k1 and k2 while k3 is pending: k1, then k2, then k3.
    let replayed = store
        .replay(&ReplayRequest {
            subscriber: a.clone(),
            since: T0,
            until: None,
            statuses: vec![DeliveryStatus::Delivered],
            event_types: Vec::new(),
            dry_run: false,
            now: at(50),
        })
        .await
        .unwrap();
    assert_eq!(replayed.replayed, 2);
    for expected in [k1, k2, k3] {
        assert_eq!(claim_ids(store, &a, at(60), 100).await, vec![expected]);
        finish(store, expected, Outcome::Delivered).await;
    }
    assert!(claim_ids(store, &a, at(60), 100).await.is_empty());
}

/// An expired lease of a head makes the head claimable again, and nothing behind it.
pub async fn an_expired_head_is_claimable_again_alone(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let k1 = keyed_one(store, &[&a], "k", 1).await[0];
    let k2 = keyed_one(store, &[&a], "k", 2).await[0];
    let first = store.claim(&a, T0, at(1_000), 10).await.unwrap();
    assert_eq!(first.iter().map(|c| c.id).collect::<Vec<_>>(), vec![k1]);
    assert_eq!(store.next_due(&a).await.unwrap(), Some(at(1_000)));
    let again = store.claim(&a, at(1_000), lease(), 10).await.unwrap();
    assert_eq!(
        again.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![k1],
        "the head again, not the one behind it"
    );
    assert_ne!(again[0].lease, first[0].lease);
    finish(store, k1, Outcome::Delivered).await;
    assert_eq!(claim_ids(store, &a, at(1_000), 10).await, vec![k2]);
}

/// Lines are per subscriber; a subscriber not in `ordered_for` ignores the key.
pub async fn keys_are_per_subscriber_and_only_for_ordered_ones(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let (a, b, c) = (sub("a"), sub("b"), sub("c"));
    let mut ids = Vec::new();
    for n in 0..3 {
        let r = enqueue_one(store, with_key(&[&a, &b, &c], &[&a, &c], Some("k"), n)).await;
        ids.push(r.deliveries.iter().map(|d| d.id).collect::<Vec<_>>());
    }
    assert_eq!(claim_ids(store, &a, T0, 10).await, vec![ids[0][0]]);
    assert_eq!(
        claim_ids(store, &c, T0, 10).await,
        vec![ids[0][2]],
        "a's head in flight does not block c's line"
    );
    assert_eq!(
        sorted(claim_ids(store, &b, T0, 10).await),
        sorted(ids.iter().map(|d| d[1]).collect()),
        "b is not ordered: the key means nothing to it"
    );
}

/// The claim cap counts heads like any delivery; `max` too.
pub async fn the_cap_still_applies_to_heads(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    for n in 0..5 {
        keyed_one(store, &[&a], &format!("key-{n}"), n).await;
    }
    let c = store.claim_capped(&a, T0, lease(), 10, 2).await.unwrap();
    assert_eq!(c.len(), 2);
    let c = store.claim_capped(&a, T0, lease(), 10, 3).await.unwrap();
    assert_eq!(c.len(), 1, "cap 3 with two leases out");
    assert_eq!(claim_ids(store, &a, T0, 1).await.len(), 1, "max 1");
    assert_eq!(claim_ids(store, &a, T0, 10).await.len(), 1, "the fifth key");
}

/// Many keys interleaved, with failures: per key, the first successful attempts are in
/// acceptance order and no two deliveries of a key are ever leased at once.
pub async fn interleaved_keys_drain_in_order_under_failures(store: Arc<dyn DeliveryStore>) {
    let store = &Tracked::new(store);
    let a = sub("a");
    let keys = 8u32;
    let per_key = 6u32;
    let mut line: HashMap<String, Vec<DeliveryId>> = HashMap::new();
    let mut key_of: HashMap<DeliveryId, String> = HashMap::new();
    // One batch for half of the events, single calls for the rest: both count in order.
    let mut batch = Vec::new();
    let mut batch_keys = Vec::new();
    for n in 0..per_key * keys {
        let key = format!("key-{}", n % keys);
        if n < per_key * keys / 2 {
            batch.push(with_key(&[&a], &[&a], Some(&key), n));
            batch_keys.push(key);
        } else {
            if !batch.is_empty() {
                let receipts = store.enqueue(std::mem::take(&mut batch)).await.unwrap();
                for (r, k) in receipts.iter().zip(batch_keys.drain(..)) {
                    line.entry(k.clone()).or_default().push(r.deliveries[0].id);
                    key_of.insert(r.deliveries[0].id, k);
                }
            }
            let id = keyed_one(store, &[&a], &key, n).await[0];
            line.entry(key.clone()).or_default().push(id);
            key_of.insert(id, key);
        }
    }
    let mut delivered: HashMap<String, Vec<DeliveryId>> = HashMap::new();
    let mut in_flight: HashMap<String, DeliveryId> = HashMap::new();
    let mut tries: HashMap<DeliveryId, u32> = HashMap::new();
    let mut now = 0;
    let mut rounds = 0;
    while delivered.values().map(Vec::len).sum::<usize>() < (keys * per_key) as usize {
        rounds += 1;
        assert!(rounds < 1_000, "the drain does not progress");
        now += 10;
        let claimed = claim_ids(store, &a, at(now), 5).await;
        for id in &claimed {
            let k = &key_of[id];
            assert!(
                in_flight.insert(k.clone(), *id).is_none(),
                "two deliveries of {k} in flight"
            );
        }
        // Finish every other claimed one this round; the rest next round.
        for (i, id) in claimed.iter().enumerate() {
            if i % 2 == 1 {
                continue;
            }
            let k = key_of[id].clone();
            in_flight.remove(&k);
            let n = tries.entry(*id).or_default();
            *n += 1;
            // Every third delivery fails twice before it succeeds.
            let fails = if line[&k].iter().position(|d| d == id).unwrap_or(0) % 3 == 0 {
                2
            } else {
                0
            };
            if *n <= fails {
                finish(store, *id, Outcome::RetryAt(at(now + 15))).await;
            } else {
                finish(store, *id, Outcome::Delivered).await;
                delivered.entry(k).or_default().push(*id);
            }
        }
        for (k, id) in in_flight.clone() {
            if !claimed.contains(&id) {
                in_flight.remove(&k);
                finish(store, id, Outcome::Delivered).await;
                delivered.entry(k).or_default().push(id);
            }
        }
    }
    assert_eq!(
        delivered, line,
        "per key, deliveries succeed in acceptance order"
    );
}

/// The lines survive a restart: after it, only heads are claimable, in order.
pub async fn ordering_survives_a_restart<E: Engine>(engine: &E) -> Result<(), String> {
    let (store, handle) = engine.create().await;
    let a = sub("a");
    let (k1, k2, k3) = {
        let store = &Tracked::new(store);
        let k1 = keyed_one(store, &[&a], "k", 1).await[0];
        let k2 = keyed_one(store, &[&a], "k", 2).await[0];
        let k3 = keyed_one(store, &[&a], "k", 3).await[0];
        assert_eq!(claim_ids(store, &a, T0, 10).await, vec![k1]);
        finish(store, k1, Outcome::Delivered).await;
        assert_eq!(claim_ids(store, &a, T0, 10).await, vec![k2]);
        finish(store, k2, Outcome::RetryAt(at(100))).await;
        store.sync().await.unwrap();
        (k1, k2, k3)
    };
    let store = engine.reopen(&handle).await;
    let store = &Tracked::new(store);
    let _ = k1;
    let got = claim_ids(store, &a, at(100), 10).await;
    if got != vec![k2] {
        return Err(format!(
            "after a restart claimed {got:?}, expected only {k2:?}"
        ));
    }
    if blocked(store, &a).await != 1 {
        return Err("the retried head is not counted as blocked after a restart".into());
    }
    finish(store, k2, Outcome::Delivered).await;
    let got = claim_ids(store, &a, at(100), 10).await;
    if got != vec![k3] {
        return Err(format!("then claimed {got:?}, expected {k3:?}"));
    }
    drop(handle);
    Ok(())
}
