//! Group-committed ingest: one task gathers every queued `enqueue` call into one transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use herald_core::{
    DeliveryId, EnqueueReceipt, EventId, NewEvent, ReceiptDelivery, StoreError, SubscriberId,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::error::{db, dup};
use crate::{ms, Inner};

/// Most events gathered into one transaction.
const MAX_BATCH_EVENTS: usize = 5_000;

pub(crate) struct Job {
    pub(crate) events: Vec<NewEvent>,
    pub(crate) reply: oneshot::Sender<Result<Vec<EnqueueReceipt>, StoreError>>,
}

/// Ingest transactions in flight at once per node: one gathers while the other commits (waits
/// for its WAL flush), so a node never idles on the disk.
const WRITERS: usize = 2;

pub(crate) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let writers = Arc::new(tokio::sync::Semaphore::new(WRITERS));
    while let Some(first) = rx.recv().await {
        // Wait for a free writer first: what queues meanwhile joins this batch.
        let Ok(permit) = writers.clone().acquire_owned().await else {
            return;
        };
        let mut n = first.events.len();
        let mut jobs = vec![first];
        while n < MAX_BATCH_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            write_and_answer(&inner, jobs).await;
            drop(permit);
        });
    }
}

async fn write_and_answer(inner: &Inner, jobs: Vec<Job>) {
    let events: Vec<&NewEvent> = jobs.iter().flat_map(|j| j.events.iter()).collect();
    match write(inner, &events).await {
        Ok((mut receipts, notify)) => {
            inner.tell_work(notify.iter());
            // Hand each caller its share, in order.
            let mut rest = receipts.drain(..);
            for job in jobs {
                let mine: Vec<EnqueueReceipt> = rest.by_ref().take(job.events.len()).collect();
                let _ = job.reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(dup(&e)));
            }
        }
    }
}

/// What became of one event of the batch.
enum Plan {
    /// Inserted now, with these deliveries.
    New(EventId, Vec<ReceiptDelivery>),
    /// Its key appeared earlier in this batch: the receipt of that event.
    SameAs(usize),
    /// Its key was already stored: the receipt of that event.
    Stored(String),
}

/// Writes the batch in one transaction and returns one receipt per event and the subscribers
/// that got work.
async fn write(
    inner: &Inner,
    events: &[&NewEvent],
) -> Result<(Vec<EnqueueReceipt>, Vec<SubscriberId>), StoreError> {
    let t = &inner.target;
    let mut plans = Vec::with_capacity(events.len());
    let mut first_of_key: HashMap<&str, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(key) = e.idempotency_key.as_deref() {
            if let Some(&j) = first_of_key.get(key) {
                plans.push(Plan::SameAs(j));
                continue;
            }
            first_of_key.insert(key, i);
        }
        let deliveries = e
            .subscribers
            .iter()
            .map(|s| ReceiptDelivery {
                id: DeliveryId::generate(),
                subscriber: s.clone(),
            })
            .collect();
        plans.push(Plan::New(EventId::generate(), deliveries));
    }

    let mut client = inner.conn().await?;
    let tx = client.transaction().await.map_err(|e| db(t, e))?;

    // 1. Claim the keys; the ones another transaction holds return its receipt.
    // In key order: concurrent ingest transactions (of this node or others) take the keys'
    // index locks in one order, so they cannot deadlock.
    let mut keyed: Vec<(&str, usize)> = first_of_key.iter().map(|(k, i)| (*k, *i)).collect();
    keyed.sort_unstable();
    let keyed: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    if !keyed.is_empty() {
        let mut keys = Vec::with_capacity(keyed.len());
        let mut ids = Vec::with_capacity(keyed.len());
        let mut times = Vec::with_capacity(keyed.len());
        for &i in &keyed {
            if let (Some(k), Plan::New(id, _)) = (events[i].idempotency_key.as_deref(), &plans[i]) {
                keys.push(k);
                ids.push(uuid(id.to_bytes()));
                times.push(ms(events[i].received_at));
            }
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO herald_idempotency (key, event_id, created_at)
                 SELECT * FROM unnest($1::text[], $2::uuid[], $3::int8[])
                 ON CONFLICT DO NOTHING RETURNING key",
            )
            .await
            .map_err(|e| db(t, e))?;
        let won: std::collections::HashSet<String> = tx
            .query(&stmt, &[&keys, &ids, &times])
            .await
            .map_err(|e| db(t, e))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        for &i in &keyed {
            if let Some(k) = events[i].idempotency_key.as_deref() {
                if !won.contains(k) {
                    plans[i] = Plan::Stored(k.to_owned());
                }
            }
        }
    }

    // 2. The receipts of keys already stored.
    let lost: Vec<&str> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Stored(k) => Some(k.as_str()),
            _ => None,
        })
        .collect();
    let mut stored: HashMap<String, EnqueueReceipt> = HashMap::new();
    if !lost.is_empty() {
        let stmt = tx
            .prepare_cached(
                "SELECT k.key, k.event_id, d.id, d.subscriber
                 FROM herald_idempotency k
                 LEFT JOIN herald_deliveries d ON d.event_id = k.event_id
                 WHERE k.key = ANY($1)
                 ORDER BY k.key, d.id",
            )
            .await
            .map_err(|e| db(t, e))?;
        for row in tx.query(&stmt, &[&lost]).await.map_err(|e| db(t, e))? {
            let key: String = row.get(0);
            let event: Uuid = row.get(1);
            let receipt = stored.entry(key).or_insert_with(|| EnqueueReceipt {
                event_id: EventId::from_bytes(*event.as_bytes()),
                deliveries: Vec::new(),
                duplicate: true,
            });
            if let (Some(id), Some(sub)) = (
                row.get::<_, Option<Uuid>>(2),
                row.get::<_, Option<String>>(3),
            ) {
                if let Ok(subscriber) = SubscriberId::new(&sub) {
                    receipt.deliveries.push(ReceiptDelivery {
                        id: DeliveryId::from_bytes(*id.as_bytes()),
                        subscriber,
                    });
                }
            }
        }
    }

    // 3. The new events and their deliveries, one multi-row insert each.
    let mut ev_ids = Vec::new();
    let mut ev_types = Vec::new();
    let mut ev_payloads: Vec<&[u8]> = Vec::new();
    let mut ev_times = Vec::new();
    let mut ev_okeys = Vec::new();
    let mut ev_ikeys = Vec::new();
    let mut ev_traces = Vec::new();
    let mut ev_has = Vec::new();
    let mut d_ids = Vec::new();
    let mut d_events = Vec::new();
    let mut d_subs = Vec::new();
    let mut d_times = Vec::new();
    let mut d_okeys: Vec<Option<&str>> = Vec::new();
    let mut per_sub: BTreeMap<&str, i64> = BTreeMap::new();
    for (e, plan) in events.iter().zip(&plans) {
        let Plan::New(id, deliveries) = plan else {
            continue;
        };
        let ev = uuid(id.to_bytes());
        ev_ids.push(ev);
        ev_types.push(e.event_type.as_str());
        ev_payloads.push(&e.payload[..]);
        ev_times.push(ms(e.received_at));
        ev_okeys.push(e.ordering_key.as_deref());
        ev_ikeys.push(e.idempotency_key.as_deref());
        ev_traces.push(e.traceparent.as_deref());
        ev_has.push(!deliveries.is_empty());
        for d in deliveries {
            d_ids.push(uuid(d.id.to_bytes()));
            d_events.push(ev);
            d_subs.push(d.subscriber.as_str());
            d_times.push(ms(e.received_at));
            d_okeys.push(
                e.ordering_key
                    .as_deref()
                    .filter(|_| e.ordered_for.contains(&d.subscriber)),
            );
            *per_sub.entry(d.subscriber.as_str()).or_insert(0) += 1;
        }
    }
    let new_subs: Vec<&str> = {
        let known = inner.known_subscribers.lock();
        per_sub
            .keys()
            .copied()
            .filter(|s| !known.contains(*s))
            .collect()
    };
    let (sub_names, sub_counts): (Vec<&str>, Vec<i64>) =
        per_sub.iter().map(|(s, n)| (*s, *n)).unzip();
    if !ev_ids.is_empty() {
        let s_ev = tx
            .prepare_cached(
                "INSERT INTO herald_events
                   (id, event_type, payload, received_at, ordering_key, idempotency_key,
                    traceparent, has_deliveries)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int8[],
                                      $5::text[], $6::text[], $7::text[], $8::bool[])",
            )
            .await
            .map_err(|e| db(t, e))?;
        let s_d = tx
            .prepare_cached(
                "INSERT INTO herald_deliveries
                   (id, event_id, subscriber, status, ready_at, budget_since, created_at,
                    updated_at, ordering_key, accept_seq)
                 SELECT u.id, u.ev, u.sub, 0, u.t, u.t, u.t, u.t, u.ok,
                        nextval('herald_accept_seq')
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::text[])
                   WITH ORDINALITY AS u(id, ev, sub, t, ok, n)
                 ORDER BY u.n",
            )
            .await
            .map_err(|e| db(t, e))?;
        let s_subs = tx
            .prepare_cached(
                "INSERT INTO herald_subscribers (id) SELECT unnest($1::text[])
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(|e| db(t, e))?;
        // Counts (this connection's shard) in subscriber order (a fixed lock order), and the
        // wake-up of every node, sent by the server at COMMIT.
        let s_counts = tx
            .prepare_cached(
                "WITH c AS (
                   INSERT INTO herald_counts AS c (subscriber, shard, pending)
                   SELECT u.s, (pg_backend_pid() % 16)::int2, u.n
                   FROM unnest($1::text[], $2::int8[]) AS u(s, n) ORDER BY u.s
                   ON CONFLICT (subscriber, shard) DO UPDATE SET pending = c.pending + EXCLUDED.pending
                 )
                 SELECT pg_notify('herald_work', s) FROM unnest($1::text[]) AS s",
            )
            .await
            .map_err(|e| db(t, e))?;
        // Pipelined: the statements go out together and the answers come back together.
        let ev_params: [&(dyn tokio_postgres::types::ToSql + Sync); 8] = [
            &ev_ids,
            &ev_types,
            &ev_payloads,
            &ev_times,
            &ev_okeys,
            &ev_ikeys,
            &ev_traces,
            &ev_has,
        ];
        let d_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&d_ids, &d_events, &d_subs, &d_times, &d_okeys];
        let events_insert = tx.execute(&s_ev, &ev_params);
        let deliveries_insert = tx.execute(&s_d, &d_params);
        let subs_insert = async {
            if new_subs.is_empty() {
                Ok(0)
            } else {
                tx.execute(&s_subs, &[&new_subs]).await
            }
        };
        let counts = async {
            if sub_names.is_empty() {
                Ok(Vec::new())
            } else {
                tx.query(&s_counts, &[&sub_names, &sub_counts]).await
            }
        };
        tokio::try_join!(events_insert, deliveries_insert, subs_insert, counts)
            .map_err(|e| db(t, e))?;
    }
    tx.commit().await.map_err(|e| db(t, e))?;
    inner
        .stats
        .enqueue_transactions
        .fetch_add(1, Ordering::Relaxed);

    let mut notify = Vec::with_capacity(sub_names.len());
    {
        let mut known = inner.known_subscribers.lock();
        for s in &sub_names {
            if let Ok(id) = SubscriberId::new(s) {
                known.insert(id.clone());
                notify.push(id);
            }
        }
    }

    // Receipts, in order.
    let mut receipts: Vec<EnqueueReceipt> = Vec::with_capacity(events.len());
    for plan in &plans {
        let r = match plan {
            Plan::New(id, deliveries) => EnqueueReceipt {
                event_id: *id,
                deliveries: deliveries.clone(),
                duplicate: false,
            },
            Plan::SameAs(j) => {
                let mut r = receipts
                    .get(*j)
                    .cloned()
                    .ok_or_else(|| StoreError::Backend("receipt order".into()))?;
                r.duplicate = true;
                r
            }
            Plan::Stored(key) => stored.get(key).cloned().ok_or_else(|| {
                StoreError::Unavailable(
                    "an idempotency key vanished while it was read (purged); try again".into(),
                )
            })?,
        };
        receipts.push(r);
    }
    Ok((receipts, notify))
}

pub(crate) fn uuid(bytes: [u8; 16]) -> Uuid {
    Uuid::from_bytes(bytes)
}
