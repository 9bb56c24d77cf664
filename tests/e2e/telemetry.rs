//! SPEC §10 "Tracing": with `[telemetry] otlp_endpoint`, Herald exports its `ingest` and
//! `attempt` spans over OTLP/HTTP. A real collector (axum, in this process) takes the
//! protobuf posts to `/v1/traces` and decodes them with `opentelemetry-proto`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;
use prost::Message as _;
use serde_json::{json, Value};

use crate::harness::{receipt_ids, wait_for, Config, Herald, Mode, Receiver, Sub};

/// Secrets that must never reach the collector nor the log.
const QUERY_MARK: &str = "QUERYMARK-s3cr3t";
const APIKEY_MARK: &str = "APIKEYMARK-s3cr3t";
const TOKEN_MARK: &str = "TOKENMARK-s3cr3t";
/// In the collector's URL (query, password): sent to the collector, never logged.
const OTLP_MARK: &str = "OTLPMARK-s3cr3t";
const OTLP_PW_MARK: &str = "OTLPPWMARK-s3cr3t";
const ALL_MARKS: [&str; 5] = [QUERY_MARK, APIKEY_MARK, TOKEN_MARK, OTLP_MARK, OTLP_PW_MARK];

/// One post the collector got.
#[derive(Clone)]
struct Post {
    query: Option<String>,
    authorization: Option<String>,
    body: Bytes,
}

#[derive(Default)]
struct CollectorState {
    posts: Mutex<Vec<Post>>,
    status: Mutex<u16>,
}

/// An OTLP/HTTP collector on 127.0.0.1: records every `POST /v1/traces` and answers with the
/// chosen status (an empty `ExportTraceServiceResponse` on 200).
struct Collector {
    addr: std::net::SocketAddr,
    state: Arc<CollectorState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn collect(
    State(state): State<Arc<CollectorState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.posts.lock().push(Post {
        query,
        authorization,
        body,
    });
    let status = StatusCode::from_u16(*state.status.lock()).unwrap_or(StatusCode::OK);
    (
        status,
        [("content-type", "application/x-protobuf")],
        Vec::new(),
    )
        .into_response()
}

impl Collector {
    async fn start(status: u16) -> Self {
        let state = Arc::new(CollectorState::default());
        *state.status.lock() = status;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/traces", post(collect))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    fn posts(&self) -> Vec<Post> {
        self.state.posts.lock().clone()
    }

    /// Every span received so far, with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for post in self.posts() {
            let request = ExportTraceServiceRequest::decode(post.body.as_ref())
                .expect("a protobuf ExportTraceServiceRequest");
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| attr(&r.attributes, "service.name"))
                    .map(|v| text(&v))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        spans.push((service.clone(), span));
                    }
                }
            }
        }
        spans
    }
}

fn attr(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone())
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// The span's attributes as text, by key.
fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let v = kv.value.as_ref()?.value.as_ref()?;
            Some((kv.key.clone(), text(v)))
        })
        .collect()
}

/// (trace id, span id) of a `traceparent` header, as lower-case hex.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// The daemon with span export to `collector` (flushed every 100 ms) and a subscriber `acme`
/// whose URL query and api_key hold secrets.
fn config(collector_url: &str, acme: &Receiver) -> Config {
    Config::default()
        .token(TOKEN_MARK)
        .sub(
            Sub::new("acme", &acme.url(&format!("/hook?token={QUERY_MARK}"))).extra(&format!(
                "[auth]\ntype = \"api_key\"\nkey = \"X-Api-Key: {APIKEY_MARK}\"\n"
            )),
        )
        .daemon(&format!(
            "[telemetry]\notlp_endpoint = \"{collector_url}\"\nservice_name = \"herald-e2e\"\n"
        ))
        .env_var("OTEL_BSP_SCHEDULE_DELAY", "100")
}

async fn ingest(h: &Herald, path: &str, traceparent: Option<&str>, body: &Value) -> Value {
    let mut req = h
        .http
        .post(h.url(path))
        .bearer_auth(TOKEN_MARK)
        .header("content-type", "application/json");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let res = req.body(body.to_string()).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 202);
    res.json().await.unwrap()
}

/// Waits until the collector has a span named `name` in trace `trace` matching `pick`.
async fn span_in(
    collector: &Collector,
    trace: &str,
    name: &str,
    pick: impl Fn(&Span) -> bool,
) -> (String, Span) {
    wait_for(
        Duration::from_secs(10),
        &format!("an exported {name} span in trace {trace}"),
        || async {
            collector
                .spans()
                .into_iter()
                .find(|(_, s)| s.name == name && hex::encode(&s.trace_id) == trace && pick(s))
        },
    )
    .await
}

fn assert_no_secret_anywhere(collector: &Collector, h: &Herald) {
    let log = h.log_text();
    for mark in ALL_MARKS {
        assert!(!log.contains(mark), "the log shows {mark}:\n{log}");
    }
    for post in collector.posts() {
        let body = String::from_utf8_lossy(&post.body);
        for mark in ALL_MARKS {
            assert!(!body.contains(mark), "an exported span holds {mark}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_attempt_spans_join_the_callers_trace() {
    let collector = Collector::start(200).await;
    let acme = Receiver::start().await;
    let failing = Receiver::start_with(Mode::Status(500)).await;
    let url = format!(
        "http://otlp-user:{OTLP_PW_MARK}@{}?tenant={OTLP_MARK}",
        collector.addr
    );
    let h = Herald::start(
        config(&url, &acme).sub(
            Sub::new("failing", &failing.url("/in"))
                .attempts(2)
                .intervals("50ms", "50ms"),
        ),
    )
    .await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let receipt = ingest(
        &h,
        "/v1/events",
        Some(&format!("00-{trace}-{parent}-01")),
        &json!({"event_type": "e", "payload": {"n": 1}}),
    )
    .await;
    let deliveries: HashMap<String, String> = receipt_ids(&receipt).into_iter().collect();
    let acme_delivery = &deliveries["acme"];
    let failing_delivery = &deliveries["failing"];

    // The ingest span: a server span, child of the caller's span, in the caller's trace.
    let (service, ingest_span) = span_in(&collector, trace, "ingest", |s| {
        hex::encode(&s.parent_span_id) == parent
    })
    .await;
    assert_eq!(service, "herald-e2e");
    assert_eq!(ingest_span.kind, SpanKind::Server as i32);
    let a = attrs(&ingest_span);
    assert_eq!(a["http.route"], "/v1/events", "{a:?}");
    assert_eq!(a["http.response.status_code"], "202", "{a:?}");
    assert_eq!(a["herald.events"], "1", "{a:?}");
    assert_eq!(a["herald.events.accepted"], "1", "{a:?}");
    let ingest_id = hex::encode(&ingest_span.span_id);
    assert_ne!(ingest_id, parent);

    // The attempt span's id is the one the receiver got in its traceparent, and its parent is
    // the ingest span.
    let got = wait_for(Duration::from_secs(10), "acme's delivery", || async {
        acme.requests().into_iter().next()
    })
    .await;
    let (got_trace, got_span) = ids(got.header("traceparent").expect("a traceparent"));
    assert_eq!(got_trace, trace);
    let (_, attempt) = span_in(&collector, trace, "attempt", |s| {
        hex::encode(&s.span_id) == got_span
    })
    .await;
    assert_eq!(hex::encode(&attempt.parent_span_id), ingest_id);
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    let a = attrs(&attempt);
    assert_eq!(a["herald.subscriber"], "acme", "{a:?}");
    assert_eq!(&a["herald.delivery.id"], acme_delivery, "{a:?}");
    assert_eq!(a["herald.attempt"], "1", "{a:?}");
    assert_eq!(a["http.response.status_code"], "200", "{a:?}");
    assert_eq!(a["herald.outcome"], "delivered", "{a:?}");
    let status = attempt.status.clone().unwrap_or_default();
    assert_ne!(status.code, SpanStatusCode::Error as i32);

    // A failing subscriber: one span per attempt, error status, retry then dead.
    for (n, outcome) in [("1", "retry"), ("2", "dead")] {
        let (_, span) = span_in(&collector, trace, "attempt", |s| {
            let a = attrs(s);
            a.get("herald.subscriber").map(String::as_str) == Some("failing")
                && a.get("herald.attempt").map(String::as_str) == Some(n)
        })
        .await;
        let a = attrs(&span);
        assert_eq!(&a["herald.delivery.id"], failing_delivery, "{a:?}");
        assert_eq!(a["herald.outcome"], outcome, "{a:?}");
        assert_eq!(a["http.response.status_code"], "500", "{a:?}");
        assert_eq!(hex::encode(&span.parent_span_id), ingest_id);
        let status = span.status.clone().unwrap_or_default();
        assert_eq!(status.code, SpanStatusCode::Error as i32, "{status:?}");
        assert_eq!(status.message, "HTTP 500");
    }
    let sent: Vec<String> = failing
        .requests()
        .iter()
        .map(|r| ids(r.header("traceparent").expect("a traceparent")).1)
        .collect();
    for span_id in &sent {
        span_in(&collector, trace, "attempt", |s| {
            &hex::encode(&s.span_id) == span_id
        })
        .await;
    }

    // The collector URL is used with its query, its user info as Basic authentication;
    // nothing secret is exported or logged.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("otlp-user:{OTLP_PW_MARK}"))
    );
    for post in collector.posts() {
        assert_eq!(post.query, Some(format!("tenant={OTLP_MARK}")));
        assert_eq!(post.authorization.as_ref(), Some(&basic));
    }
    assert_no_secret_anywhere(&collector, &h);
    assert!(
        h.log_text().contains("exporting spans over OTLP/HTTP"),
        "{}",
        h.log_text()
    );
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_traceparent_the_ingest_span_starts_the_trace() {
    let collector = Collector::start(200).await;
    let acme = Receiver::start().await;
    let h = Herald::start(config(&format!("http://{}", collector.addr), &acme)).await;

    // One event, then a batch of two, neither with a traceparent.
    let one = ingest(
        &h,
        "/v1/events",
        None,
        &json!({"event_type": "e", "payload": {}}),
    )
    .await;
    let batch = ingest(
        &h,
        "/v1/events/batch",
        None,
        &json!({"events": [
            {"event_type": "e", "payload": {"i": 1}},
            {"event_type": "e", "payload": {"i": 2}},
        ]}),
    )
    .await;
    let one_id = receipt_ids(&one).pop().unwrap().1;
    let batch_ids: Vec<String> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(receipt_ids)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(batch_ids.len(), 2);

    let got = wait_for(Duration::from_secs(10), "three deliveries", || async {
        let r = acme.requests();
        (r.len() >= 3).then_some(r)
    })
    .await;
    let by_id: HashMap<String, (String, String)> = got
        .iter()
        .map(|r| {
            let tp = r
                .header("traceparent")
                .expect("with span export every attempt carries a traceparent");
            (r.webhook_id(), ids(tp))
        })
        .collect();

    // The single event: its own trace, rooted at its ingest span.
    let (trace, span) = &by_id[&one_id];
    let (_, root) = span_in(&collector, trace, "ingest", |s| s.parent_span_id.is_empty()).await;
    assert_eq!(attrs(&root)["http.route"], "/v1/events");
    let (_, attempt) = span_in(&collector, trace, "attempt", |s| {
        &hex::encode(&s.span_id) == span
    })
    .await;
    assert_eq!(attempt.parent_span_id, root.span_id);

    // The batch: both events in one trace, under one ingest span that counts them.
    let (trace_a, span_a) = &by_id[&batch_ids[0]];
    let (trace_b, span_b) = &by_id[&batch_ids[1]];
    assert_eq!(trace_a, trace_b);
    assert_ne!(trace_a, trace);
    let (_, root) = span_in(&collector, trace_a, "ingest", |s| {
        s.parent_span_id.is_empty()
    })
    .await;
    let a = attrs(&root);
    assert_eq!(a["http.route"], "/v1/events/batch", "{a:?}");
    assert_eq!(a["herald.events"], "2", "{a:?}");
    assert_eq!(a["herald.events.accepted"], "2", "{a:?}");
    for span in [span_a, span_b] {
        let (_, attempt) = span_in(&collector, trace_a, "attempt", |s| {
            &hex::encode(&s.span_id) == span
        })
        .await;
        assert_eq!(attempt.parent_span_id, root.span_id);
    }
    assert_no_secret_anywhere(&collector, &h);
    h.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_missing_collector_never_holds_up_delivery() {
    // One collector answers 500 to every post; the other address has nobody listening.
    let broken = Collector::start(500).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for url in [
        format!("http://{}?tenant={OTLP_MARK}", broken.addr),
        format!("http://{closed}?tenant={OTLP_MARK}"),
    ] {
        let acme = Receiver::start().await;
        let mut h = Herald::start(config(&url, &acme)).await;
        let mut ids = Vec::new();
        for i in 0..20 {
            let receipt = ingest(
                &h,
                "/v1/events",
                None,
                &json!({"event_type": "e", "payload": {"i": i}}),
            )
            .await;
            ids.push(receipt_ids(&receipt).pop().unwrap().1);
        }
        for id in &ids {
            h.wait_delivery(id, "delivered", Duration::from_secs(10))
                .await;
        }
        wait_for(
            Duration::from_secs(10),
            "the export failure logged",
            || async { h.log_text().contains("span export failed").then_some(()) },
        )
        .await;
        h.sigterm();
        let status = h.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "{status}; log:\n{}", h.log_text());
        h.assert_no_panic();
        let log = h.log_text();
        for mark in ALL_MARKS {
            assert!(!log.contains(mark), "the log shows {mark}:\n{log}");
        }
    }
    assert!(
        !broken.posts().is_empty(),
        "the broken collector was posted to"
    );
}
