//! The storage seam: [`DeliveryStore`].
//!
//! The dispatcher and the API talk to storage only through this trait, so another engine can be
//! added without touching them. `herald-queue` holds the default sled implementation and a
//! conformance suite every implementation must pass.
//!
//! ## Lifecycle of a delivery
//!
//! ```text
//! enqueue ──► pending ──claim──► in_flight ──Outcome::Delivered──► delivered
//!                ▲                   │ ├──Outcome::RetryAt(t)──► pending (due at t)
//!                │                   │ └──Outcome::Dead────────► dead ──retry/redrive──► pending
//!                └────release────────┘        (and at open: every in_flight is pending again)
//! ```
//!
//! Methods are synchronous and fast (in-memory index work for an embedded engine). The only
//! asynchronous call is [`DeliveryStore::sync`], the durability barrier that many concurrent
//! writers share (group commit).

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{DeliveryId, EventId, SubscriberId, UnixMillis};

/// A boxed, sendable future (keeps [`DeliveryStore`] object-safe).
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

/// Durable storage of events, deliveries and their attempt history.
///
/// Implementations must be safe to call concurrently from many tasks. All methods except
/// [`sync`](Self::sync) may block briefly (no network, no fsync).
pub trait DeliveryStore: Send + Sync + 'static {
    /// Atomically stores each event (its payload once, one pending delivery per subscriber,
    /// due at `received_at`) and returns one receipt per event, in order.
    ///
    /// Not durable until a later [`sync`](Self::sync) completes. An event whose idempotency key
    /// is already stored creates nothing and returns the first receipt with `duplicate = true`.
    fn enqueue(&self, events: Vec<NewEvent>) -> Result<Vec<EnqueueReceipt>, StoreError>;

    /// Durability barrier: resolves once everything written before the call is on disk
    /// (fsync'd). Concurrent callers share one flush (group commit).
    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Leases up to `max` of the subscriber's deliveries due at or before `now`, in due order,
    /// marking them in flight until `lease_until`.
    fn claim(
        &self,
        subscriber: &SubscriberId,
        now: UnixMillis,
        lease_until: UnixMillis,
        max: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// The due time of the subscriber's earliest pending delivery, if any.
    fn next_due(&self, subscriber: &SubscriberId) -> Result<Option<UnixMillis>, StoreError>;

    /// Records an attempt of an in-flight delivery and moves it according to `outcome`.
    fn finish_attempt(
        &self,
        id: DeliveryId,
        attempt: AttemptRecord,
        outcome: Outcome,
    ) -> Result<(), StoreError>;

    /// Gives an in-flight delivery back without an attempt (pause, shutdown), due at `due`.
    fn release(&self, id: DeliveryId, due: UnixMillis) -> Result<(), StoreError>;

    /// Moves one dead delivery back to pending, due at `now`.
    fn retry_dead(&self, id: DeliveryId, now: UnixMillis) -> Result<DeliveryRecord, StoreError>;

    /// Moves every dead delivery of a subscriber back to pending, due at `now`; returns how many.
    fn redrive(&self, subscriber: &SubscriberId, now: UnixMillis) -> Result<u64, StoreError>;

    /// One delivery with its attempt history.
    fn get(&self, id: DeliveryId) -> Result<Option<DeliveryDetails>, StoreError>;

    /// A page of deliveries in id order, filtered.
    fn list(&self, query: &ListQuery) -> Result<DeliveryPage, StoreError>;

    /// Current counts of a subscriber's deliveries by state (no scan).
    fn counts(&self, subscriber: &SubscriberId) -> QueueCounts;

    /// Every subscriber that has deliveries stored, with its counts (no scan).
    fn all_counts(&self) -> Vec<(SubscriberId, QueueCounts)>;

    /// Persists a subscriber's pause (`Some(reason)`) or resume (`None`).
    fn set_paused(&self, subscriber: &SubscriberId, reason: Option<&str>)
        -> Result<(), StoreError>;

    /// Every paused subscriber with its reason.
    fn paused(&self) -> Result<Vec<(SubscriberId, String)>, StoreError>;

    /// Removes delivered and dead deliveries finished before `cutoff`, their attempts, events
    /// left without deliveries, and idempotency keys older than `cutoff`.
    fn purge(&self, cutoff: UnixMillis) -> Result<PurgeStats, StoreError>;

    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
}
