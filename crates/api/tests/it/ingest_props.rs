//! Property tests of the ingest parser through the real router: whatever bytes arrive, the
//! answer is a JSON `202` for a valid request or a JSON error naming the problem; never a
//! panic, never an acknowledgement of something that is not JSON.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;

use crate::support::serve_paused;
use herald_api::ApiOptions;

/// A daemon's API on 127.0.0.1 with one (paused) subscriber `a`, shared by every case.
struct Api {
    runtime: tokio::runtime::Runtime,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let options = ApiOptions {
            max_payload_bytes: 4096,
            ..ApiOptions::default()
        };
        let (base, _store) = runtime.block_on(serve_paused(dir.path(), options));
        Api {
            runtime,
            base,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    })
}

/// POSTs `body` to `path`; the status and the parsed answer (which must be JSON).
fn post(path: &str, body: Vec<u8>) -> (u16, Value) {
    let api = api();
    api.runtime.block_on(async {
        let res = api
            .http
            .post(format!("{}{path}", api.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = res.bytes().await.unwrap();
        let answer: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("HTTP {status} answer is not JSON ({e}): {bytes:?}"));
        (status, answer)
    })
}

/// What every answer must look like.
fn check_answer(status: u16, answer: &Value, body: &[u8]) -> Result<(), TestCaseError> {
    match status {
        202 => {
            // Only a JSON document may ever be acknowledged (checked without a depth limit:
            // a batch is acknowledged even when a too-deep item fails on its own).
            prop_assert!(
                serde_json::from_slice::<&serde_json::value::RawValue>(body).is_ok(),
                "acknowledged a body that is not JSON: {:?}",
                String::from_utf8_lossy(body)
            );
        }
        400 | 404 | 413 | 422 => {
            prop_assert!(answer["error"].is_string(), "{answer}");
            let message = answer["message"].as_str().unwrap_or_default();
            prop_assert!(!message.is_empty(), "{answer}");
        }
        other => prop_assert!(false, "unexpected HTTP {other}: {answer}"),
    }
    Ok(())
}

/// A valid single-event body.
fn valid_event() -> impl Strategy<Value = Vec<u8>> {
    (
        "[A-Z_]{1,20}",
        prop_oneof![Just(None), Just(Some("a")), Just(Some("nobody"))],
        proptest::option::of("[a-z0-9-]{1,12}"),
        any::<i64>(),
        ".{0,40}",
    )
        .prop_map(|(event_type, subscriber, key, n, text)| {
            let mut event = serde_json::json!({
                "event_type": event_type,
                "payload": {"n": n, "text": text, "list": [1, null, true]},
            });
            if let Some(s) = subscriber {
                event["subscriber"] = s.into();
            }
            if let Some(k) = key {
                event["idempotency_key"] = k.into();
            }
            serde_json::to_vec(&event).unwrap()
        })
}

/// Byte-level damage to a body: deletions, insertions and overwrites at random places.
fn damaged(body: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = body.len();
    proptest::collection::vec((0..=len, any::<u8>(), 0u8..3), 1..6).prop_map(move |edits| {
        let mut out = body.clone();
        for (at, byte, kind) in edits {
            let at = at.min(out.len());
            match kind {
                0 if at < out.len() => {
                    out.remove(at);
                }
                1 => out.insert(at, byte),
                _ => {
                    if let Some(b) = out.get_mut(at) {
                        *b = byte;
                    }
                }
            }
        }
        out
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        valid_event(),
        valid_event().prop_flat_map(damaged),
        proptest::collection::vec(any::<u8>(), 0..300),
        (1usize..3000).prop_map(|depth| {
            format!(
                r#"{{"event_type":"X","payload":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes()
        }),
        (4000usize..6000).prop_map(|n| {
            format!(r#"{{"event_type":"X","payload":"{}"}}"#, "x".repeat(n)).into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn single_event_bodies_get_a_clear_answer(body in any_body()) {
        let (status, answer) = post("/v1/events", body.clone());
        check_answer(status, &answer, &body)?;
        if status == 202 {
            prop_assert!(answer["event_id"].is_string(), "{answer}");
            // What was accepted, a receiver's parser can read (serde_json stops at 128 levels).
            prop_assert!(serde_json::from_slice::<Value>(&body).is_ok(), "{:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn batch_bodies_get_a_clear_answer(items in proptest::collection::vec(any_body(), 0..8)) {
        let mut body = b"{\"events\":[".to_vec();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.extend_from_slice(b"]}");
        let (status, answer) = post("/v1/events/batch", body.clone());
        check_answer(status, &answer, &body)?;
        if status == 202 {
            let results = answer["results"].as_array().unwrap();
            // One result per item of the array as sent: a generated item that is empty (or only
            // whitespace) adds none (`[` + `` + `]` is an empty batch).
            let sent = items.iter().filter(|i| !i.iter().all(u8::is_ascii_whitespace)).count();
            prop_assert_eq!(results.len(), sent);
            for result in results {
                prop_assert!(
                    result["event_id"].is_string() || result["error"].is_string(),
                    "{}", result
                );
            }
        }
    }
}
