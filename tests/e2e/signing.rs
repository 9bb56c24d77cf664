//! Signing key expiry through the real binary: `herald check` warns about a secret past its
//! `not_after` and refuses a list with nothing left to sign with; the daemon signs with the
//! valid secrets only, verified the way the official Standard Webhooks libraries do.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::harness::{run_herald, Config, Herald, Received, Receiver, Sub};

const NEW: &str = "whsec_bmV3LXNpZ25pbmcta2V5LTIwMjY=";
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn signed(name: &str, url: &str, secret_list: &str) -> Sub {
    Sub::new(name, url).extra(&format!(
        "[signing]\nscheme = \"standard-webhooks\"\nsecret = {secret_list}\n"
    ))
}

async fn check(path: &Path) -> (Output, String, String) {
    let out = run_herald(
        vec!["check".into(), "-c".into(), path.display().to_string()],
        vec![],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Whether some `v1,` signature of the request verifies with `secret`.
fn verifies(req: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            req.header("webhook-id").unwrap(),
            req.header("webhook-timestamp").unwrap()
        )
        .as_bytes(),
    );
    mac.update(&req.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    req.header("webhook-signature")
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_expired_secrets_and_refuses_when_none_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let expired_one = format!(
        "[\"{NEW}\", {{ secret = \"{OLD}\", not_after = \"2020-01-01T00:00:00Z\" }}, \
         {{ secret = \"{OLD}\", not_after = \"2999-01-01T00:00:00Z\" }}]"
    );
    let path = Config::default()
        .sub(signed("acme", "http://127.0.0.1:9/a", &expired_one))
        .write(dir.path());
    let (out, stdout, stderr) = check(&path).await;
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("OK"), "{stdout}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("acme.toml"), "{stderr}");
    assert!(
        warnings[0].contains("signing.secret[1].not_after"),
        "{stderr}"
    );
    assert!(warnings[0].contains("2020-01-01T00:00:00Z"), "{stderr}");
    assert!(!stderr.contains("MfKQ9r8"), "{stderr}");

    // Every secret expired: an error naming file and key, non-zero exit.
    let all_expired = format!("[{{ secret = \"{NEW}\", not_after = \"2020-01-01T00:00:00Z\" }}]");
    std::fs::write(
        dir.path().join("subscribers/acme.toml"),
        signed("acme", "http://127.0.0.1:9/a", &all_expired).render(),
    )
    .unwrap();
    let (out, stdout, stderr) = check(&path).await;
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("acme.toml: signing.secret: every secret"),
        "{stderr}"
    );

    // A bad not_after: an error naming file and key.
    let bad = format!("[{{ secret = \"{NEW}\", not_after = \"31/12/2026\" }}]");
    std::fs::write(
        dir.path().join("subscribers/acme.toml"),
        signed("acme", "http://127.0.0.1:9/a", &bad).render(),
    )
    .unwrap();
    let (out, _, stderr) = check(&path).await;
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("acme.toml: signing.secret[0].not_after: \"31/12/2026\" is not an RFC 3339"),
        "{stderr}"
    );
}

/// The daemon signs with the secrets still valid: the receiver verifies with the new secret
/// and the one expiring in 2999, never with the one that expired in 2020; the start-up log
/// warns about the expired one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_signs_with_valid_secrets_only() {
    const LATER: &str = "whsec_bGF0ZXItc2lnbmluZy1rZXk=";
    let rx = Receiver::start().await;
    let list = format!(
        "[\"{NEW}\", {{ secret = \"{OLD}\", not_after = 2020-01-01T00:00:00Z }}, \
         {{ secret = \"{LATER}\", not_after = \"2999-01-01T00:00:00Z\" }}]"
    );
    let h = Herald::start(Config::default().sub(signed("acme", &rx.url("/a"), &list))).await;
    let id = h
        .ingest(&json!({"event_type": "X", "payload": {"n": 1}}))
        .await["deliveries"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.wait_delivery(&id, "delivered", Duration::from_secs(10))
        .await;
    let req = rx.requests().into_iter().next().unwrap();
    assert_eq!(
        req.header("webhook-signature").unwrap().split(' ').count(),
        2
    );
    assert!(verifies(&req, NEW));
    assert!(verifies(&req, LATER));
    assert!(!verifies(&req, OLD));
    let log = h.log_text();
    assert!(
        log.contains("signing.secret[1].not_after") && log.contains("WARN"),
        "{log}"
    );
    h.assert_no_panic();
}
