//! Stored record formats.
//!
//! Every value starts with one byte, the record's format version, followed by the postcard
//! encoding of that version's struct. A new layout gets a new version byte and a new struct;
//! decoders dispatch on the byte, so old data stays readable without a migration step.
//! These structs are private to the crate: the public types of `herald-core` may change
//! without changing what is on disk.

use std::ops::Range;

use herald_core::{
    AttemptRecord, DeliveryId, DeliveryRecord, DeliveryStatus, EnqueueReceipt, EventId,
    ReceiptDelivery, RetryBudget, SubscriberId, UnixMillis,
};
use serde::{Deserialize, Serialize};

use crate::index::Ready;

/// The version byte of the records whose layout has not changed since the first format
/// (claim, idempotency and pause records).
pub(crate) const V1: u8 = 1;

/// The version byte of delivery and event records since the storage seam was reshaped
/// (delivery: retry budget and ordering key; event: ordering key, `ordered_for` and
/// traceparent). Version 1 records are still read.
pub(crate) const V2: u8 = 2;

/// The layout version of the whole store, kept under [`crate::keys::FORMAT_KEY`]. Format 1
/// (no V2 records) is read too and upgraded at open, so an older build refuses the directory
/// instead of misreading V2 records.
pub(crate) const FORMAT_VERSION: u8 = 2;

/// Store formats this build opens.
pub(crate) const READABLE_FORMATS: [u8; 2] = [1, 2];

/// Attempts kept in a delivery's history; older ones are dropped first.
pub(crate) const MAX_HISTORY: usize = 100;

/// A decoding failure, turned into `StoreError::Corrupt` by the caller (who knows the key).
#[derive(Debug)]
pub(crate) struct DecodeError(pub(crate) String);

impl DecodeError {
    fn new(what: impl std::fmt::Display) -> Self {
        Self(what.to_string())
    }
}

fn versioned<T: Serialize>(value: &T) -> Vec<u8> {
    versioned_as(V1, value)
}

fn versioned_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail; keep the version byte alone if it
    // somehow did, which decodes as corrupt rather than as wrong data.
    postcard::to_extend(value, vec![version]).unwrap_or_else(|_| vec![version])
}

/// The version byte and the rest of a V1-or-V2 record.
fn split_version(bytes: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    match bytes.split_first() {
        Some((&v, rest)) if v == V1 || v == V2 => Ok((v, rest)),
        Some((v, _)) => Err(DecodeError::new(format!(
            "unknown record version {v} (this build reads {V1} and {V2})"
        ))),
        None => Err(DecodeError::new("empty record")),
    }
}

fn check_version(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    match bytes.split_first() {
        Some((&V1, rest)) => Ok(rest),
        Some((v, _)) => Err(DecodeError::new(format!(
            "unknown record version {v} (this build reads {V1})"
        ))),
        None => Err(DecodeError::new("empty record")),
    }
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    postcard::from_bytes(check_version(bytes)?).map_err(DecodeError::new)
}

/// A delivery's state as stored (`d` records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Status {
    Pending,
    InFlight,
    Delivered,
    Dead,
}

impl Status {
    pub(crate) fn public(self) -> DeliveryStatus {
        match self {
            Self::Pending => DeliveryStatus::Pending,
            Self::InFlight => DeliveryStatus::InFlight,
            Self::Delivered => DeliveryStatus::Delivered,
            Self::Dead => DeliveryStatus::Dead,
        }
    }

    pub(crate) fn is_finished(self) -> bool {
        matches!(self, Self::Delivered | Self::Dead)
    }
}

/// One attempt in a delivery's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attempt {
    pub(crate) attempt: u32,
    pub(crate) at: u64,
    pub(crate) status_code: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: u64,
}

impl Attempt {
    pub(crate) fn public(&self) -> AttemptRecord {
        AttemptRecord {
            attempt: self.attempt,
            at: UnixMillis(self.at),
            status_code: self.status_code,
            error: self.error.clone(),
            duration_ms: self.duration_ms,
        }
    }
}

/// A delivery: its state and its attempt history, rewritten whole on every transition so a
/// transition is one single-key write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Delivery {
    pub(crate) event_id: EventId,
    pub(crate) subscriber: SubscriberId,
    pub(crate) event_type: String,
    pub(crate) status: Status,
    /// Attempts finished so far.
    pub(crate) attempts: u32,
    /// Pending: when it is due (a leased delivery keeps this on disk, so a restart makes it due
    /// again at the same time). Finished: the last due time.
    pub(crate) due: u64,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
    /// Delivered or dead: when (this is the `f` index key's time).
    pub(crate) finished_at: u64,
    pub(crate) last_error: Option<String>,
    pub(crate) history: Vec<Attempt>,
    /// The attempt number that counts as the first of the retry schedule (1 until a replay).
    pub(crate) budget_first: u32,
    /// When the schedule's `max_age` counts from (`created_at` until a replay).
    pub(crate) budget_since: u64,
    /// The event's ordering key, when this delivery is ordered by it.
    pub(crate) ordering_key: Option<String>,
}

/// A version 1 delivery record (before retry budgets and ordering keys).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct DeliveryV1 {
    event_id: EventId,
    subscriber: SubscriberId,
    event_type: String,
    status: Status,
    attempts: u32,
    due: u64,
    created_at: u64,
    updated_at: u64,
    finished_at: u64,
    last_error: Option<String>,
    history: Vec<Attempt>,
}

impl From<DeliveryV1> for Delivery {
    fn from(v: DeliveryV1) -> Self {
        Self {
            event_id: v.event_id,
            subscriber: v.subscriber,
            event_type: v.event_type,
            status: v.status,
            attempts: v.attempts,
            due: v.due,
            created_at: v.created_at,
            updated_at: v.updated_at,
            finished_at: v.finished_at,
            last_error: v.last_error,
            history: v.history,
            budget_first: 1,
            budget_since: v.created_at,
            ordering_key: None,
        }
    }
}

impl Delivery {
    /// A delivery as enqueued: pending, due at once, never attempted.
    pub(crate) fn fresh(
        event_id: EventId,
        subscriber: SubscriberId,
        event_type: String,
        received: u64,
        ordering_key: Option<String>,
    ) -> Self {
        Self {
            event_id,
            subscriber,
            event_type,
            status: Status::Pending,
            attempts: 0,
            due: received,
            created_at: received,
            updated_at: received,
            finished_at: 0,
            last_error: None,
            history: Vec::new(),
            budget_first: 1,
            budget_since: received,
            ordering_key,
        }
    }

    /// The retry budget the schedule counts from.
    pub(crate) fn budget(&self) -> RetryBudget {
        RetryBudget {
            first_attempt: self.budget_first,
            since: UnixMillis(self.budget_since),
        }
    }

    /// Whether the record is still exactly as [`Delivery::fresh`] wrote it, so it can be
    /// rebuilt from its event instead of read back.
    pub(crate) fn is_fresh(&self) -> bool {
        self.status == Status::Pending
            && self.attempts == 0
            && self.due == self.created_at
            && self.updated_at == self.created_at
            && self.finished_at == 0
            && self.last_error.is_none()
            && self.history.is_empty()
            && self.budget_first == 1
            && self.budget_since == self.created_at
    }

    /// The ready-index entry of this (pending) delivery.
    pub(crate) fn ready(&self) -> Ready {
        Ready {
            event_id: self.event_id,
            attempts: self.attempts,
            fresh: self.is_fresh(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        versioned_as(V2, self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match split_version(bytes)? {
            (V1, rest) => postcard::from_bytes::<DeliveryV1>(rest)
                .map(Self::from)
                .map_err(DecodeError::new),
            (_, rest) => postcard::from_bytes(rest).map_err(DecodeError::new),
        }
    }

    pub(crate) fn public(&self, id: DeliveryId) -> DeliveryRecord {
        DeliveryRecord {
            id,
            event_id: self.event_id,
            subscriber: self.subscriber.clone(),
            event_type: self.event_type.clone(),
            status: self.status.public(),
            attempts: self.attempts,
            next_attempt_at: (self.status == Status::Pending).then_some(UnixMillis(self.due)),
            created_at: UnixMillis(self.created_at),
            updated_at: UnixMillis(self.updated_at),
            last_error: self.last_error.clone(),
            ordering_key: self.ordering_key.clone(),
        }
    }

    /// Appends an attempt, keeping at most [`MAX_HISTORY`].
    pub(crate) fn push_attempt(&mut self, attempt: Attempt) {
        if self.history.len() >= MAX_HISTORY {
            let excess = self.history.len() + 1 - MAX_HISTORY;
            self.history.drain(..excess);
        }
        self.history.push(attempt);
    }
}

/// The meta part of an `e` record (version 2). The fields a claim needs come first, so
/// [`EventHead`] decodes them without the delivery list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventMeta {
    pub(crate) event_type: String,
    pub(crate) received_at: u64,
    pub(crate) ordering_key: Option<String>,
    pub(crate) traceparent: Option<String>,
    /// Subscribers whose deliveries of this event are ordered by `ordering_key`.
    pub(crate) ordered_for: Vec<SubscriberId>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) deliveries: Vec<(DeliveryId, SubscriberId)>,
}

/// The meta part of a version 1 `e` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EventMetaV1 {
    event_type: String,
    received_at: u64,
    idempotency_key: Option<String>,
    deliveries: Vec<(DeliveryId, SubscriberId)>,
}

impl From<EventMetaV1> for EventMeta {
    fn from(v: EventMetaV1) -> Self {
        Self {
            event_type: v.event_type,
            received_at: v.received_at,
            ordering_key: None,
            traceparent: None,
            ordered_for: Vec::new(),
            idempotency_key: v.idempotency_key,
            deliveries: v.deliveries,
        }
    }
}

/// `e` value: `[V2][meta length: u32 LE][postcard meta][payload bytes]`. The payload is last so
/// a claim can hand out a slice of the stored buffer without copying it.
pub(crate) fn encode_event(meta: &EventMeta, payload: &[u8]) -> Vec<u8> {
    encode_event_as(
        V2,
        &postcard::to_allocvec(meta).unwrap_or_default(),
        payload,
    )
}

fn encode_event_as(version: u8, meta_bytes: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + meta_bytes.len() + payload.len());
    v.push(version);
    // Meta is a few hundred bytes at most (bounded by subscriber count); saturate defensively.
    let len = u32::try_from(meta_bytes.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(meta_bytes);
    v.extend_from_slice(payload);
    v
}

/// The version byte, the meta range and the payload range of an `e` value.
fn event_parts(bytes: &[u8]) -> Result<(u8, Range<usize>, Range<usize>), DecodeError> {
    let (version, rest) = split_version(bytes)?;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DecodeError::new("event record shorter than its header"))?;
    let meta_len = usize::try_from(u32::from_le_bytes(len_bytes))
        .map_err(|_| DecodeError::new("event meta length does not fit"))?;
    let meta_start = 5usize;
    let meta_end = meta_start
        .checked_add(meta_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| DecodeError::new("event meta length exceeds the record"))?;
    Ok((version, meta_start..meta_end, meta_end..bytes.len()))
}

/// Where the payload lies inside an `e` value.
pub(crate) fn event_payload_range(bytes: &[u8]) -> Result<Range<usize>, DecodeError> {
    Ok(event_parts(bytes)?.2)
}

/// The leading fields of [`EventMeta`], decoded without the delivery list (postcard reads fields
/// in order and ignores what follows).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct EventHead {
    pub(crate) event_type: String,
    pub(crate) received_at: u64,
    pub(crate) ordering_key: Option<String>,
    pub(crate) traceparent: Option<String>,
    pub(crate) ordered_for: Vec<SubscriberId>,
}

/// The leading fields of a version 1 meta.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct EventHeadV1 {
    event_type: String,
    received_at: u64,
}

impl EventHead {
    /// The ordering key of `subscriber`'s delivery: the event's key if it is ordered for it.
    pub(crate) fn ordering_key_for(&self, subscriber: &SubscriberId) -> Option<&str> {
        self.ordering_key
            .as_deref()
            .filter(|_| self.ordered_for.contains(subscriber))
    }
}

/// The head of an `e` value and where its payload lies: what a claim needs.
pub(crate) fn decode_event_head(bytes: &[u8]) -> Result<(EventHead, Range<usize>), DecodeError> {
    let (version, meta, payload) = event_parts(bytes)?;
    let head = if version == V1 {
        let v1: EventHeadV1 = postcard::from_bytes(&bytes[meta]).map_err(DecodeError::new)?;
        EventHead {
            event_type: v1.event_type,
            received_at: v1.received_at,
            ordering_key: None,
            traceparent: None,
            ordered_for: Vec::new(),
        }
    } else {
        postcard::from_bytes(&bytes[meta]).map_err(DecodeError::new)?
    };
    Ok((head, payload))
}

pub(crate) fn decode_event_meta(bytes: &[u8]) -> Result<EventMeta, DecodeError> {
    let (version, meta, _) = event_parts(bytes)?;
    if version == V1 {
        postcard::from_bytes::<EventMetaV1>(&bytes[meta])
            .map(EventMeta::from)
            .map_err(DecodeError::new)
    } else {
        postcard::from_bytes(&bytes[meta]).map_err(DecodeError::new)
    }
}

/// A `c` record: the deliveries one claim leased. Written before any of them can finish, so
/// it indexes their finish for the retention purge without a write per finished delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claimed {
    pub(crate) deliveries: Vec<(DeliveryId, EventId)>,
}

impl Claimed {
    pub(crate) fn encode(&self) -> Vec<u8> {
        versioned(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}

/// An `i` record: what the first enqueue with this key returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Idempotency {
    pub(crate) event_id: EventId,
    pub(crate) deliveries: Vec<(DeliveryId, SubscriberId)>,
    pub(crate) created_at: u64,
}

impl Idempotency {
    pub(crate) fn encode(&self) -> Vec<u8> {
        versioned(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }

    pub(crate) fn receipt(&self, duplicate: bool) -> EnqueueReceipt {
        EnqueueReceipt {
            event_id: self.event_id,
            deliveries: self
                .deliveries
                .iter()
                .map(|(id, sub)| ReceiptDelivery {
                    id: *id,
                    subscriber: sub.clone(),
                })
                .collect(),
            duplicate,
        }
    }
}

/// An `s` record: `[V1][utf-8 reason]`.
pub(crate) fn encode_pause(reason: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + reason.len());
    v.push(V1);
    v.extend_from_slice(reason.as_bytes());
    v
}

pub(crate) fn decode_pause(bytes: &[u8]) -> Result<String, DecodeError> {
    let rest = check_version(bytes)?;
    String::from_utf8(rest.to_vec()).map_err(DecodeError::new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Delivery {
        Delivery {
            event_id: EventId::generate(),
            subscriber: SubscriberId::new("acme").unwrap(),
            event_type: "T".into(),
            status: Status::Pending,
            attempts: 0,
            due: 5,
            created_at: 5,
            updated_at: 5,
            finished_at: 0,
            last_error: None,
            history: vec![],
            budget_first: 1,
            budget_since: 5,
            ordering_key: None,
        }
    }

    #[test]
    fn delivery_round_trips_and_rejects_unknown_versions() {
        let d = sample();
        let bytes = d.encode();
        assert_eq!(bytes[0], V2);
        assert_eq!(Delivery::decode(&bytes).unwrap(), d);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(Delivery::decode(&future)
            .unwrap_err()
            .0
            .contains("version 9"));
        assert!(Delivery::decode(&[]).is_err());
        assert!(Delivery::decode(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn invalid_subscriber_in_a_record_is_a_decode_error() {
        let mut d = sample();
        d.subscriber = SubscriberId::new("abc").unwrap();
        let mut bytes = d.encode();
        let pos = bytes.windows(3).position(|w| w == b"abc").unwrap();
        bytes[pos] = b'/';
        assert!(Delivery::decode(&bytes).is_err());
    }

    #[test]
    fn event_record_keeps_payload_last_and_exact() {
        let meta = EventMeta {
            event_type: "T".into(),
            received_at: 1,
            ordering_key: Some("o".into()),
            traceparent: None,
            ordered_for: vec![SubscriberId::new("a").unwrap()],
            idempotency_key: Some("k".into()),
            deliveries: vec![(DeliveryId::generate(), SubscriberId::new("a").unwrap())],
        };
        let payload = b"{\"x\":1}\xff\x00";
        let bytes = encode_event(&meta, payload);
        let range = event_payload_range(&bytes).unwrap();
        assert_eq!(&bytes[range], payload);
        assert_eq!(decode_event_meta(&bytes).unwrap(), meta);
        let (head, range2) = decode_event_head(&bytes).unwrap();
        assert_eq!((head.event_type.as_str(), head.received_at), ("T", 1));
        assert_eq!(&bytes[range2], payload);
        // A truncated header is reported, not panicked on.
        assert!(event_payload_range(&bytes[..3]).is_err());
        let mut lying = bytes.clone();
        lying[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(event_payload_range(&lying).is_err());
    }

    #[test]
    fn version_1_records_still_decode() {
        // Byte for byte what the previous build wrote.
        let v1 = DeliveryV1 {
            event_id: EventId::generate(),
            subscriber: SubscriberId::new("acme").unwrap(),
            event_type: "T".into(),
            status: Status::Dead,
            attempts: 3,
            due: 7,
            created_at: 5,
            updated_at: 9,
            finished_at: 9,
            last_error: Some("HTTP 500".into()),
            history: vec![],
        };
        #[derive(Serialize)]
        struct Same<'a>(
            EventId,
            &'a SubscriberId,
            &'a str,
            Status,
            u32,
            u64,
            u64,
            u64,
            u64,
            &'a Option<String>,
            &'a [Attempt],
        );
        let bytes = versioned(&Same(
            v1.event_id,
            &v1.subscriber,
            &v1.event_type,
            v1.status,
            v1.attempts,
            v1.due,
            v1.created_at,
            v1.updated_at,
            v1.finished_at,
            &v1.last_error,
            &v1.history,
        ));
        let d = Delivery::decode(&bytes).unwrap();
        assert_eq!(d.attempts, 3);
        assert_eq!(d.budget(), RetryBudget::new(UnixMillis(5)));
        assert_eq!(d.ordering_key, None);
        assert_eq!(d.clone(), Delivery::from(v1));

        let meta = EventMetaV1 {
            event_type: "T".into(),
            received_at: 11,
            idempotency_key: Some("k".into()),
            deliveries: vec![(DeliveryId::generate(), SubscriberId::new("a").unwrap())],
        };
        let bytes = encode_event_as(V1, &postcard::to_allocvec(&meta).unwrap(), b"{}");
        let (head, range) = decode_event_head(&bytes).unwrap();
        assert_eq!((head.event_type.as_str(), head.received_at), ("T", 11));
        assert_eq!(head.ordering_key, None);
        assert_eq!(&bytes[range], b"{}");
        let full = decode_event_meta(&bytes).unwrap();
        assert_eq!(full, EventMeta::from(meta));
    }

    #[test]
    fn history_is_capped() {
        let mut d = sample();
        for n in 1..=(MAX_HISTORY as u32 + 5) {
            d.push_attempt(Attempt {
                attempt: n,
                at: 0,
                status_code: None,
                error: None,
                duration_ms: 0,
            });
        }
        assert_eq!(d.history.len(), MAX_HISTORY);
        assert_eq!(d.history[0].attempt, 6);
    }

    #[test]
    fn pause_round_trips() {
        assert_eq!(decode_pause(&encode_pause("maint")).unwrap(), "maint");
        assert!(decode_pause(&[V1, 0xff]).is_err());
    }
}
