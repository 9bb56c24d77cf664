//! The trace context of an ingest request and, with span export (`[telemetry]`), its `ingest`
//! span (SPEC §10).
//!
//! Which `traceparent` is stored with the request's events:
//!
//! - without span export: the request's own `traceparent` when it is valid, else none (an
//!   invalid one is ignored, as W3C Trace Context says); attempts then continue the producer's
//!   span directly;
//! - with span export: the `ingest` span's own context. The span is a child of the request's
//!   valid `traceparent` (same trace id, flags kept), or, without one, the root of a new
//!   sampled trace. Attempts are then children of the ingest span, and a trace always reads
//!   producer → `ingest` → `attempt` → receiver.
//!
//! Spans are recorded when the trace's `sampled` flag is set (a producer that did not sample
//! its trace gets no spans from Herald either, but its attempts still carry the trace).

use std::time::SystemTime;

use axum::http::HeaderMap;
use axum::response::Response;
use herald_core::{IngestSpan, SpanSink, Traceparent};

use crate::error::ApiError;
use crate::ApiState;

/// One ingest request's trace context and, with a sink, its span in the making.
pub(crate) struct IngestTrace<'a> {
    /// The request's valid `traceparent`, if any.
    incoming: Option<Traceparent>,
    /// The `ingest` span, when spans are exported.
    span: Option<OpenSpan<'a>>,
    /// Events in the request, once its body is read.
    pub(crate) events: usize,
    /// Events stored (or found stored) by it.
    pub(crate) accepted: usize,
}

struct OpenSpan<'a> {
    sink: &'a dyn SpanSink,
    context: Traceparent,
    start: SystemTime,
}

impl<'a> IngestTrace<'a> {
    /// Starts the request's trace (and span, when `state` has a sink).
    pub(crate) fn start(state: &'a ApiState, headers: &HeaderMap) -> Self {
        let incoming = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(Traceparent::parse);
        let span = state.inner.spans.as_deref().map(|sink| OpenSpan {
            sink,
            context: match incoming {
                Some(parent) => parent.with_span_id(rand::random()),
                None => Traceparent::root(rand::random(), rand::random()),
            },
            start: SystemTime::now(),
        });
        Self {
            incoming,
            span,
            events: 0,
            accepted: 0,
        }
    }

    /// The `traceparent` to store with the request's events (see the module docs).
    pub(crate) fn stored(&self) -> Option<String> {
        self.span
            .as_ref()
            .map(|s| s.context)
            .or(self.incoming)
            .map(|tp| tp.to_string())
    }

    /// Ends the request: hands its span, with the answer's status, to the sink.
    pub(crate) fn finish(self, route: &'static str, answer: &Result<Response, ApiError>) {
        let Some(span) = self.span else {
            return;
        };
        let status = match answer {
            Ok(response) => response.status(),
            Err(e) => e.status,
        };
        span.sink.ingest(&IngestSpan {
            context: span.context,
            parent_span_id: self.incoming.map(|p| p.span_id),
            route,
            start: span.start,
            end: SystemTime::now(),
            events: self.events,
            accepted: self.accepted,
            status: status.as_u16(),
        });
    }
}
