//! Finished spans (SPEC §10 "Tracing"): what the API (an `ingest` request) and the dispatcher
//! (an `attempt`) report once they are done, and [`SpanSink`], the seam they report to.
//!
//! The layers that do the work know only these plain records; turning them into OpenTelemetry
//! spans and exporting them over OTLP/HTTP is the `herald` binary's business (its `telemetry`
//! module), so that no library crate depends on the OpenTelemetry SDK. Without `[telemetry]`
//! there is no sink and nothing here is ever built.
//!
//! Span ids are chosen by the layer that sends them on: an attempt's span id is the one in the
//! `traceparent` header of its request, so that the receiver's own spans are its children.
//!
//! A record never holds a payload, a URL or a credential: only ids, counts, status codes and
//! the attempt's short error text (the same text the API shows, which has no URL in it).

use std::fmt;
use std::time::SystemTime;

use crate::{DeliveryId, EventId, SubscriberId, Traceparent};

/// Where finished spans go (the binary's OTLP exporter). Both calls are made on the request's
/// or attempt's own task, once, after the work is done: they must only hand the record over
/// (queue it) and never wait for the network.
pub trait SpanSink: Send + Sync + fmt::Debug {
    /// An ingest request ended.
    fn ingest(&self, span: &IngestSpan);
    /// A delivery attempt ended.
    fn attempt(&self, span: &AttemptSpan<'_>);
}

/// One `POST /v1/events` or `POST /v1/events/batch` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSpan {
    /// This span: its trace, its own span id and the trace flags. Its `traceparent` is the one
    /// stored with the request's events.
    pub context: Traceparent,
    /// The span id of the request's incoming `traceparent`, if it had a valid one (then the
    /// trace id is that header's); `None`: this span is the trace's root.
    pub parent_span_id: Option<u64>,
    /// The route: `/v1/events` or `/v1/events/batch`.
    pub route: &'static str,
    /// When the request began.
    pub start: SystemTime,
    /// When its answer was ready.
    pub end: SystemTime,
    /// Events in the request (0 when its body could not be read as events).
    pub events: usize,
    /// Events stored (or found stored: idempotent duplicates count) by it.
    pub accepted: usize,
    /// The HTTP status of the answer.
    pub status: u16,
}

/// How an attempt ended for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver took it (2xx).
    Delivered,
    /// It failed and is due again later (or waits for a resume after `410 Gone`).
    Retry,
    /// It failed with no attempts left: dead-lettered.
    Dead,
}

impl AttemptOutcome {
    /// `delivered`, `retry` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::Dead => "dead",
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptSpan<'a> {
    /// This span: the event's trace and the span id sent in the attempt's `traceparent`.
    pub context: Traceparent,
    /// The span id of the event's stored `traceparent` (the ingest span, or the producer's
    /// span); `None`: the event had none and this attempt is the root of its own trace.
    pub parent_span_id: Option<u64>,
    /// When the request was sent (token fetch included).
    pub start: SystemTime,
    /// When its outcome was known.
    pub end: SystemTime,
    /// The subscriber.
    pub subscriber: &'a SubscriberId,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// The event.
    pub event_id: EventId,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// The response status, if a response arrived.
    pub status_code: Option<u16>,
    /// What became of the delivery.
    pub outcome: AttemptOutcome,
    /// The short error text of a failed attempt (`HTTP 500`, `timeout after 10s`, …).
    pub error: Option<&'a str>,
}
