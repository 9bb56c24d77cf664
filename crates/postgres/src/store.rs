//! [`DeliveryStore`] for [`PgStore`]: claims, reads, admin transitions and the purge.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use herald_core::{
    AttemptRecord, ClaimRequest, ClaimedDelivery, DeliveryDetails, DeliveryId, DeliveryPage,
    DeliveryRecord, DeliveryStatus, DeliveryStore, EnqueueReceipt, EventDelivery, EventDetails,
    EventId, EventPage, EventQuery, LeaseToken, ListQuery, NewEvent, Outcome, PurgeStats,
    QueueCounts, ReplayRequest, ReplayResult, RetryBudget, StoreError, StoreListener, SubscriberId,
    UnixMillis,
};
use tokio::sync::oneshot;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::enqueue::uuid;
use crate::error::db;
use crate::outcomes::Op;
use crate::{enqueue, ms, outcomes, unms, Inner, PgStore};

/// Default page size of `list` / `list_events`.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Rows changed per statement by redrive, replay and purge.
pub(crate) const CHUNK: i64 = 1000;
/// Advisory lock key of the retention purge ("herald-p").
pub(crate) const PURGE_LOCK: i64 = 0x6865_7261_6c64_2d70;

pub(crate) fn status_of(v: i16) -> DeliveryStatus {
    match v {
        0 => DeliveryStatus::Pending,
        1 => DeliveryStatus::InFlight,
        2 => DeliveryStatus::Delivered,
        _ => DeliveryStatus::Dead,
    }
}

fn status_code(s: DeliveryStatus) -> i16 {
    match s {
        DeliveryStatus::Pending => 0,
        DeliveryStatus::InFlight => 1,
        DeliveryStatus::Delivered => 2,
        DeliveryStatus::Dead => 3,
    }
}

fn did(u: Uuid) -> DeliveryId {
    DeliveryId::from_bytes(*u.as_bytes())
}

fn eid(u: Uuid) -> EventId {
    EventId::from_bytes(*u.as_bytes())
}

fn sub_of(s: &str) -> Result<SubscriberId, StoreError> {
    SubscriberId::new(s).map_err(|e| StoreError::Corrupt {
        key: s.chars().take(64).collect(),
        reason: e.to_string(),
    })
}

fn u32_of(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The columns `record` reads, joined with the event.
const RECORD_COLS: &str = "d.id, d.event_id, d.subscriber, e.event_type, d.status, d.attempts, \
     d.ready_at, d.created_at, d.updated_at, d.last_error, d.ordering_key";

fn record(row: &Row) -> Result<DeliveryRecord, StoreError> {
    let status = status_of(row.get(4));
    let ready: Option<i64> = row.get(6);
    Ok(DeliveryRecord {
        id: did(row.get(0)),
        event_id: eid(row.get(1)),
        subscriber: sub_of(row.get(2))?,
        event_type: row.get(3),
        status,
        attempts: u32_of(row.get(5)),
        next_attempt_at: if status == DeliveryStatus::Pending {
            ready.map(unms)
        } else {
            None
        },
        created_at: unms(row.get(7)),
        updated_at: unms(row.get(8)),
        last_error: row.get(9),
        ordering_key: row.get(10),
    })
}

fn attempt_of(row: &Row) -> AttemptRecord {
    AttemptRecord {
        attempt: u32_of(row.get(1)),
        at: unms(row.get(2)),
        status_code: row
            .get::<_, Option<i32>>(3)
            .and_then(|c| u16::try_from(c).ok()),
        error: row.get(4),
        duration_ms: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
    }
}

/// Attempt histories of `ids`, by delivery.
async fn histories(
    inner: &Inner,
    client: &deadpool_postgres::Object,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<AttemptRecord>>, StoreError> {
    let mut out: HashMap<Uuid, Vec<AttemptRecord>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let stmt = client
        .prepare_cached(
            "SELECT delivery_id, attempt, at, status_code, error, duration_ms
             FROM herald_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        )
        .await
        .map_err(|e| db(&inner.target, e))?;
    for row in client
        .query(&stmt, &[&ids])
        .await
        .map_err(|e| db(&inner.target, e))?
    {
        out.entry(row.get(0)).or_default().push(attempt_of(&row));
    }
    Ok(out)
}

/// The claim: lease the due rows (pending and due, or leased with an expired lease), at the
/// head of their key's line when ordered, `FOR UPDATE SKIP LOCKED` inside the CTE with the
/// LIMIT; update the counts; return each with its event.
const CLAIM_SQL: &str = "
WITH picked AS (
  SELECT d.id, d.status AS old_status, d.ready_at AS old_ready
  FROM herald_deliveries d
  WHERE d.subscriber = $1 AND d.status < 2 AND d.ready_at <= $2
    AND (d.ordering_key IS NULL OR d.status = 1 OR (
          NOT EXISTS (
            SELECT 1 FROM herald_deliveries p
            WHERE p.subscriber = d.subscriber AND p.ordering_key = d.ordering_key
              AND p.status < 2 AND p.accept_seq < d.accept_seq)
          AND NOT EXISTS (
            SELECT 1 FROM herald_deliveries p
            WHERE p.subscriber = d.subscriber AND p.ordering_key = d.ordering_key
              AND p.status = 1)))
  ORDER BY d.ready_at, d.id
  LIMIT $3
  FOR UPDATE OF d SKIP LOCKED
),
upd AS (
  UPDATE herald_deliveries d
  SET status = 1, ready_at = $4, lease_token = nextval('herald_lease_seq'), lease_node = $5
  FROM picked
  WHERE d.id = picked.id
  RETURNING d.id, d.event_id, d.attempts, d.created_at, d.lease_token, d.budget_first,
            d.budget_since, d.ordering_key, picked.old_status, picked.old_ready
),
cnt AS (
  INSERT INTO herald_counts AS c (subscriber, shard, pending, in_flight)
  SELECT $1, (pg_backend_pid() % 16)::int2, -x.n, x.n
  FROM (SELECT count(*) AS n FROM upd WHERE old_status = 0) x
  WHERE x.n > 0
  ON CONFLICT (subscriber, shard) DO UPDATE SET
    pending = c.pending + EXCLUDED.pending, in_flight = c.in_flight + EXCLUDED.in_flight
)
SELECT u.id, u.event_id, u.attempts, u.created_at, u.lease_token, u.budget_first,
       u.budget_since, u.ordering_key, u.old_ready, e.event_type, e.payload, e.traceparent
FROM upd u JOIN herald_events e ON e.id = u.event_id
ORDER BY u.old_ready, u.id";

impl PgStore {
    /// Keys whose head (the earliest unfinished delivery of the line) has failed at least once,
    /// per subscriber. Reads the unfinished ordered rows (the line index), once per scrape.
    async fn blocked_keys_inner(&self) -> Result<Vec<(SubscriberId, u64)>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(
                "SELECT h.subscriber, count(*) FILTER (WHERE h.attempts > 0) FROM (
                   SELECT DISTINCT ON (subscriber, ordering_key) subscriber, attempts
                   FROM herald_deliveries
                   WHERE ordering_key IS NOT NULL AND status < 2
                   ORDER BY subscriber, ordering_key, accept_seq
                 ) h GROUP BY h.subscriber",
            )
            .await
            .map_err(|e| db(t, e))?;
        let rows = client.query(&stmt, &[]).await.map_err(|e| db(t, e))?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let sub: String = row.get(0);
                let n: i64 = row.get(1);
                SubscriberId::new(&sub)
                    .ok()
                    .map(|s| (s, u64::try_from(n).unwrap_or(0)))
            })
            .collect())
    }
}

impl PgStore {
    async fn claim_inner(
        &self,
        request: ClaimRequest<'_>,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let inner = &self.inner;
        let t = &inner.target;
        if request.max == 0 || request.cap == 0 {
            return Ok(Vec::new());
        }
        let sub = request.subscriber.as_str();
        let now = ms(request.now);
        let mut client = inner.conn().await?;
        let tx = client.transaction().await.map_err(|e| db(t, e))?;
        // The subscriber's turn: one claimer at a time per subscriber, cluster-wide; a busy
        // subscriber is skipped, never waited on.
        let turn = tx
            .prepare_cached("SELECT 1 FROM herald_subscribers WHERE id = $1 FOR UPDATE SKIP LOCKED")
            .await
            .map_err(|e| db(t, e))?;
        if tx
            .query_opt(&turn, &[&sub])
            .await
            .map_err(|e| db(t, e))?
            .is_none()
        {
            // Ended here and now, not by dropping (a dropped transaction's ROLLBACK goes out
            // asynchronously, and the next claim could find the turn still taken).
            tx.commit().await.map_err(|e| db(t, e))?;
            return Ok(Vec::new());
        }
        // The leases out now, counted in a statement of its own, after the turn was taken: its
        // snapshot sees every lease committed by earlier turn holders.
        let count = tx
            .prepare_cached(
                "SELECT count(*) FROM herald_deliveries
                 WHERE subscriber = $1 AND status = 1 AND ready_at > $2",
            )
            .await
            .map_err(|e| db(t, e))?;
        let out: i64 = tx
            .query_one(&count, &[&sub, &now])
            .await
            .map_err(|e| db(t, e))?
            .get(0);
        let room = i64::from(request.cap)
            .saturating_sub(out)
            .min(i64::try_from(request.max).unwrap_or(i64::MAX));
        if room <= 0 {
            // Give the turn back at once (see above).
            tx.commit().await.map_err(|e| db(t, e))?;
            return Ok(Vec::new());
        }
        let claim = tx.prepare_cached(CLAIM_SQL).await.map_err(|e| db(t, e))?;
        let rows = tx
            .query(
                &claim,
                &[&sub, &now, &room, &ms(request.lease_until), &inner.node_id],
            )
            .await
            .map_err(|e| db(t, e))?;
        tx.commit().await.map_err(|e| db(t, e))?;
        rows.iter()
            .map(|row| {
                let ordering_key: Option<String> = row.get(7);
                let traceparent: Option<String> = row.get(11);
                let payload: Vec<u8> = row.get(10);
                Ok(ClaimedDelivery {
                    id: did(row.get(0)),
                    event_id: eid(row.get(1)),
                    subscriber: request.subscriber.clone(),
                    event_type: row.get(9),
                    attempt: u32_of(row.get(2)).saturating_add(1),
                    created_at: unms(row.get(3)),
                    payload: Bytes::from(payload),
                    lease: LeaseToken(u64::try_from(row.get::<_, i64>(4)).unwrap_or(0)),
                    lease_until: request.lease_until,
                    budget: RetryBudget {
                        first_attempt: u32_of(row.get(5)),
                        since: unms(row.get(6)),
                    },
                    ordering_key: ordering_key.map(Arc::from),
                    traceparent: traceparent.map(Arc::from),
                })
            })
            .collect()
    }

    async fn send_outcome(&self, op: Op) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.outcome_tx
            .send(outcomes::Job { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Moves rows chosen by `select_sql` (a `SELECT id ... FOR UPDATE SKIP LOCKED` over
    /// `herald_deliveries d` with the parameters given) from dead or delivered to pending, due
    /// at `now`, in one statement with the counts and the wake-up. Returns how many moved.
    async fn revive(
        &self,
        select_sql: &str,
        fresh_budget: bool,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        now_param: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let t = &self.inner.target;
        let sql = format!(
            "WITH picked AS ({select_sql}),
             upd AS (
               UPDATE herald_deliveries d SET status = 0, ready_at = ${now_param},
                 updated_at = ${now_param}, finished_at = NULL
                 {budget}
               FROM picked WHERE d.id = picked.id
               RETURNING d.id, d.subscriber, picked.old_status
             ),
             cnt AS (
               INSERT INTO herald_counts AS c (subscriber, shard, pending, delivered, dead)
               SELECT subscriber, (pg_backend_pid() % 16)::int2, count(*),
                      -count(*) FILTER (WHERE old_status = 2),
                      -count(*) FILTER (WHERE old_status = 3)
               FROM upd GROUP BY subscriber ORDER BY subscriber
               ON CONFLICT (subscriber, shard) DO UPDATE SET pending = c.pending + EXCLUDED.pending,
                 delivered = c.delivered + EXCLUDED.delivered, dead = c.dead + EXCLUDED.dead
             ),
             ntf AS (
               SELECT count(*) AS n FROM (
                 SELECT pg_notify('herald_work', s) FROM (SELECT DISTINCT subscriber AS s FROM upd) x
               ) y
             )
             SELECT upd.id, upd.subscriber, ntf.n FROM upd, ntf",
            budget = if fresh_budget {
                format!(", budget_first = d.attempts + 1, budget_since = ${now_param}")
            } else {
                String::new()
            }
        );
        let client = self.inner.conn().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(|e| db(t, e))?;
        let rows = client.query(&stmt, params).await.map_err(|e| db(t, e))?;
        let mut subs: Vec<SubscriberId> = rows
            .iter()
            .filter_map(|r| SubscriberId::new(r.get::<_, &str>(1)).ok())
            .collect();
        subs.sort();
        subs.dedup();
        self.inner.tell_work(subs.iter());
        Ok(rows)
    }

    async fn get_record(
        &self,
        client: &deadpool_postgres::Object,
        id: DeliveryId,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let t = &self.inner.target;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLS} FROM herald_deliveries d
                 JOIN herald_events e ON e.id = d.event_id WHERE d.id = $1"
            ))
            .await
            .map_err(|e| db(t, e))?;
        client
            .query_opt(&stmt, &[&uuid(id.to_bytes())])
            .await
            .map_err(|e| db(t, e))?
            .map(|r| record(&r))
            .transpose()
    }

    async fn purge_inner(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        let t = &self.inner.target;
        let cutoff = ms(cutoff);
        let mut stats = PurgeStats::default();
        let mut client = self.inner.conn().await?;
        // Finished deliveries with their history and counts, then the events they leave empty.
        let deliveries_sql = "
            WITH doomed AS (
              SELECT id FROM herald_deliveries
              WHERE status >= 2 AND finished_at < $1
              ORDER BY finished_at LIMIT $2
              FOR UPDATE SKIP LOCKED
            ),
            gone AS (
              DELETE FROM herald_deliveries d USING doomed WHERE d.id = doomed.id
              RETURNING d.id, d.subscriber, d.status, d.event_id
            ),
            att AS (DELETE FROM herald_attempts a USING gone WHERE a.delivery_id = gone.id),
            cnt AS (
              INSERT INTO herald_counts AS c (subscriber, shard, delivered, dead)
              SELECT subscriber, (pg_backend_pid() % 16)::int2,
                     -count(*) FILTER (WHERE status = 2), -count(*) FILTER (WHERE status = 3)
              FROM gone GROUP BY subscriber ORDER BY subscriber
              ON CONFLICT (subscriber, shard) DO UPDATE SET
                delivered = c.delivered + EXCLUDED.delivered, dead = c.dead + EXCLUDED.dead
            ),
            ev AS (
              DELETE FROM herald_events e
              WHERE e.id IN (SELECT DISTINCT event_id FROM gone)
                AND NOT EXISTS (SELECT 1 FROM herald_deliveries d
                                WHERE d.event_id = e.id AND d.id NOT IN (SELECT id FROM gone))
              RETURNING e.id
            )
            SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM ev)";
        let undelivered_sql = "
            DELETE FROM herald_events WHERE id IN (
              SELECT id FROM herald_events WHERE NOT has_deliveries AND received_at < $1
              LIMIT $2)";
        let keys_sql = "
            DELETE FROM herald_idempotency WHERE key IN (
              SELECT key FROM herald_idempotency WHERE created_at < $1 LIMIT $2)";
        for (step, sql) in [deliveries_sql, undelivered_sql, keys_sql]
            .into_iter()
            .enumerate()
        {
            loop {
                // One node at a time, batch by batch: the lock is the batch's transaction's, so
                // it is never held across batches or left behind by a dead node.
                let tx = client.transaction().await.map_err(|e| db(t, e))?;
                let locked: bool = tx
                    .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PURGE_LOCK])
                    .await
                    .map_err(|e| db(t, e))?
                    .get(0);
                if !locked {
                    tx.commit().await.map_err(|e| db(t, e))?;
                    return Ok(stats);
                }
                let stmt = tx.prepare_cached(sql).await.map_err(|e| db(t, e))?;
                let n = if step == 0 {
                    let row = tx
                        .query_one(&stmt, &[&cutoff, &CHUNK])
                        .await
                        .map_err(|e| db(t, e))?;
                    let (d, e): (i64, i64) = (row.get(0), row.get(1));
                    stats.deliveries += u64::try_from(d).unwrap_or(0);
                    stats.events += u64::try_from(e).unwrap_or(0);
                    u64::try_from(d).unwrap_or(0)
                } else {
                    let n = tx
                        .execute(&stmt, &[&cutoff, &CHUNK])
                        .await
                        .map_err(|e| db(t, e))?;
                    if step == 1 {
                        stats.events += n;
                    } else {
                        stats.idempotency_keys += n;
                    }
                    n
                };
                tx.commit().await.map_err(|e| db(t, e))?;
                if n < CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(stats)
    }
}

#[async_trait::async_trait]
impl DeliveryStore for PgStore {
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.enqueue_tx
            .send(enqueue::Job { events, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn sync(&self) -> Result<(), StoreError> {
        // Every write commits with synchronous_commit = on before it is answered: there is
        // nothing left to flush. The round trip checks the database is there.
        let client = self.inner.conn().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| db(&self.inner.target, e))?;
        Ok(())
    }

    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedDelivery>, StoreError> {
        self.claim_inner(request).await
    }

    async fn blocked_keys(&self) -> Result<Vec<(SubscriberId, u64)>, StoreError> {
        self.blocked_keys_inner().await
    }

    async fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(
                "SELECT min(d.ready_at) FROM herald_deliveries d
                 WHERE d.subscriber = $1 AND d.status < 2
                   AND (d.ordering_key IS NULL OR d.status = 1 OR (
                     NOT EXISTS (
                       SELECT 1 FROM herald_deliveries p
                       WHERE p.subscriber = d.subscriber AND p.ordering_key = d.ordering_key
                         AND p.status < 2 AND p.accept_seq < d.accept_seq)
                     AND NOT EXISTS (
                       SELECT 1 FROM herald_deliveries p
                       WHERE p.subscriber = d.subscriber AND p.ordering_key = d.ordering_key
                         AND p.status = 1)))",
            )
            .await
            .map_err(|e| db(t, e))?;
        let row = client
            .query_one(&stmt, &[&subscriber.as_str()])
            .await
            .map_err(|e| db(t, e))?;
        Ok(row.get::<_, Option<i64>>(0).map(unms))
    }

    async fn finish_attempt(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        self.send_outcome(Op::Finish {
            id,
            lease,
            attempt,
            outcome,
        })
        .await
    }

    async fn release(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        due: UnixMillis,
    ) -> Result<(), StoreError> {
        self.send_outcome(Op::Release { id, lease, due }).await
    }

    async fn retry_dead(
        &self,
        id: DeliveryId,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        let key = uuid(id.to_bytes());
        let now_ms = ms(now);
        let rows = self
            .revive(
                "SELECT id, status AS old_status FROM herald_deliveries
                 WHERE id = $1 AND status = 3 FOR UPDATE",
                false,
                &[&key, &now_ms],
                2,
            )
            .await?;
        let client = self.inner.conn().await?;
        match self.get_record(&client, id).await? {
            None => Err(StoreError::NotFound(id)),
            Some(r) if !rows.is_empty() => Ok(r),
            Some(r) => Err(StoreError::InvalidState {
                id,
                expected: DeliveryStatus::Dead,
                actual: r.status,
            }),
        }
    }

    async fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError> {
        let now_ms = ms(now);
        let mut moved = 0u64;
        loop {
            let rows = self
                .revive(
                    "SELECT id, status AS old_status FROM herald_deliveries
                     WHERE subscriber = $1 AND status = 3 ORDER BY id LIMIT $3
                     FOR UPDATE SKIP LOCKED",
                    false,
                    &[&subscriber.as_str(), &now_ms, &CHUNK],
                    2,
                )
                .await?;
            moved += rows.len() as u64;
            if (rows.len() as i64) < CHUNK {
                return Ok(moved);
            }
        }
    }

    async fn replay(&self, request: &ReplayRequest) -> Result<ReplayResult, StoreError> {
        let t = &self.inner.target;
        // No statuses: dead ones (the API's default).
        let statuses: Vec<i16> = if request.statuses.is_empty() {
            vec![status_code(DeliveryStatus::Dead)]
        } else {
            request
                .statuses
                .iter()
                .copied()
                .filter(|s| matches!(s, DeliveryStatus::Delivered | DeliveryStatus::Dead))
                .map(status_code)
                .collect()
        };
        if statuses.is_empty() {
            return Ok(ReplayResult::default());
        }
        let since = ms(request.since);
        let until = request.until.map(ms).unwrap_or(i64::MAX);
        let types: Vec<&str> = request.event_types.iter().map(String::as_str).collect();
        let filter = "d.subscriber = $1 AND d.status = ANY($2) AND d.created_at >= $3
                      AND d.created_at < $4
                      AND (cardinality($5::text[]) = 0 OR EXISTS (
                            SELECT 1 FROM herald_events e
                            WHERE e.id = d.event_id AND e.event_type = ANY($5)))";
        let sub = request.subscriber.as_str();
        let matched: i64 = {
            let client = self.inner.conn().await?;
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT count(*) FROM herald_deliveries d WHERE {filter}"
                ))
                .await
                .map_err(|e| db(t, e))?;
            client
                .query_one(&stmt, &[&sub, &statuses, &since, &until, &types])
                .await
                .map_err(|e| db(t, e))?
                .get(0)
        };
        let matched = u64::try_from(matched).unwrap_or(0);
        if request.dry_run {
            return Ok(ReplayResult {
                matched,
                replayed: 0,
            });
        }
        let now = ms(request.now);
        let mut replayed = 0u64;
        let mut cursor = Uuid::nil();
        loop {
            let rows = self
                .revive(
                    &format!(
                        "SELECT d.id, d.status AS old_status FROM herald_deliveries d
                         WHERE {filter} AND d.id > $7 ORDER BY d.id LIMIT $8
                         FOR UPDATE SKIP LOCKED"
                    ),
                    true,
                    &[
                        &sub, &statuses, &since, &until, &types, &now, &cursor, &CHUNK,
                    ],
                    6,
                )
                .await?;
            replayed += rows.len() as u64;
            match rows.iter().map(|r| r.get::<_, Uuid>(0)).max() {
                Some(last) if (rows.len() as i64) >= CHUNK => cursor = last,
                _ => break,
            }
        }
        Ok(ReplayResult { matched, replayed })
    }

    async fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError> {
        let client = self.inner.conn().await?;
        let Some(record) = self.get_record(&client, id).await? else {
            return Ok(None);
        };
        let key = uuid(id.to_bytes());
        let mut h = histories(&self.inner, &client, &[key]).await?;
        Ok(Some(DeliveryDetails {
            record,
            attempts: h.remove(&key).unwrap_or_default(),
        }))
    }

    async fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError> {
        let t = &self.inner.target;
        let limit = match query.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {RECORD_COLS} FROM herald_deliveries d
                 JOIN herald_events e ON e.id = d.event_id
                 WHERE ($1::text IS NULL OR d.subscriber = $1)
                   AND ($2::int2 IS NULL OR d.status = $2)
                   AND ($3::uuid IS NULL OR d.id > $3)
                 ORDER BY d.id LIMIT $4"
            ))
            .await
            .map_err(|e| db(t, e))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &query.subscriber.as_ref().map(SubscriberId::as_str),
                    &query.status.map(status_code),
                    &query.cursor.map(|c| uuid(c.to_bytes())),
                    &(limit as i64 + 1),
                ],
            )
            .await
            .map_err(|e| db(t, e))?;
        let more = rows.len() > limit;
        let records = rows
            .iter()
            .take(limit)
            .map(record)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<Uuid> = records.iter().map(|r| uuid(r.id.to_bytes())).collect();
        let mut h = histories(&self.inner, &client, &ids).await?;
        let next_cursor = if more {
            records.last().map(|r| r.id)
        } else {
            None
        };
        Ok(DeliveryPage {
            deliveries: records
                .into_iter()
                .map(|record| {
                    let attempts = h.remove(&uuid(record.id.to_bytes())).unwrap_or_default();
                    DeliveryDetails { record, attempts }
                })
                .collect(),
            next_cursor,
        })
    }

    async fn get_event(&self, id: EventId) -> Result<Option<EventDetails>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let key = uuid(id.to_bytes());
        let ev = client
            .prepare_cached(
                "SELECT event_type, received_at, ordering_key, idempotency_key, traceparent, payload
                 FROM herald_events WHERE id = $1",
            )
            .await
            .map_err(|e| db(t, e))?;
        let ds = client
            .prepare_cached(
                "SELECT id, subscriber, status FROM herald_deliveries WHERE event_id = $1 ORDER BY id",
            )
            .await
            .map_err(|e| db(t, e))?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
        let (event, deliveries) =
            tokio::try_join!(client.query_opt(&ev, &params), client.query(&ds, &params))
                .map_err(|e| db(t, e))?;
        let Some(row) = event else {
            return Ok(None);
        };
        Ok(Some(EventDetails {
            id,
            event_type: row.get(0),
            received_at: unms(row.get(1)),
            ordering_key: row.get(2),
            idempotency_key: row.get(3),
            traceparent: row.get(4),
            payload: Bytes::from(row.get::<_, Vec<u8>>(5)),
            deliveries: deliveries
                .iter()
                .map(|r| {
                    Ok(EventDelivery {
                        id: did(r.get(0)),
                        subscriber: sub_of(r.get(1))?,
                        status: status_of(r.get(2)),
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        }))
    }

    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        let t = &self.inner.target;
        let limit = match query.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, event_type, received_at, ordering_key, idempotency_key, traceparent,
                        payload
                 FROM herald_events
                 WHERE ($1::int8 IS NULL OR received_at >= $1)
                   AND ($2::int8 IS NULL OR received_at < $2)
                   AND ($3::text IS NULL OR event_type = $3)
                   AND ($4::uuid IS NULL OR id > $4)
                 ORDER BY id LIMIT $5",
            )
            .await
            .map_err(|e| db(t, e))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &query.since.map(ms),
                    &query.until.map(ms),
                    &query.event_type.as_deref(),
                    &query.cursor.map(|c| uuid(c.to_bytes())),
                    &(limit as i64 + 1),
                ],
            )
            .await
            .map_err(|e| db(t, e))?;
        let more = rows.len() > limit;
        let events: Vec<EventDetails> = rows
            .iter()
            .take(limit)
            .map(|row| EventDetails {
                id: eid(row.get(0)),
                event_type: row.get(1),
                received_at: unms(row.get(2)),
                ordering_key: row.get(3),
                idempotency_key: row.get(4),
                traceparent: row.get(5),
                payload: Bytes::from(row.get::<_, Vec<u8>>(6)),
                deliveries: Vec::new(),
            })
            .collect();
        let next_cursor = if more {
            events.last().map(|e| e.id)
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    async fn counts(&self, subscriber: &SubscriberId) -> Result<QueueCounts, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(
                // The sum of the subscriber's shards (see migration 3).
                "SELECT sum(pending)::int8, sum(in_flight)::int8, sum(delivered)::int8,
                        sum(dead)::int8
                 FROM herald_counts WHERE subscriber = $1 HAVING count(*) > 0",
            )
            .await
            .map_err(|e| db(t, e))?;
        Ok(client
            .query_opt(&stmt, &[&subscriber.as_str()])
            .await
            .map_err(|e| db(t, e))?
            .map(|r| counts_of(&r, 0))
            .unwrap_or_default())
    }

    async fn all_counts(&self) -> Result<Vec<(SubscriberId, QueueCounts)>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(
                "SELECT subscriber, sum(pending)::int8, sum(in_flight)::int8,
                        sum(delivered)::int8, sum(dead)::int8
                 FROM herald_counts GROUP BY subscriber ORDER BY subscriber",
            )
            .await
            .map_err(|e| db(t, e))?;
        client
            .query(&stmt, &[])
            .await
            .map_err(|e| db(t, e))?
            .iter()
            .map(|r| Ok((sub_of(r.get(0))?, counts_of(r, 1))))
            .collect()
    }

    async fn set_paused(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let t = &self.inner.target;
        let mut client = self.inner.conn().await?;
        let tx = client.transaction().await.map_err(|e| db(t, e))?;
        let set = tx
            .prepare_cached(
                "INSERT INTO herald_subscribers (id, paused_reason) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET paused_reason = EXCLUDED.paused_reason",
            )
            .await
            .map_err(|e| db(t, e))?;
        tx.execute(&set, &[&subscriber.as_str(), &reason])
            .await
            .map_err(|e| db(t, e))?;
        tx.execute(
            "SELECT pg_notify('herald_paused', $1)",
            &[&subscriber.as_str()],
        )
        .await
        .map_err(|e| db(t, e))?;
        tx.commit().await.map_err(|e| db(t, e))?;
        if let Some(l) = self.inner.listener() {
            l.subscriber_changed(subscriber);
        }
        Ok(())
    }

    async fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, paused_reason FROM herald_subscribers
                 WHERE paused_reason IS NOT NULL ORDER BY id",
            )
            .await
            .map_err(|e| db(t, e))?;
        client
            .query(&stmt, &[])
            .await
            .map_err(|e| db(t, e))?
            .iter()
            .map(|r| Ok((sub_of(r.get(0))?, r.get(1))))
            .collect()
    }

    async fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError> {
        self.purge_inner(cutoff).await
    }

    async fn size_on_disk(&self) -> Result<Option<u64>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(|e| db(t, e))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).ok())
    }

    fn set_listener(&self, listener: Arc<dyn StoreListener>) {
        *self.inner.listener.write() = Some(listener);
    }
}

fn counts_of(r: &Row, from: usize) -> QueueCounts {
    let n = |i: usize| u64::try_from(r.get::<_, i64>(from + i)).unwrap_or(0);
    QueueCounts {
        pending: n(0),
        in_flight: n(1),
        delivered: n(2),
        dead: n(3),
    }
}
