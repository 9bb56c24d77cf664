//! Both signature schemes, verified the way a receiver would.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use std::time::Duration;

use herald_core::{SigningConfig, SigningScheme, SigningSecret, UnixMillis};
use herald_delivery::signing::{SignInput, Signer, StandardWebhooks};
use herald_delivery::DeliveryError;
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

/// What the official `standardwebhooks` libraries' `Webhook::verify` does with the three
/// headers: refuse a timestamp more than 5 minutes from `now`, then accept when any
/// space-separated `v1,<sig>` of `webhook-signature` equals the HMAC of `{id}.{ts}.{body}`
/// under the base64-decoded secret (after `whsec_`).
fn official_verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    const TOLERANCE_SECS: i64 = 5 * 60;
    let ts: i64 = timestamp.parse().map_err(|_| "invalid timestamp")?;
    if now_secs - ts > TOLERANCE_SECS {
        return Err("message timestamp too old");
    }
    if ts > now_secs + TOLERANCE_SECS {
        return Err("message timestamp too new");
    }
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "invalid secret")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| "invalid key")?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let matched = signature
        .split(' ')
        .filter_map(|versioned| versioned.split_once(','))
        .any(|(version, sig)| version == "v1" && sig == expected);
    if matched {
        Ok(())
    } else {
        Err("no matching signature found")
    }
}

/// The specification's published example (Standard Webhooks, "Verifying webhooks").
const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TS: u64 = 1_614_265_330;
const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn vector_input(timestamp: u64) -> SignInput<'static> {
    SignInput {
        delivery_id: VECTOR_ID,
        timestamp,
        attempt: 1,
        body: VECTOR_BODY,
    }
}

fn signature_header(signer: &StandardWebhooks, input: &SignInput<'_>) -> Option<String> {
    let mut headers = http::HeaderMap::new();
    signer.sign(input, &mut headers).ok()?;
    Some(headers["webhook-signature"].to_str().unwrap().to_owned())
}

#[test]
fn official_vector_before_and_after_not_after() {
    // The official verifier accepts the published signature (and our reading of it is right).
    let now = VECTOR_TS as i64;
    let ts = VECTOR_TS.to_string();
    official_verify(
        VECTOR_SECRET,
        VECTOR_ID,
        &ts,
        VECTOR_SIGNATURE,
        VECTOR_BODY,
        now,
    )
    .unwrap();
    assert!(official_verify(
        VECTOR_SECRET,
        VECTOR_ID,
        &ts,
        VECTOR_SIGNATURE,
        VECTOR_BODY,
        now + 301
    )
    .is_err());

    // The vector's secret expires at the vector's second; a newer secret takes over.
    let sub = herald_core::SubscriberId::new("acme").unwrap();
    const NEW: &str = "whsec_bmV3LXNpZ25pbmcta2V5LTIwMjY=";
    let signer = StandardWebhooks::new(
        &sub,
        &[
            SigningSecret::new(NEW),
            SigningSecret::until(VECTOR_SECRET, UnixMillis(VECTOR_TS * 1000)),
        ],
    )
    .unwrap();

    // At its not_after the old secret still signs: the header carries the published signature
    // next to the new one, and receivers holding either secret verify.
    let before = signature_header(&signer, &vector_input(VECTOR_TS)).unwrap();
    assert_eq!(before.split(' ').count(), 2, "{before}");
    assert!(before.split(' ').any(|s| s == VECTOR_SIGNATURE), "{before}");
    official_verify(VECTOR_SECRET, VECTOR_ID, &ts, &before, VECTOR_BODY, now).unwrap();
    official_verify(NEW, VECTOR_ID, &ts, &before, VECTOR_BODY, now).unwrap();

    // One second later it no longer signs: only the new secret verifies.
    let later = VECTOR_TS + 1;
    let ts = later.to_string();
    let after = signature_header(&signer, &vector_input(later)).unwrap();
    assert_eq!(after.split(' ').count(), 1, "{after}");
    official_verify(NEW, VECTOR_ID, &ts, &after, VECTOR_BODY, now + 1).unwrap();
    assert_eq!(
        official_verify(VECTOR_SECRET, VECTOR_ID, &ts, &after, VECTOR_BODY, now + 1),
        Err("no matching signature found")
    );

    // With the expired secret alone, nothing is signed at all.
    let alone = StandardWebhooks::new(
        &sub,
        &[SigningSecret::until(
            VECTOR_SECRET,
            UnixMillis(VECTOR_TS * 1000),
        )],
    )
    .unwrap();
    assert_eq!(
        signature_header(&alone, &vector_input(VECTOR_TS)).as_deref(),
        Some(VECTOR_SIGNATURE)
    );
    let err = alone
        .sign(&vector_input(later), &mut http::HeaderMap::new())
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::SigningSecretsExpired { .. }),
        "{err}"
    );
}

/// A secret stops signing at its `not_after` on a running endpoint (no rebuild, no reload):
/// attempts through a real receiver, verified the official way.
#[tokio::test]
async fn a_secret_expires_on_a_running_endpoint() {
    const NEW: &str = "whsec_bmV3LXNpZ25pbmcta2V5LTIwMjY=";
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    // Expires at the end of the next whole second.
    let not_after = UnixMillis((UnixMillis::now().as_secs() + 1) * 1000);
    cfg.signing = Some(SigningConfig {
        scheme: SigningScheme::StandardWebhooks,
        secrets: vec![
            SigningSecret::new(NEW),
            SigningSecret::until(VECTOR_SECRET, not_after),
        ],
    });
    let endpoint = endpoint(&cfg);
    let verify = |seen: &Recorded, secret: &str| {
        official_verify(
            secret,
            seen.header("webhook-id"),
            seen.header("webhook-timestamp"),
            seen.header("webhook-signature"),
            &seen.body,
            UnixMillis::now().as_secs() as i64,
        )
    };

    assert_eq!(
        endpoint.attempt(request(1, PAYLOAD)).await.verdict,
        Verdict::Success
    );
    let first = &receiver.requests()[0];
    assert!(first.header("webhook-timestamp").parse::<u64>().unwrap() <= not_after.as_secs());
    verify(first, NEW).unwrap();
    verify(first, VECTOR_SECRET).unwrap();

    while UnixMillis::now().as_secs() <= not_after.as_secs() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        endpoint.attempt(request(2, PAYLOAD)).await.verdict,
        Verdict::Success
    );
    let second = &receiver.requests()[1];
    assert_eq!(second.header("webhook-signature").split(' ').count(), 1);
    verify(second, NEW).unwrap();
    assert_eq!(
        verify(second, VECTOR_SECRET),
        Err("no matching signature found")
    );
}

/// Every secret expired: the attempt fails with a clear text and nothing reaches the receiver,
/// neither unsigned nor signed with an expired key.
#[tokio::test]
async fn nothing_is_sent_when_every_secret_has_expired() {
    for scheme in [
        SigningScheme::StandardWebhooks,
        SigningScheme::Sha256V1 {
            header_prefix: "webhook".to_owned(),
        },
    ] {
        let receiver = Receiver::ok().await;
        let mut cfg = subscriber(receiver.url("/"));
        cfg.signing = Some(SigningConfig {
            scheme,
            secrets: vec![SigningSecret::until(
                VECTOR_SECRET,
                UnixMillis::now().minus(Duration::from_secs(5)),
            )],
        });
        let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
        assert_eq!(result.verdict, Verdict::Failure);
        let error = result.error.unwrap_or_default();
        assert!(error.contains("not_after"), "{error}");
        assert!(!error.contains("MfKQ9r8"), "{error}");
        assert_eq!(receiver.requests().len(), 0);
    }
}

#[tokio::test]
async fn standard_webhooks_signature_verifies() {
    const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OLD: &str = "whsec_b2xkLXNlY3JldC1rZXktMTIzNDU2Nzg5MA==";
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.signing = Some(SigningConfig {
        scheme: SigningScheme::StandardWebhooks,
        secrets: vec![SigningSecret::new(NEW), SigningSecret::new(OLD)],
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
        secrets: vec![SigningSecret::new("shared-secret")],
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
        secrets: vec![SigningSecret::new("k")],
    });
    endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    let seen = &receiver.requests()[0];
    assert_eq!(seen.header("webhook-version"), "1");
    assert_eq!(seen.header("webhook-delivery-attempt"), "1");
    assert_eq!(seen.header("webhook-signature").len(), 64);
}
