//! Fuzzes the ingest endpoints through the real router (real sled store on a temp dir, real
//! dispatcher with one paused subscriber): whatever bytes arrive, the answer is a JSON `202` for
//! a valid request or a JSON error with a message; never a panic, and never an acknowledgement
//! of a body that is not JSON.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request};
use herald_api::{router, ApiOptions, ApiState};
use herald_core::{DeliveryStore, SecurityPolicy, SubscriberConfig, SubscriberId};
use herald_delivery::HttpClient;
use herald_dispatcher::Dispatcher;
use herald_queue::{SledOptions, SledStore};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_service::Service;

/// Largest payload the fuzzed API accepts; small, so 413 is reachable.
const MAX_PAYLOAD: usize = 4096;

struct Target {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let app = runtime.block_on(async {
            let store = SledStore::open(dir.path(), SledOptions::default()).expect("store");
            let store: Arc<dyn DeliveryStore> = Arc::new(store);
            let client = HttpClient::new(SecurityPolicy {
                allow_http: true,
                allow_private_networks: true,
            })
            .expect("client");
            let sub = SubscriberConfig {
                timeout: Duration::from_secs(1),
                max_in_flight: 10,
                ..SubscriberConfig::new(
                    SubscriberId::new("a").expect("id"),
                    url::Url::parse("http://127.0.0.1:9/hook").expect("url"),
                )
            };
            let dispatcher = Dispatcher::start(store, client, vec![sub])
                .await
                .expect("dispatcher");
            dispatcher.pause("a", "fuzzing").await.expect("pause");
            let state = ApiState::new(
                dispatcher,
                ApiOptions {
                    api_token: None,
                    max_payload_bytes: MAX_PAYLOAD,
                    metrics: None,
                    reload: None,
                    spans: None,
                },
            );
            router(state)
        });
        Target {
            runtime,
            app,
            _dir: dir,
        }
    })
}

fn post(path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let t = target();
    t.runtime.block_on(async {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_vec()))
            .expect("request");
        let mut app = t.app.clone();
        let response = app.call(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("answer body");
        (status, bytes.to_vec())
    })
}

fn check(path: &str, body: &[u8]) {
    let (status, answer) = post(path, body);
    let json: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
        panic!(
            "{path}: HTTP {status} answer is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&answer)
        )
    });
    match status {
        202 => {
            assert!(
                serde_json::from_slice::<&serde_json::value::RawValue>(body).is_ok(),
                "{path}: acknowledged a body that is not JSON: {:?}",
                String::from_utf8_lossy(body)
            );
            if path == "/v1/events" {
                assert!(json["event_id"].is_string(), "{path}: {json}");
                assert!(json["deliveries"].is_array(), "{path}: {json}");
            } else {
                assert!(json["results"].is_array(), "{path}: {json}");
            }
        }
        400 | 404 | 413 => {
            assert!(json["error"].is_string(), "{path}: {json}");
            let message = json["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{path}: {json}");
        }
        other => panic!("{path}: unexpected HTTP {other}: {json}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check("/v1/events", data);
    check("/v1/events/batch", data);
});
