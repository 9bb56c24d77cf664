//! The storage seam: [`DeliveryStore`].
//!
//! The dispatcher and the API talk to storage only through this trait, so the engine is a
//! choice: sled (`herald-queue`, embedded, one node) or PostgreSQL (`herald-postgres`, a cluster
//! of nodes). Both pass one conformance suite (`herald-conformance`).
//!
//! ## Lifecycle of a delivery
//!
//! ```text
//! enqueue ──► pending ──claim──► in_flight ──Outcome::Delivered──► delivered
//!                ▲                   │ ├──Outcome::RetryAt(t)──► pending (due at t)
//!                │                   │ └──Outcome::Dead────────► dead ──retry/redrive/replay──► pending
//!                ├────release────────┘                          delivered ──replay──► pending
//!                └──── lease_until passed (the lease expired): claimable again
//! ```
//!
//! ## Leases and fencing
//!
//! A claim leases each delivery until `lease_until` and hands out a [`LeaseToken`] that is new
//! for every claim of that delivery. [`finish_attempt`](DeliveryStore::finish_attempt) and
//! [`release`](DeliveryStore::release) must present it: once a lease has expired and the
//! delivery was claimed again (by this node or another), the old token is refused with
//! [`StoreError::LeaseLost`], so a stale attempt can never overwrite a newer outcome. A delivery
//! whose lease passed `lease_until` without an outcome is claimable again.
//!
//! ## Notifications
//!
//! A store tells the dispatcher, through the [`StoreListener`] given to
//! [`DeliveryStore::set_listener`], that work arrived for a subscriber or that a subscriber's
//! stored state (pause) changed, whichever node made the change. An embedded store calls it
//! after its own durable writes; a shared one also relays other nodes' changes.
//!
//! All methods are `async` and may touch the network (a remote database): callers never hold a
//! lock across them and treat every error as possibly transient ([`StoreError::Unavailable`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{DeliveryId, EventId, SubscriberId, UnixMillis};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An event to enqueue, already fanned out to its subscribers.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event type, e.g. `PROCESS_STATE_FINISHED`.
    pub event_type: String,
    /// The payload's JSON exactly as ingested; stored once, delivered byte for byte.
    pub payload: Bytes,
    /// One delivery is created per subscriber (may be empty).
    pub subscribers: Vec<SubscriberId>,
    /// Ingest idempotency key: the same key again (within retention) returns the first receipt.
    pub idempotency_key: Option<String>,
    /// When Herald accepted the event; also the first due time of its deliveries.
    pub received_at: UnixMillis,
    /// SPEC §9: deliveries with the same key to a `per_key` subscriber go one at a time, in
    /// acceptance order. 1 to 256 bytes (validated by the API).
    pub ordering_key: Option<String>,
    /// Subscribers (a subset of `subscribers`) whose `ordering = "per_key"` applies to this
    /// event's deliveries; fixed at enqueue, so a reload never reorders stored work.
    pub ordered_for: Vec<SubscriberId>,
    /// The W3C `traceparent` of the ingest request, kept with the event (SPEC §10).
    pub traceparent: Option<String>,
}

/// What an enqueue created (or, for a repeated idempotency key, what the first one created).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueReceipt {
    /// The event's id.
    pub event_id: EventId,
    /// One entry per created delivery.
    pub deliveries: Vec<ReceiptDelivery>,
    /// True when the idempotency key was seen before and nothing new was created.
    #[serde(skip)]
    pub duplicate: bool,
}

/// One delivery in an [`EnqueueReceipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptDelivery {
    /// The delivery id (`webhook-id` on the wire).
    pub id: DeliveryId,
    /// Who it goes to.
    pub subscriber: SubscriberId,
}

/// A delivery leased to the dispatcher for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Delivery id.
    pub id: DeliveryId,
    /// Event id.
    pub event_id: EventId,
    /// Subscriber.
    pub subscriber: SubscriberId,
    /// Event type.
    pub event_type: String,
    /// The number of this attempt (1 for the first).
    pub attempt: u32,
    /// When the event was accepted (for `max_age`).
    pub created_at: UnixMillis,
    /// The payload bytes, shared (not copied) between deliveries and attempts where the engine
    /// allows.
    pub payload: Bytes,
    /// The fencing token of this claim: [`DeliveryStore::finish_attempt`] and
    /// [`DeliveryStore::release`] must present it.
    pub lease: LeaseToken,
    /// When the lease expires and the delivery becomes claimable again.
    pub lease_until: UnixMillis,
    /// The retry budget the schedule counts from (reset by a replay).
    pub budget: RetryBudget,
    /// The event's ordering key, when this delivery is ordered by it (SPEC §9).
    pub ordering_key: Option<Arc<str>>,
    /// The ingest request's W3C `traceparent`, if it had one.
    pub traceparent: Option<Arc<str>>,
}

/// A lease's fencing token: unique per claim of a delivery (a later claim of the same delivery
/// always gets a different token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub u64);

/// Where a delivery's retry schedule starts: its first attempt and its creation, until a replay
/// gives it a fresh budget (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryBudget {
    /// The attempt number that counts as attempt 1 of the schedule (`max_attempts`).
    pub first_attempt: u32,
    /// The time `max_age` counts from.
    pub since: UnixMillis,
}

impl RetryBudget {
    /// The budget of a delivery never replayed.
    pub fn new(created_at: UnixMillis) -> Self {
        Self {
            first_attempt: 1,
            since: created_at,
        }
    }

    /// `attempt`'s number within this budget (1 for the budget's first attempt).
    pub fn attempt_in_budget(self, attempt: u32) -> u32 {
        attempt.saturating_sub(self.first_attempt).saturating_add(1)
    }
}

/// The state of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its due time or for capacity.
    Pending,
    /// Leased to the dispatcher; an attempt is under way.
    InFlight,
    /// A 2xx was received.
    Delivered,
    /// Given up (attempts or age exhausted); kept for inspection and manual retry.
    Dead,
}

impl DeliveryStatus {
    /// All states, in lifecycle order.
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::InFlight,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
    ];

    /// The wire name (`pending`, `in_flight`, `delivered`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?}; expected pending, in_flight, delivered or dead")
            })
    }
}

/// One attempt, as kept in a delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1, 2, 3, …
    pub attempt: u32,
    /// When the attempt started.
    pub at: UnixMillis,
    /// The HTTP status, if a response arrived.
    pub status_code: Option<u16>,
    /// A short error text for failures, `None` on success.
    pub error: Option<String>,
    /// Wall time of the attempt.
    pub duration_ms: u64,
}

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success: the delivery is finished.
    Delivered,
    /// Failure with attempts left: pending again, due at the given time.
    RetryAt(UnixMillis),
    /// Failure with nothing left: dead-lettered.
    Dead,
}

/// A delivery's stored state (without its attempt history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Delivery id.
    pub id: DeliveryId,
    /// Event id.
    pub event_id: EventId,
    /// Subscriber.
    pub subscriber: SubscriberId,
    /// Event type.
    pub event_type: String,
    /// Current state.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (`None` when delivered or dead).
    pub next_attempt_at: Option<UnixMillis>,
    /// When the event was accepted.
    pub created_at: UnixMillis,
    /// Last state change.
    pub updated_at: UnixMillis,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// The event's ordering key, when this delivery is ordered by it (SPEC §9).
    pub ordering_key: Option<String>,
}

/// A delivery with its attempt history, for `GET /v1/deliveries/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDetails {
    /// The delivery.
    pub record: DeliveryRecord,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
}

/// A page query for `GET /v1/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this subscriber's deliveries.
    pub subscriber: Option<SubscriberId>,
    /// Only deliveries in this state.
    pub status: Option<DeliveryStatus>,
    /// Page size (callers clamp it; 0 means the implementation's default).
    pub limit: usize,
    /// Resume after this delivery id (the previous page's `next_cursor`).
    pub cursor: Option<DeliveryId>,
}

/// One page of deliveries, in id (creation) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    /// The deliveries, each with its attempt history (read in the same pass, no second lookup).
    pub deliveries: Vec<DeliveryDetails>,
    /// Pass as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<DeliveryId>,
}

/// An event as stored, with its deliveries, for `GET /v1/events/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDetails {
    /// Event id.
    pub id: EventId,
    /// Event type.
    pub event_type: String,
    /// When Herald accepted it.
    pub received_at: UnixMillis,
    /// Its ordering key, if it had one.
    pub ordering_key: Option<String>,
    /// Its idempotency key, if it had one.
    pub idempotency_key: Option<String>,
    /// The ingest request's `traceparent`, if it had one.
    pub traceparent: Option<String>,
    /// The payload exactly as ingested.
    pub payload: Bytes,
    /// Its deliveries (those not purged), in id order.
    pub deliveries: Vec<EventDelivery>,
}

/// One delivery of an [`EventDetails`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDelivery {
    /// Delivery id.
    pub id: DeliveryId,
    /// Who it goes to.
    pub subscriber: SubscriberId,
    /// Its state now.
    pub status: DeliveryStatus,
}

/// A page query for `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events accepted at or after this time.
    pub since: Option<UnixMillis>,
    /// Only events accepted before this time.
    pub until: Option<UnixMillis>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Page size (callers clamp it; 0 means the implementation's default).
    pub limit: usize,
    /// Resume after this event id (the previous page's `next_cursor`).
    pub cursor: Option<EventId>,
}

/// One page of events, in id (acceptance) order; `deliveries` may be left empty by the engine
/// when listing (the API lists events without their deliveries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventDetails>,
    /// Pass as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<EventId>,
}

/// `POST /v1/subscribers/{id}/replay` (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    /// Whose deliveries.
    pub subscriber: SubscriberId,
    /// Events accepted at or after this time…
    pub since: UnixMillis,
    /// …and before this one (`None`: up to now).
    pub until: Option<UnixMillis>,
    /// Deliveries in these states (only `Delivered` and `Dead` are meaningful).
    pub statuses: Vec<DeliveryStatus>,
    /// Only these event types (empty: all).
    pub event_types: Vec<String>,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// The replayed deliveries are due at this time, with a fresh [`RetryBudget`] from it.
    pub now: UnixMillis,
}

/// What a replay matched and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayResult {
    /// Deliveries that matched the filter.
    pub matched: u64,
    /// Deliveries made pending again (0 on a dry run).
    pub replayed: u64,
}

/// A claim of a subscriber's due deliveries.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// Whose deliveries.
    pub subscriber: &'a SubscriberId,
    /// Deliveries due at or before this time, and leases expired by it, are claimable.
    pub now: UnixMillis,
    /// The new leases expire at this time.
    pub lease_until: UnixMillis,
    /// Most deliveries to lease in this call.
    pub max: usize,
    /// The subscriber's cap on unexpired leases across every node (its effective limit): the
    /// claim leases no more than `cap` minus the leases already out.
    pub cap: u32,
}

/// Deliveries of one subscriber by state; maintained incrementally, never by scanning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Waiting (due or scheduled).
    pub pending: u64,
    /// Leased for an attempt.
    pub in_flight: u64,
    /// Delivered and not yet purged.
    pub delivered: u64,
    /// Dead-lettered and not yet purged.
    pub dead: u64,
}

/// What a retention purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Finished (delivered or dead) deliveries removed, with their attempt history.
    pub deliveries: u64,
    /// Events (payloads) removed once none of their deliveries remained.
    pub events: u64,
    /// Idempotency keys that expired.
    pub idempotency_keys: u64,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No delivery with this id.
    #[error("delivery {0} not found")]
    NotFound(DeliveryId),
    /// The lease presented is no longer the delivery's current one (it expired and the delivery
    /// was claimed again, or it was released): the outcome is refused (fencing).
    #[error("delivery {0}: the lease is no longer held (expired and claimed again, or released)")]
    LeaseLost(DeliveryId),
    /// The storage engine cannot be reached now (a database connection lost); the operation
    /// changed nothing and may be tried again.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The delivery is not in a state that allows the operation.
    #[error("delivery {id} is {actual:?}, expected {expected:?}")]
    InvalidState {
        /// The delivery.
        id: DeliveryId,
        /// The state the operation needs.
        expected: DeliveryStatus,
        /// The state it is in.
        actual: DeliveryStatus,
    },
    /// The storage device is out of space: nothing was acknowledged.
    #[error("storage is full: {0}")]
    Full(#[source] std::io::Error),
    /// Stored data could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The key (hex or printable) of the bad record.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The store was closed (shutdown).
    #[error("store is closed")]
    Closed,
    /// Any other engine error.
    #[error("storage error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Told by a store that something changed, on this node or (for a shared engine) another.
///
/// Calls are cheap and must not block: implementations only wake tasks.
pub trait StoreListener: Send + Sync + 'static {
    /// Deliveries of `subscriber` may be claimable now (enqueue, retry, redrive, replay,
    /// release).
    fn work_available(&self, subscriber: &SubscriberId);
    /// A subscriber's stored state (its pause) changed: read it again with
    /// [`DeliveryStore::paused`].
    fn subscriber_changed(&self, subscriber: &SubscriberId);
}

/// Durable storage of events, deliveries and their attempt history.
///
/// Implementations must be safe to call concurrently from many tasks. Every method may wait
/// (on a disk flush or a database round trip); none holds the caller's locks.
#[async_trait::async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Stores each event (its payload once, one pending delivery per subscriber, due at
    /// `received_at`) and returns one receipt per event, in order, **once they are durable**
    /// (sled: a group-committed fsync that started after the write; Postgres: COMMIT with
    /// synchronous commit). Concurrent calls share the durability cost (group commit).
    ///
    /// An event whose idempotency key is already stored creates nothing and returns the first
    /// receipt with `duplicate = true`. Notifies the listener of the subscribers that got work.
    async fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError>;

    /// Durability barrier: resolves once everything written before the call survives a crash
    /// of the machine. Concurrent callers share one flush.
    async fn sync(&self) -> Result<(), StoreError>;

    /// Leases up to `request.max` of the subscriber's claimable deliveries (pending and due,
    /// or leased with an expired lease), in due order, within the cluster-wide `cap`. Ordered
    /// deliveries (SPEC §9) are claimable only at the head of their key's line.
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// The earliest time one of the subscriber's deliveries becomes claimable (a pending
    /// delivery's due time or a lease's expiry), if any. Claimable now: a time ≤ now.
    async fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError>;

    /// Records an attempt of a leased delivery and moves it according to `outcome`.
    /// [`StoreError::LeaseLost`] if `lease` is no longer the delivery's current lease.
    async fn finish_attempt(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError>;

    /// Gives a leased delivery back without an attempt (pause, shutdown), due at `due`.
    /// [`StoreError::LeaseLost`] if `lease` is no longer the delivery's current lease.
    async fn release(
        &self,
        id: DeliveryId,
        lease: LeaseToken,
        due: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Moves one dead delivery back to pending, due at `now`.
    async fn retry_dead(
        &self,
        id: DeliveryId,
        now: UnixMillis,
    ) -> Result<DeliveryRecord, StoreError>;

    /// Moves every dead delivery of a subscriber back to pending, due at `now`; returns how many.
    async fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError>;

    /// Makes the subscriber's matching finished deliveries pending again (same id, history
    /// kept, fresh retry budget), in bounded chunks that never block other callers.
    async fn replay(&self, request: &ReplayRequest) -> Result<ReplayResult, StoreError>;

    /// One delivery with its attempt history.
    async fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError>;

    /// A page of deliveries in id order, filtered.
    async fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError>;

    /// One event with its payload and deliveries.
    async fn get_event(&self, id: EventId) -> Result<Option<EventDetails>, StoreError>;

    /// A page of events in id order, filtered.
    async fn list_events(&self, query: &EventQuery) -> Result<EventPage, StoreError>;

    /// Current counts of a subscriber's deliveries by state (no scan of the deliveries).
    async fn counts(&self, subscriber: &SubscriberId) -> Result<QueueCounts, StoreError>;

    /// Every subscriber that has deliveries stored, with its counts (no scan), including
    /// subscribers whose counts are all zero now but were not before (so gauges fall to 0).
    async fn all_counts(&self) -> Result<Vec<(SubscriberId, QueueCounts)>, StoreError>;

    /// Per subscriber with ordered deliveries (SPEC §9), the number of keys whose head has
    /// failed at least once and is not yet delivered or dead: keys blocked on a failing head
    /// (the `herald_ordering_blocked_keys` gauge). Subscribers with none may be left out.
    async fn blocked_keys(&self) -> Result<Vec<(SubscriberId, u64)>, StoreError>;

    /// Persists a subscriber's pause (`Some(reason)`) or resume (`None`), durably, and notifies
    /// every node's listener.
    async fn set_paused(
        &self,
        subscriber: &SubscriberId,
        reason: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Every paused subscriber with its reason.
    async fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError>;

    /// Removes delivered and dead deliveries finished before `cutoff`, their attempts, events
    /// left without deliveries, and idempotency keys older than `cutoff`, in bounded batches.
    async fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError>;

    /// Bytes the store occupies on disk, where the engine knows it.
    async fn size_on_disk(&self) -> Result<Option<u64>, StoreError>;

    /// Registers the listener told about changes (replacing any earlier one).
    fn set_listener(&self, listener: Arc<dyn StoreListener>);
}
