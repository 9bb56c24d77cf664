//! Delivery throughput and signing cost.
//!
//! - `attempt/concurrency/{1,64,256}`: complete attempts per second against a keep-alive axum
//!   receiver on 127.0.0.1 in the same process (answering 204), with that many attempts in
//!   flight at all times. The receiver shares the runtime and the cores with the sender, so
//!   the numbers are a floor for the sender alone.
//! - `attempt/signed+api_key/64`: the same at concurrency 64 with standard-webhooks signing and
//!   an api_key header, the realistic per-request work.
//! - `sign/{standard-webhooks,sha256-v1}/{1,64}KiB`: signing cost (throughput in bytes).
//!
//! Run: `cargo bench --bench delivery -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::Router;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_core::{
    AuthConfig, DeliveryId, Secret, SecurityPolicy, SigningConfig, SigningScheme, SigningSecret,
    SubscriberConfig, SubscriberId,
};
use herald_delivery::signing::{Sha256V1, SignInput, Signer, StandardWebhooks};
use herald_delivery::{AttemptRequest, Endpoint, HttpClient, Verdict};
mod support;
use support::runtime;
use tokio::task::JoinSet;

/// A typical event payload (~200 bytes of JSON).
const PAYLOAD: &[u8] = br#"{"processId":"8263a268-5388-492a-bca2-28e1ff4a69f0","state":"PROCESS_STATE_FINISHED","flow":"id","lastEvent":"EVENT_TYPE_PROCESS_CREATED","lastEventDescription":"Process created"}"#;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn start_receiver() -> SocketAddr {
    let app = Router::new().fallback(|_body: Bytes| async { StatusCode::NO_CONTENT });
    support::serve(app).await
}

fn subscriber(addr: SocketAddr) -> SubscriberConfig {
    SubscriberConfig {
        max_in_flight: 500,
        headers: vec![("X-Tenant".to_owned(), "bench".to_owned())],
        ..SubscriberConfig::new(
            SubscriberId::new("bench").expect("id"),
            format!("http://{addr}/hook").parse().expect("url"),
        )
    }
}

/// `concurrency` tasks each doing `per_task` attempts back to back; returns the wall time.
async fn run(endpoint: Arc<Endpoint>, concurrency: usize, per_task: u64) -> Duration {
    let payload = Bytes::from_static(PAYLOAD);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let endpoint = Arc::clone(&endpoint);
        let payload = payload.clone();
        tasks.spawn(async move {
            for attempt in 0..per_task {
                let result = endpoint
                    .attempt(AttemptRequest {
                        delivery_id: DeliveryId::generate(),
                        attempt: u32::try_from(attempt % 10 + 1).unwrap_or(1),
                        payload: payload.clone(),
                        traceparent: None,
                    })
                    .await;
                assert_eq!(result.verdict, Verdict::Success, "{result:?}");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("attempt task");
    }
    start.elapsed()
}

fn attempts(c: &mut Criterion) {
    let rt = runtime();
    let addr = rt.block_on(start_receiver());
    let client = HttpClient::new(SecurityPolicy {
        allow_http: true,
        allow_private_networks: true,
    })
    .expect("client");
    let plain = Arc::new(Endpoint::new(&subscriber(addr), &client).expect("endpoint"));
    let mut signed_cfg = subscriber(addr);
    signed_cfg.auth = AuthConfig::ApiKey {
        header: "X-API-Key".to_owned(),
        value: Secret::new("abc123"),
    };
    signed_cfg.signing = Some(SigningConfig {
        scheme: SigningScheme::StandardWebhooks,
        secrets: vec![SigningSecret::new(SECRET)],
    });
    let signed = Arc::new(Endpoint::new(&signed_cfg, &client).expect("endpoint"));

    let mut group = c.benchmark_group("attempt");
    let cases = [
        ("concurrency", 1usize, &plain),
        ("concurrency", 64, &plain),
        ("concurrency", 256, &plain),
        ("signed+api_key", 64, &signed),
    ];
    for (name, concurrency, endpoint) in cases {
        group.throughput(Throughput::Elements(concurrency as u64));
        group.bench_with_input(
            BenchmarkId::new(name, concurrency),
            &concurrency,
            |b, &concurrency| {
                b.to_async(&rt)
                    .iter_custom(|iters| run(Arc::clone(endpoint), concurrency, iters));
            },
        );
    }
    group.finish();
}

fn signing(c: &mut Criterion) {
    let sub = SubscriberId::new("bench").expect("id");
    let standard = StandardWebhooks::new(&sub, &[SigningSecret::new(SECRET)]).expect("signer");
    let sha =
        Sha256V1::new(&sub, "webhook", &[SigningSecret::new("shared-secret")]).expect("signer");
    let signers: [(&str, &dyn Signer); 2] = [("standard-webhooks", &standard), ("sha256-v1", &sha)];
    let id = DeliveryId::generate().to_string();

    let mut group = c.benchmark_group("sign");
    for kib in [1usize, 64] {
        let body = vec![b'x'; kib * 1024];
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (name, signer) in signers {
            group.bench_with_input(
                BenchmarkId::new(name, format!("{kib}KiB")),
                &body,
                |b, body| {
                    let mut headers = axum::http::HeaderMap::new();
                    b.iter(|| {
                        let input = SignInput {
                            delivery_id: &id,
                            timestamp: 1_700_000_000,
                            attempt: 1,
                            body,
                        };
                        signer.sign(black_box(&input), &mut headers).expect("sign");
                        black_box(&headers);
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, attempts, signing);
criterion_main!(benches);
