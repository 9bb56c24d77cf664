//! Nodes, the cluster-wide rate-limit bucket and the cluster-wide error-rate throttle.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{
    ClusterState, NodeInfo, RateLimitConfig, StoreError, SubscriberId, ThrottleBucket,
    ThrottleConfig, ThrottleState, ThrottleWindow, UnixMillis, NODE_VISIBLE_FOR_MS,
    THROTTLE_BUCKETS,
};
use tracing::warn;

use crate::error::db;
use crate::{ms, notify, unms, Inner, PgStore};

/// How often the node row is refreshed.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How often due work is polled for (the backstop of LISTEN/NOTIFY).
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Writes this node's row and releases the leases a previous run with the same node id left:
/// that run is gone (a node id is one process at a time), so none of them can still be
/// running. Releasing expires the lease (its `ready_at` becomes its creation time, at or
/// before the due time it was claimed at, so it keeps its place in due order): the delivery is
/// claimable at once by any node, and the old token stays fenced off. Returns how many were released.
pub(crate) async fn register_node(inner: &Inner) -> Result<u64, StoreError> {
    let t = &inner.target;
    let now = ms(UnixMillis::now());
    let mut client = inner.conn().await?;
    let tx = client.transaction().await.map_err(|e| db(t, e))?;
    tx.execute(
        "INSERT INTO herald_nodes (id, started_at, last_seen, in_flight) VALUES ($1, $2, $2, 0)
         ON CONFLICT (id) DO UPDATE SET started_at = $2, last_seen = $2, in_flight = 0",
        &[&inner.node_id, &now],
    )
    .await
    .map_err(|e| db(t, e))?;
    let rows = tx
        .query(
            "WITH rel AS (
               UPDATE herald_deliveries SET ready_at = LEAST(ready_at, created_at, $2), lease_node = NULL
               WHERE status = 1 AND lease_node = $1
               RETURNING subscriber
             )
             SELECT subscriber, count(*) FROM rel GROUP BY subscriber",
            &[&inner.node_id, &now],
        )
        .await
        .map_err(|e| db(t, e))?;
    let subs: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    if !subs.is_empty() {
        tx.query(
            "SELECT pg_notify('herald_work', s) FROM unnest($1::text[]) AS s",
            &[&subs],
        )
        .await
        .map_err(|e| db(t, e))?;
    }
    tx.commit().await.map_err(|e| db(t, e))?;
    Ok(rows
        .iter()
        .map(|r| u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))
        .sum())
}

/// Heartbeats every 5 s and polls for due work every second, until the store is dropped.
pub(crate) async fn run_heartbeat(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = std::time::Instant::now();
    loop {
        tick.tick().await;
        if last_beat.elapsed() >= HEARTBEAT_EVERY {
            last_beat = std::time::Instant::now();
            let in_flight = inner.in_flight.load(Ordering::Relaxed);
            if let Err(e) = beat(&inner, in_flight).await {
                warn!(error = %e, "node heartbeat failed");
            }
        }
        notify::poll_due(&inner).await;
    }
}

async fn beat(inner: &Inner, in_flight: u64) -> Result<(), StoreError> {
    let t = &inner.target;
    let client = inner.conn().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO herald_nodes (id, started_at, last_seen, in_flight) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET last_seen = $3, in_flight = $4",
        )
        .await
        .map_err(|e| db(t, e))?;
    client
        .execute(
            &stmt,
            &[
                &inner.node_id,
                &ms(inner.started_at),
                &ms(UnixMillis::now()),
                &i64::try_from(in_flight).unwrap_or(i64::MAX),
            ],
        )
        .await
        .map_err(|e| db(t, e))?;
    Ok(())
}

/// One subscriber's throttle row as the core controller: slots, successes and failures are
/// three parallel arrays in the row (a missing or short array reads as unused buckets).
fn window_of(row: &tokio_postgres::Row) -> ThrottleWindow {
    let (slots, oks, fails): (Vec<i64>, Vec<i32>, Vec<i32>) = (row.get(3), row.get(4), row.get(5));
    let mut buckets = [ThrottleBucket::UNUSED; THROTTLE_BUCKETS];
    for (i, bucket) in buckets.iter_mut().enumerate() {
        *bucket = ThrottleBucket {
            slot: slots.get(i).copied().unwrap_or(-1),
            ok: u32::try_from(oks.get(i).copied().unwrap_or(0)).unwrap_or(0),
            failed: u32::try_from(fails.get(i).copied().unwrap_or(0)).unwrap_or(0),
        };
    }
    ThrottleWindow {
        limit: u32::try_from(row.get::<_, i32>(0)).unwrap_or(1).max(1),
        max: u32::try_from(row.get::<_, i32>(1)).unwrap_or(1).max(1),
        last_change: row.get(2),
        buckets,
    }
}

/// The row's three arrays of `w`'s buckets.
fn arrays_of(w: &ThrottleWindow) -> (Vec<i64>, Vec<i32>, Vec<i32>) {
    let clamp = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    (
        w.buckets.iter().map(|b| b.slot).collect(),
        w.buckets.iter().map(|b| clamp(b.ok)).collect(),
        w.buckets.iter().map(|b| clamp(b.failed)).collect(),
    )
}

#[async_trait::async_trait]
impl ClusterState for PgStore {
    fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    async fn heartbeat(&self, in_flight: u64) -> Result<(), StoreError> {
        self.inner.in_flight.store(in_flight, Ordering::Relaxed);
        beat(&self.inner, in_flight).await
    }

    async fn nodes(&self, now: UnixMillis) -> Result<Vec<NodeInfo>, StoreError> {
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        let since = ms(now.minus(Duration::from_millis(NODE_VISIBLE_FOR_MS)));
        let rows = client
            .query(
                "SELECT id, started_at, last_seen, in_flight FROM herald_nodes
                 WHERE last_seen >= $1 ORDER BY id",
                &[&since],
            )
            .await
            .map_err(|e| db(t, e))?;
        Ok(rows
            .iter()
            .map(|r| NodeInfo {
                id: r.get(0),
                started_at: unms(r.get(1)),
                last_seen: unms(r.get(2)),
                in_flight: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
            })
            .collect())
    }

    async fn take_rate_tokens(
        &self,
        subscriber: &SubscriberId,
        limit: RateLimitConfig,
        want: u32,
        now: UnixMillis,
    ) -> Result<u32, StoreError> {
        if want == 0 {
            return Ok(0);
        }
        let t = &self.inner.target;
        let client = self.inner.conn().await?;
        // One statement: refill by elapsed time × rate (capped at the burst), take what is
        // there up to `want`, remember how many were taken to return them.
        let stmt = client
            .prepare_cached(
                "INSERT INTO herald_rate_buckets AS b (subscriber, tokens, updated_at, last_taken)
                 VALUES ($1, $2::float8 - LEAST(floor($2), $4::float8), $3,
                         LEAST(floor($2), $4::float8)::int4)
                 ON CONFLICT (subscriber) DO UPDATE SET
                   tokens = LEAST($2, b.tokens + GREATEST(0, $3 - b.updated_at) * $5::float8 / 1000.0)
                     - LEAST(floor(LEAST($2, b.tokens + GREATEST(0, $3 - b.updated_at) * $5::float8 / 1000.0)),
                             $4::float8),
                   last_taken = LEAST(floor(LEAST($2, b.tokens
                                  + GREATEST(0, $3 - b.updated_at) * $5::float8 / 1000.0)), $4::float8)::int4,
                   updated_at = GREATEST(b.updated_at, $3)
                 RETURNING last_taken",
            )
            .await
            .map_err(|e| db(t, e))?;
        let burst = f64::from(limit.burst.get());
        let rate = f64::from(limit.per_second.get());
        let want = f64::from(want);
        let row = client
            .query_one(
                &stmt,
                &[&subscriber.as_str(), &burst, &ms(now), &want, &rate],
            )
            .await
            .map_err(|e| db(t, e))?;
        Ok(u32::try_from(row.get::<_, i32>(0)).unwrap_or(0))
    }

    async fn record_outcomes(
        &self,
        subscriber: &SubscriberId,
        config: &ThrottleConfig,
        max: u32,
        succeeded: u32,
        failed: u32,
        now: UnixMillis,
    ) -> Result<ThrottleState, StoreError> {
        let t = &self.inner.target;
        let now = ms(now);
        let max = max.max(1);
        let max_i = i32::try_from(max).unwrap_or(i32::MAX);
        let mut client = self.inner.conn().await?;
        let tx = client.transaction().await.map_err(|e| db(t, e))?;
        let (empty_slots, zeros, _) = arrays_of(&ThrottleWindow::new(max, now));
        tx.execute(
            "INSERT INTO herald_throttle (subscriber, lim, max_limit, last_change, slots, oks, fails)
             VALUES ($1, $2, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            &[&subscriber.as_str(), &max_i, &now, &empty_slots, &zeros],
        )
        .await
        .map_err(|e| db(t, e))?;
        let row = tx
            .query_one(
                "SELECT lim, max_limit, last_change, slots, oks, fails FROM herald_throttle
                 WHERE subscriber = $1 FOR UPDATE",
                &[&subscriber.as_str()],
            )
            .await
            .map_err(|e| db(t, e))?;
        let mut w = window_of(&row);
        let previous_limit = w.limit;
        w.record(config, max, succeeded, failed, now);
        let (slots, oks, fails) = arrays_of(&w);
        tx.execute(
            "UPDATE herald_throttle SET lim = $2, max_limit = $3, last_change = $4, slots = $5,
               oks = $6, fails = $7
             WHERE subscriber = $1",
            &[
                &subscriber.as_str(),
                &i32::try_from(w.limit).unwrap_or(i32::MAX),
                &i32::try_from(w.max).unwrap_or(i32::MAX),
                &w.last_change,
                &slots,
                &oks,
                &fails,
            ],
        )
        .await
        .map_err(|e| db(t, e))?;
        tx.commit().await.map_err(|e| db(t, e))?;
        Ok(ThrottleState {
            limit: w.limit,
            previous_limit,
            error_rate: w.error_rate(config, now),
        })
    }
}
