//! Vacuuming Herald's hot tables when autovacuum is off or behind.
//!
//! Every claim and every outcome updates a delivery row, so `herald_deliveries` leaves dead row
//! versions, and dead entries in the claim's index, at the rate deliveries are sent. Until a
//! vacuum removes them every claim walks more dead index entries than the last, and a long
//! drain slows down several-fold (see the README's "Engines compared"). Migration 4 makes
//! autovacuum eager on these tables, but a server may run with autovacuum off (server-wide or
//! per table), and where it is on, its launcher visits a database once a minute
//! (`autovacuum_naptime`) and its workers are throttled: a burst of deliveries outruns it.
//!
//! So every [`CHECK_EVERY`] one node (a session advisory lock, free again if the node dies)
//! runs a plain `VACUUM` (it takes no lock that blocks reads or writes) on each hot table whose
//! dead rows reached [`DEAD_SHARE`] of its live rows, and at least [`MIN_DEAD`]. With
//! autovacuum on and keeping up (it starts at 2 %), this never fires and costs one catalog
//! query every five seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::StoreError;
use tracing::{debug, info, warn};

use crate::error::db;
use crate::Inner;

/// How often the hot tables are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// A table is vacuumed once its dead rows reach this share of its live rows...
const DEAD_SHARE: f64 = 0.1;
/// ...and at least this many.
const MIN_DEAD: i64 = 1_000;
/// The session advisory lock held by the one node that vacuums ("herald-v").
const VACUUM_LOCK: i64 = 0x6865_7261_6c64_2d76;
/// The tables Herald rewrites all the time.
const HOT_TABLES: [&str; 5] = [
    "herald_deliveries",
    "herald_counts",
    "herald_throttle",
    "herald_rate_buckets",
    "herald_nodes",
];

/// Runs until the store is dropped (its task is aborted).
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the first vacuum was logged.
    let mut told = false;
    loop {
        tick.tick().await;
        if let Err(e) = step(&inner, &mut told).await {
            debug!(error = %e, "vacuum check failed; trying again later");
        }
    }
}

/// One check: vacuums the tables that need it, if this node gets the lock.
async fn step(inner: &Inner, told: &mut bool) -> Result<(), StoreError> {
    let t = &inner.target;
    let client = inner.conn().await?;
    let tables: Vec<String> = HOT_TABLES.iter().map(|s| (*s).to_owned()).collect();
    let due = client
        .query(
            "SELECT s.relname::text, s.n_dead_tup
             FROM pg_stat_user_tables s
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
               AND s.n_dead_tup >= GREATEST($2::int8, ($3::float8 * s.n_live_tup)::int8)
             ORDER BY s.n_dead_tup DESC",
            &[&tables, &MIN_DEAD, &DEAD_SHARE],
        )
        .await
        .map_err(|e| db(t, e))?;
    if due.is_empty() {
        return Ok(());
    }
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&VACUUM_LOCK])
        .await
        .map_err(|e| db(t, e))?
        .get(0);
    if !locked {
        // Another node is at it.
        return Ok(());
    }
    if !std::mem::replace(told, true) {
        info!(
            "a tenth of a hot table's rows are dead (autovacuum is off or behind): Herald \
             vacuums its hot tables itself when that happens; logged once"
        );
    }
    for row in &due {
        let table: String = row.get(0);
        let dead: i64 = row.get(1);
        // Only names from HOT_TABLES reach here (the query filters on them).
        if !HOT_TABLES.contains(&table.as_str()) {
            continue;
        }
        let started = Instant::now();
        // Not in a transaction: VACUUM refuses to run inside one.
        if let Err(e) = client.batch_execute(&format!("VACUUM {table}")).await {
            warn!(table, error = %db(t, e), "VACUUM failed");
            break;
        }
        debug!(table, dead, took = ?started.elapsed(), "vacuumed");
    }
    if client
        .query_one("SELECT pg_advisory_unlock($1)", &[&VACUUM_LOCK])
        .await
        .is_err()
    {
        // Never hand a connection that may still hold the lock back to the pool.
        drop(deadpool_postgres::Object::take(client));
    }
    Ok(())
}
