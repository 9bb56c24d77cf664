//! Batched, fenced outcomes (`finish_attempt`, `release`), kept in memory while the database is
//! unreachable.
//!
//! One task takes every queued outcome and writes them in one transaction: one statement for the
//! attempts' outcomes (update, history and counts together), one for the releases. A row changes
//! only if its lease token is still the delivery's current one (fencing); the others are
//! answered `LeaseLost` (or `NotFound`).
//!
//! When the database cannot be reached, the outcomes are kept (up to [`MAX_BUFFERED`]) and the
//! callers are answered `Ok`: the task writes them when the database is back, oldest first,
//! before anything newer. Fencing makes that safe: an outcome whose lease expired meanwhile
//! changes nothing. If the process dies first, the deliveries are leased and are sent again once
//! their leases expire (at least once).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{
    AttemptRecord, DeliveryId, LeaseToken, Outcome, StoreError, SubscriberId, UnixMillis,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use crate::enqueue::uuid;
use crate::error::{db, dup};
use crate::{ms, Inner};

/// Most outcomes kept in memory while the database is unreachable.
pub(crate) const MAX_BUFFERED: usize = 100_000;
/// Most outcomes written in one flush.
const MAX_FLUSH: usize = 2_000;
/// How often a buffered backlog is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Finish {
        id: DeliveryId,
        lease: LeaseToken,
        attempt: AttemptRecord,
        outcome: Outcome,
    },
    Release {
        id: DeliveryId,
        lease: LeaseToken,
        due: UnixMillis,
    },
}

impl Op {
    fn id(&self) -> DeliveryId {
        match self {
            Op::Finish { id, .. } | Op::Release { id, .. } => *id,
        }
    }
}

pub(crate) struct Job {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<(), StoreError>>,
}

pub(crate) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut backlog: VecDeque<Op> = VecDeque::new();
    loop {
        if backlog.is_empty() {
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut jobs = vec![first];
            while jobs.len() < MAX_FLUSH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let ops: Vec<Op> = jobs.iter().map(|j| j.op.clone()).collect();
            match flush(&inner, &ops).await {
                Ok(results) => {
                    for (job, r) in jobs.into_iter().zip(results) {
                        let _ = job.reply.send(r);
                    }
                }
                Err(StoreError::Unavailable(reason)) => {
                    warn!(
                        %reason,
                        outcomes = jobs.len(),
                        "database unreachable: outcomes kept in memory until it is back"
                    );
                    for job in jobs {
                        buffer(&inner, &mut backlog, job);
                    }
                }
                Err(e) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(dup(&e)));
                    }
                }
            }
            continue;
        }
        // A backlog: write it (oldest first) before anything newer.
        let n = backlog.len().min(MAX_FLUSH);
        let chunk: Vec<Op> = backlog.iter().take(n).cloned().collect();
        match flush(&inner, &chunk).await {
            Ok(results) => {
                backlog.drain(..n);
                inner
                    .stats
                    .outcomes_buffered
                    .store(backlog.len() as u64, Ordering::Relaxed);
                let refused = results.iter().filter(|r| r.is_err()).count();
                info!(
                    written = n - refused,
                    refused, "buffered outcomes written after the database came back"
                );
            }
            Err(StoreError::Unavailable(_)) => {
                // Keep taking new outcomes into the backlog while waiting.
                let deadline = tokio::time::sleep(RETRY_EVERY);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        job = rx.recv() => match job {
                            Some(job) => buffer(&inner, &mut backlog, job),
                            None => return,
                        },
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, outcomes = n, "buffered outcomes could not be written; dropped (their deliveries are sent again when their leases expire)");
                backlog.drain(..n);
                inner
                    .stats
                    .outcomes_buffered
                    .store(backlog.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

fn buffer(inner: &Inner, backlog: &mut VecDeque<Op>, job: Job) {
    if backlog.len() >= MAX_BUFFERED {
        let _ = job.reply.send(Err(StoreError::Unavailable(format!(
            "database unreachable and {MAX_BUFFERED} outcomes already waiting for it"
        ))));
        return;
    }
    backlog.push_back(job.op);
    inner
        .stats
        .outcomes_buffered
        .store(backlog.len() as u64, Ordering::Relaxed);
    let _ = job.reply.send(Ok(()));
}

/// Writes `ops` in one transaction; one result per op. An op on a delivery already changed
/// earlier in the same flush is written in a second round.
async fn flush(inner: &Inner, ops: &[Op]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut results: Vec<Option<Result<(), StoreError>>> = ops.iter().map(|_| None).collect();
    let mut remaining: Vec<usize> = (0..ops.len()).collect();
    while !remaining.is_empty() {
        let mut seen = HashSet::new();
        let (now, later): (Vec<usize>, Vec<usize>) =
            remaining.iter().partition(|&&i| seen.insert(ops[i].id()));
        let round: Vec<&Op> = now.iter().map(|&i| &ops[i]).collect();
        let out = flush_round(inner, &round).await?;
        for (i, r) in now.into_iter().zip(out) {
            results[i] = Some(r);
        }
        remaining = later;
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

const FINISH_SQL: &str = "
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int2[], $4::int8[], $5::text[], $6::int8[],
                       $7::int8[], $8::int4[], $9::text[], $10::int8[])
    AS t(id, token, new_status, ready_at, last_error, ended, at, status_code, error, duration_ms)
),
upd AS (
  UPDATE herald_deliveries d SET
    status = i.new_status,
    ready_at = i.ready_at,
    lease_node = NULL,
    attempts = d.attempts + 1,
    last_error = i.last_error,
    updated_at = i.ended,
    finished_at = CASE WHEN i.new_status >= 2 THEN GREATEST(i.ended, d.created_at) END
  FROM input i
  WHERE d.id = i.id AND d.status = 1 AND d.lease_token = i.token
  RETURNING d.id, d.subscriber, d.attempts, d.status
),
att AS (
  INSERT INTO herald_attempts (delivery_id, attempt, at, status_code, error, duration_ms)
  SELECT u.id, u.attempts, i.at, i.status_code, i.error, i.duration_ms
  FROM upd u JOIN input i ON i.id = u.id
),
cnt AS (
  INSERT INTO herald_counts AS c (subscriber, shard, pending, in_flight, delivered, dead)
  SELECT subscriber, (pg_backend_pid() % 16)::int2, count(*) FILTER (WHERE status = 0),
         -count(*), count(*) FILTER (WHERE status = 2), count(*) FILTER (WHERE status = 3)
  FROM upd GROUP BY subscriber ORDER BY subscriber
  ON CONFLICT (subscriber, shard) DO UPDATE SET
    pending = c.pending + EXCLUDED.pending, in_flight = c.in_flight + EXCLUDED.in_flight,
    delivered = c.delivered + EXCLUDED.delivered, dead = c.dead + EXCLUDED.dead
)
SELECT id FROM upd";

const RELEASE_SQL: &str = "
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[]) AS t(id, token, due, now)
),
upd AS (
  UPDATE herald_deliveries d SET status = 0, ready_at = i.due, lease_node = NULL,
    updated_at = i.now
  FROM input i
  WHERE d.id = i.id AND d.status = 1 AND d.lease_token = i.token
  RETURNING d.id, d.subscriber
),
cnt AS (
  INSERT INTO herald_counts AS c (subscriber, shard, pending, in_flight)
  SELECT subscriber, (pg_backend_pid() % 16)::int2, count(*), -count(*)
  FROM upd GROUP BY subscriber ORDER BY subscriber
  ON CONFLICT (subscriber, shard) DO UPDATE SET
    pending = c.pending + EXCLUDED.pending, in_flight = c.in_flight + EXCLUDED.in_flight
),
ntf AS (
  SELECT count(*) AS n FROM (
    SELECT pg_notify('herald_work', s) FROM (SELECT DISTINCT subscriber AS s FROM upd) x
  ) y
)
SELECT upd.id, upd.subscriber, ntf.n FROM upd, ntf";

/// One transaction for ops on distinct deliveries.
async fn flush_round(
    inner: &Inner,
    ops: &[&Op],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let t = &inner.target;
    let mut f_id = Vec::new();
    let mut f_token = Vec::new();
    let mut f_status: Vec<i16> = Vec::new();
    let mut f_ready: Vec<Option<i64>> = Vec::new();
    let mut f_last: Vec<Option<&str>> = Vec::new();
    let mut f_ended = Vec::new();
    let mut f_at = Vec::new();
    let mut f_code: Vec<Option<i32>> = Vec::new();
    let mut f_err: Vec<Option<&str>> = Vec::new();
    let mut f_dur = Vec::new();
    let mut r_id = Vec::new();
    let mut r_token = Vec::new();
    let mut r_due = Vec::new();
    let mut r_now = Vec::new();
    let now = ms(UnixMillis::now());
    for op in ops {
        match op {
            Op::Finish {
                id,
                lease,
                attempt,
                outcome,
            } => {
                f_id.push(uuid(id.to_bytes()));
                f_token.push(token(*lease));
                let (status, ready) = match outcome {
                    Outcome::Delivered => (2i16, None),
                    Outcome::Dead => (3, None),
                    Outcome::RetryAt(t) => (0, Some(ms(*t))),
                };
                f_status.push(status);
                f_ready.push(ready);
                f_last.push(match outcome {
                    Outcome::Delivered => None,
                    _ => attempt.error.as_deref(),
                });
                let ended = attempt.at.0.saturating_add(attempt.duration_ms);
                f_ended.push(ms(UnixMillis(ended)));
                f_at.push(ms(attempt.at));
                f_code.push(attempt.status_code.map(i32::from));
                f_err.push(attempt.error.as_deref());
                f_dur.push(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX));
            }
            Op::Release { id, lease, due } => {
                r_id.push(uuid(id.to_bytes()));
                r_token.push(token(*lease));
                r_due.push(ms(*due));
                r_now.push(now);
            }
        }
    }
    let mut client = inner.conn().await?;
    let tx = client.transaction().await.map_err(|e| db(t, e))?;
    let mut done: HashSet<Uuid> = HashSet::new();
    let mut released: Vec<SubscriberId> = Vec::new();
    if !f_id.is_empty() {
        let stmt = tx.prepare_cached(FINISH_SQL).await.map_err(|e| db(t, e))?;
        for row in tx
            .query(
                &stmt,
                &[
                    &f_id, &f_token, &f_status, &f_ready, &f_last, &f_ended, &f_at, &f_code,
                    &f_err, &f_dur,
                ],
            )
            .await
            .map_err(|e| db(t, e))?
        {
            done.insert(row.get(0));
        }
    }
    if !r_id.is_empty() {
        let stmt = tx.prepare_cached(RELEASE_SQL).await.map_err(|e| db(t, e))?;
        for row in tx
            .query(&stmt, &[&r_id, &r_token, &r_due, &r_now])
            .await
            .map_err(|e| db(t, e))?
        {
            done.insert(row.get(0));
            if let Ok(s) = SubscriberId::new(row.get::<_, &str>(1)) {
                released.push(s);
            }
        }
    }
    // Why the others changed nothing.
    let refused: Vec<Uuid> = ops
        .iter()
        .map(|op| uuid(op.id().to_bytes()))
        .filter(|id| !done.contains(id))
        .collect();
    let mut state: HashMap<Uuid, i16> = HashMap::new();
    if !refused.is_empty() {
        let stmt = tx
            .prepare_cached("SELECT id, status FROM herald_deliveries WHERE id = ANY($1)")
            .await
            .map_err(|e| db(t, e))?;
        for row in tx.query(&stmt, &[&refused]).await.map_err(|e| db(t, e))? {
            state.insert(row.get(0), row.get(1));
        }
    }
    tx.commit().await.map_err(|e| db(t, e))?;
    inner.stats.outcome_flushes.fetch_add(1, Ordering::Relaxed);
    released.sort();
    released.dedup();
    inner.tell_work(released.iter());

    Ok(ops
        .iter()
        .map(|op| {
            let id = op.id();
            let key = uuid(id.to_bytes());
            if done.contains(&key) {
                return Ok(());
            }
            match state.get(&key) {
                None => Err(StoreError::NotFound(id)),
                // Leased under another token, or not leased (finished, released, never
                // claimed): fenced off either way.
                Some(_) => Err(StoreError::LeaseLost(id)),
            }
        })
        .collect())
}

pub(crate) fn token(t: LeaseToken) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}
