//! The `ingest` span and the stored `traceparent` (SPEC §10) against the real router, with a
//! span sink that records what it is given.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use crate::support::serve_paused;
use herald_api::ApiOptions;
use herald_core::{AttemptSpan, DeliveryStore, EventId, IngestSpan, SpanSink, Traceparent};

#[derive(Debug, Default)]
struct Recorder {
    ingest: Mutex<Vec<IngestSpan>>,
}

impl SpanSink for Recorder {
    fn ingest(&self, span: &IngestSpan) {
        self.ingest.lock().push(span.clone());
    }
    fn attempt(&self, _span: &AttemptSpan<'_>) {}
}

/// The API on a paused subscriber (nothing is delivered), with `sink` when given.
async fn serve(
    dir: &std::path::Path,
    sink: Option<Arc<Recorder>>,
) -> (String, Arc<dyn DeliveryStore>) {
    let options = ApiOptions {
        spans: sink.map(|s| s as Arc<dyn SpanSink>),
        ..ApiOptions::default()
    };
    serve_paused(dir, options).await
}

async fn post(base: &str, path: &str, traceparent: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let res = req.body(body.to_owned()).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn stored(store: &Arc<dyn DeliveryStore>, receipt: &Value) -> Option<Traceparent> {
    let id: EventId = receipt["event_id"].as_str().unwrap().parse().unwrap();
    let event = store.get_event(id).await.unwrap().unwrap();
    event.traceparent.map(|tp| Traceparent::parse(&tp).unwrap())
}

const EVENT: &str = r#"{"event_type": "e", "payload": {}}"#;
const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn with_a_sink_events_keep_the_ingest_span_context() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Recorder::default());
    let (base, store) = serve(dir.path(), Some(Arc::clone(&sink))).await;
    let given = Traceparent::parse(GIVEN).unwrap();

    // Child of the given span; the event keeps the ingest span's context.
    let (status, receipt) = post(&base, "/v1/events", Some(GIVEN), EVENT).await;
    assert_eq!(status, 202);
    let span = sink.ingest.lock().pop().unwrap();
    assert_eq!(span.context.trace_id, given.trace_id);
    assert_ne!(span.context.span_id, given.span_id);
    assert_eq!(span.parent_span_id, Some(given.span_id));
    assert_eq!((span.route, span.status), ("/v1/events", 202));
    assert_eq!((span.events, span.accepted), (1, 1));
    assert!(span.start <= span.end);
    assert_eq!(stored(&store, &receipt).await, Some(span.context));

    // No (valid) traceparent: the ingest span is a sampled root, and it is what is stored.
    for header in [None, Some("00-nonsense-01")] {
        let (_, receipt) = post(&base, "/v1/events", header, EVENT).await;
        let span = sink.ingest.lock().pop().unwrap();
        assert_eq!(span.parent_span_id, None);
        assert!(span.context.sampled());
        assert_eq!(stored(&store, &receipt).await, Some(span.context));
    }

    // An unsampled trace stays unsampled (the sink skips it; the attempts carry it on).
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let (_, receipt) = post(&base, "/v1/events", Some(unsampled), EVENT).await;
    let span = sink.ingest.lock().pop().unwrap();
    assert!(!span.context.sampled());
    assert_eq!(stored(&store, &receipt).await, Some(span.context));

    // A batch: one span for the request, every event under it; failed items are counted.
    let batch = format!(r#"{{"events": [{EVENT}, {EVENT}, {{"event_type": ""}}]}}"#);
    let (status, answer) = post(&base, "/v1/events/batch", Some(GIVEN), &batch).await;
    assert_eq!(status, 202);
    let span = sink.ingest.lock().pop().unwrap();
    assert_eq!(
        (span.route, span.events, span.accepted),
        ("/v1/events/batch", 3, 2)
    );
    for item in answer["results"].as_array().unwrap().iter().take(2) {
        assert_eq!(stored(&store, item).await, Some(span.context));
    }

    // A refused request still has its span, with the answer's status.
    let (status, _) = post(&base, "/v1/events", Some(GIVEN), "{not json").await;
    assert_eq!(status, 400);
    let span = sink.ingest.lock().pop().unwrap();
    assert_eq!((span.status, span.events, span.accepted), (400, 1, 0));
    assert!(sink.ingest.lock().is_empty(), "one span per request");
}

#[tokio::test]
async fn without_a_sink_events_keep_the_request_traceparent() {
    let dir = tempfile::tempdir().unwrap();
    let (base, store) = serve(dir.path(), None).await;
    let (_, receipt) = post(&base, "/v1/events", Some(GIVEN), EVENT).await;
    assert_eq!(
        stored(&store, &receipt)
            .await
            .map(|tp| tp.to_string())
            .as_deref(),
        Some(GIVEN)
    );
    let (_, receipt) = post(&base, "/v1/events", None, EVENT).await;
    assert_eq!(stored(&store, &receipt).await, None);
}
