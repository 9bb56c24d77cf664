//! Transitions of stored deliveries: attempt outcomes (fenced by the lease token), retry of
//! one dead delivery, redrive, replay, and the pause records.

use herald_core::{
    AttemptRecord, DeliveryId, DeliveryRecord, DeliveryStatus, LeaseToken, Outcome, ReplayRequest,
    ReplayResult, RetryBudget, StoreError, SubscriberId, UnixMillis,
};
use tracing::warn;

use super::{blocking, SledStore};
use crate::error;
use crate::keys;
use crate::records::{self, Attempt, Delivery, Status};

/// Events a replay examines per chunk before it lets other tasks run.
const REPLAY_CHUNK: usize = 256;

impl SledStore {
    /// Marks `row` finished (delivered or dead) at `at`: index entries first, the delivery last,
    /// so a crash in between leaves only stale index entries (which readers verify).
    ///
    /// A delivery never finishes before its event was received (`at` is clamped to
    /// `created_at`, e.g. after the wall clock stepped back). The purge relies on it: a
    /// delivery finished before the cutoff implies an event — and idempotency key — received
    /// before it, so an event is never purged while its idempotency key must still answer.
    ///
    /// `indexed`: the claim's `c` record already lists the delivery (written before this, so a
    /// crash cannot keep the finish and lose the index); otherwise an `f` entry is written.
    pub(super) fn write_finished(
        &self,
        id: DeliveryId,
        row: &mut Delivery,
        status: Status,
        at: u64,
        indexed: bool,
    ) -> Result<(), StoreError> {
        let at = at.max(row.created_at);
        row.status = status;
        row.finished_at = at;
        if !indexed {
            self.insert(&keys::finished(at, id), row.event_id.to_bytes().to_vec())?;
        }
        if status == Status::Dead {
            self.insert(&keys::dead(&row.subscriber, id), Vec::new())?;
        }
        self.write_delivery(id, row)
    }

    /// Finished (dead, or delivered for a replay) → pending, due at `now`, with a fresh retry
    /// budget when given. The caller holds the delivery's lock.
    fn revive(
        &self,
        id: DeliveryId,
        mut row: Delivery,
        now: UnixMillis,
        budget: Option<RetryBudget>,
    ) -> Result<DeliveryRecord, StoreError> {
        let finished_at = row.finished_at;
        let was = row.status;
        row.status = Status::Pending;
        row.due = now.0;
        row.finished_at = 0;
        row.updated_at = now.0;
        if let Some(budget) = budget {
            row.budget_first = budget.first_attempt;
            row.budget_since = budget.since.0;
        }
        self.write_delivery(id, &row)?;
        let state = self.subscribers.get_or_create(&row.subscriber);
        state.transition(was, Status::Pending);
        state.make_ready(row.due, id, row.ready(), row.ordering_key.as_deref());
        // Index entries go after the state change. If removing them fails they are merely
        // stale, which every reader tolerates.
        for key in [
            keys::dead(&row.subscriber, id),
            keys::finished(finished_at, id).to_vec(),
        ] {
            if let Err(e) = self.remove(&key) {
                warn!(error = %e, key = %keys::describe(&key), "stale index entry left behind");
            }
        }
        Ok(row.public(id))
    }

    /// Records an attempt under the lease `token` and moves the delivery per `outcome`.
    pub(super) fn finish_sync(
        &self,
        id: DeliveryId,
        token: LeaseToken,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        let mut stripe = self.delivery_lock(id);
        let (known, indexed, claimed_at, until) = match stripe.leased.get_mut(&id) {
            Some(lease) if lease.token == token => (
                lease.record.take(),
                lease.indexed,
                lease.claimed_at,
                lease.until,
            ),
            _ => {
                // Not leased under this token: say whether the delivery exists at all.
                return match self.read_delivery(id)? {
                    Some(_) => Err(StoreError::LeaseLost(id)),
                    None => Err(StoreError::NotFound(id)),
                };
            }
        };
        let mut row = match known {
            Some(row) => *row,
            None => self.read_delivery(id)?.ok_or(StoreError::NotFound(id))?,
        };
        // The store numbers attempts itself, so history stays consistent whatever the caller
        // passed.
        let number = row.attempts.saturating_add(1);
        let ended = attempt.at.0.saturating_add(attempt.duration_ms);
        // The claim record is keyed by the claim's time; a purge finds the delivery through it
        // only if it finished no earlier (always so unless the clock stepped back).
        let indexed = indexed && ended.max(row.created_at) >= claimed_at;
        row.attempts = number;
        row.updated_at = ended;
        row.last_error = match outcome {
            Outcome::Delivered => None,
            _ => attempt.error.clone(),
        };
        row.push_attempt(Attempt {
            attempt: number,
            at: attempt.at.0,
            status_code: attempt.status_code,
            error: attempt.error,
            duration_ms: attempt.duration_ms,
        });
        let state = self.subscribers.get_or_create(&row.subscriber);
        match outcome {
            Outcome::Delivered => {
                self.write_finished(id, &mut row, Status::Delivered, ended, indexed)?;
                state.transition(Status::InFlight, Status::Delivered);
                state.finish_line(id);
            }
            Outcome::Dead => {
                self.write_finished(id, &mut row, Status::Dead, ended, indexed)?;
                state.transition(Status::InFlight, Status::Dead);
                state.finish_line(id);
            }
            Outcome::RetryAt(due) => {
                row.status = Status::Pending;
                row.due = due.0;
                self.write_delivery(id, &row)?;
                state.transition(Status::InFlight, Status::Pending);
                state.make_ready(due.0, id, row.ready(), row.ordering_key.as_deref());
            }
        }
        stripe.leased.remove(&id);
        state.leases.lock().remove(&(until, id));
        Ok(())
    }

    pub(super) fn retry_dead_sync(
        &self,
        id: DeliveryId,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError> {
        let stripe = self.delivery_lock(id);
        let row = self.read_delivery(id)?.ok_or(StoreError::NotFound(id))?;
        let row = stripe.current(id, row);
        if row.status != Status::Dead {
            return Err(StoreError::InvalidState {
                id,
                expected: DeliveryStatus::Dead,
                actual: row.status.public(),
            });
        }
        self.revive(id, row, now, None)
    }

    pub(super) fn redrive_sync(
        &self,
        subscriber: &SubscriberId,
        now: UnixMillis,
    ) -> Result<u64, StoreError> {
        let prefix = keys::dead_prefix(subscriber);
        let mut moved = 0;
        for item in self.tree.scan_prefix(&prefix) {
            let (key, _) = item.map_err(error::backend)?;
            let Some(id) = keys::dead_id(&key) else {
                continue;
            };
            let _guard = self.delivery_lock(id);
            match self.read_delivery(id) {
                Ok(Some(row)) if row.status == Status::Dead && row.subscriber == *subscriber => {
                    self.revive(id, row, now, None)?;
                    moved += 1;
                }
                Ok(_) => self.remove(&key)?, // stale index entry
                Err(e @ StoreError::Corrupt { .. }) => self.note_corrupt(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    pub(super) fn set_paused_sync(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let key = keys::pause(subscriber);
        match reason {
            Some(reason) => self.insert(&key, records::encode_pause(reason)),
            None => self.remove(&key),
        }
    }

    /// Replay in chunks of [`REPLAY_CHUNK`] events of the window (event keys are ordered by
    /// acceptance time, so the window is a key range), letting other tasks run in between.
    pub(super) async fn replay_chunked(
        &self,
        request: &ReplayRequest,
    ) -> Result<ReplayResult, StoreError> {
        let statuses: Vec<Status> = if request.statuses.is_empty() {
            vec![Status::Dead]
        } else {
            request
                .statuses
                .iter()
                .filter_map(|s| match s {
                    DeliveryStatus::Delivered => Some(Status::Delivered),
                    DeliveryStatus::Dead => Some(Status::Dead),
                    _ => None,
                })
                .collect()
        };
        let until = request
            .until
            .unwrap_or(UnixMillis(request.now.0.saturating_add(1)));
        let mut result = ReplayResult::default();
        if statuses.is_empty() || until <= request.since {
            return Ok(result);
        }
        let mut from = keys::event_at(request.since.0).to_vec();
        let end = keys::event_at(until.0).to_vec();
        loop {
            let next = blocking(|| {
                self.replay_chunk(request, &statuses, until, &from, &end, &mut result)
            })?;
            match next {
                Some(key) => from = key,
                None => return Ok(result),
            }
            tokio::task::yield_now().await;
        }
    }

    /// One chunk of a replay from `from` (inclusive); returns where the next chunk starts.
    fn replay_chunk(
        &self,
        request: &ReplayRequest,
        statuses: &[Status],
        until: UnixMillis,
        from: &[u8],
        end: &[u8],
        result: &mut ReplayResult,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let chunk = self
            .tree
            .range(from..end)
            .take(REPLAY_CHUNK)
            .collect::<Result<Vec<_>, _>>()
            .map_err(error::backend)?;
        let budget = RetryBudget {
            first_attempt: 0,
            since: request.now,
        };
        for (key, value) in &chunk {
            let meta = match records::decode_event_meta(value) {
                Ok(meta) => meta,
                Err(e) => {
                    self.note_corrupt(&error::corrupt(key, e));
                    continue;
                }
            };
            let in_window = meta.received_at >= request.since.0 && meta.received_at < until.0;
            let wanted_type =
                request.event_types.is_empty() || request.event_types.contains(&meta.event_type);
            if !in_window || !wanted_type {
                continue;
            }
            for (id, sub) in &meta.deliveries {
                if *sub != request.subscriber {
                    continue;
                }
                let stripe = self.delivery_lock(*id);
                if stripe.leased.contains_key(id) {
                    continue;
                }
                let row = match self.read_delivery(*id) {
                    Ok(Some(row)) if statuses.contains(&row.status) => row,
                    Ok(_) => continue,
                    Err(e @ StoreError::Corrupt { .. }) => {
                        self.note_corrupt(&e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                result.matched += 1;
                if !request.dry_run {
                    let budget = RetryBudget {
                        first_attempt: row.attempts.saturating_add(1),
                        ..budget
                    };
                    self.revive(*id, row, request.now, Some(budget))?;
                    result.replayed += 1;
                }
                drop(stripe);
            }
        }
        if chunk.len() < REPLAY_CHUNK {
            return Ok(None);
        }
        Ok(chunk.last().map(|(key, _)| {
            let mut next = key.to_vec();
            next.push(0); // the smallest key after `key`
            next
        }))
    }
}
