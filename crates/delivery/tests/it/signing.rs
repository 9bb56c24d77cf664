//! Both signature schemes, verified the way a receiver would.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use herald_core::{Secret, SigningConfig, SigningScheme};
use herald_delivery::Verdict;

use crate::support::*;

/// What a Standard Webhooks receiver does: recompute the HMAC from the headers and body.
fn verify_standard_webhooks(seen: &Recorded, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            seen.header("webhook-id"),
            seen.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&seen.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    seen.header("webhook-signature")
        .split(' ')
        .any(|sig| sig == expected)
}

#[tokio::test]
async fn standard_webhooks_signature_verifies() {
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2Nzg5MA==";
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.signing = Some(SigningConfig {
        scheme: SigningScheme::StandardWebhooks,
        secrets: vec![Secret::new(NEW), Secret::new(OLD)],
    });
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Success);
    let seen = &receiver.requests()[0];
    let signature = seen.header("webhook-signature");
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    assert!(signature.split(' ').all(|s| s.starts_with("v1,")));
    assert!(verify_standard_webhooks(seen, NEW));
    assert!(verify_standard_webhooks(seen, OLD));
    assert!(!verify_standard_webhooks(seen, "whsec_d3Jvbmcta2V5"));
}

#[tokio::test]
async fn sha256_v1_headers() {
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.signing = Some(SigningConfig {
        scheme: SigningScheme::Sha256V1 {
            header_prefix: "unidy-webhook".to_owned(),
        },
        secrets: vec![Secret::new("shared-secret")],
    });
    let req = request(4, PAYLOAD);
    let id = req.delivery_id.to_string();
    let result = endpoint(&cfg).attempt(req).await;
    assert_eq!(result.verdict, Verdict::Success);
    let seen = &receiver.requests()[0];
    let mut hasher = Sha256::new();
    hasher.update(b"shared-secret");
    hasher.update(PAYLOAD);
    assert_eq!(
        seen.header("unidy-webhook-signature"),
        hex::encode(hasher.finalize())
    );
    assert_eq!(seen.header("unidy-webhook-version"), "1");
    assert_eq!(seen.header("unidy-webhook-delivery-id"), id);
    assert_eq!(seen.header("unidy-webhook-delivery-attempt"), "4");
    // The base protocol headers are there too.
    assert_eq!(seen.header("webhook-id"), id);
    assert!(seen.headers.get("webhook-signature").is_none());
}

#[tokio::test]
async fn sha256_v1_default_prefix() {
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.signing = Some(SigningConfig {
        scheme: SigningScheme::Sha256V1 {
            header_prefix: "webhook".to_owned(),
        },
        secrets: vec![Secret::new("k")],
    });
    endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    let seen = &receiver.requests()[0];
    assert_eq!(seen.header("webhook-version"), "1");
    assert_eq!(seen.header("webhook-delivery-attempt"), "1");
    assert_eq!(seen.header("webhook-signature").len(), 64);
}
