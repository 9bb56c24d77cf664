//! Static auth: none, basic, api_key. (OAuth2 is in `oauth2.rs`.)

use herald_core::{AuthConfig, Secret};
use herald_delivery::Verdict;

use crate::support::*;

/// Delivers once with `auth` and returns the request the receiver saw.
async fn deliver_with(auth: AuthConfig) -> Recorded {
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.auth = auth;
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    let mut seen = receiver.requests();
    assert_eq!(seen.len(), 1);
    seen.remove(0)
}

#[tokio::test]
async fn none_sends_no_authorization() {
    let seen = deliver_with(AuthConfig::None).await;
    assert!(seen.headers.get("authorization").is_none());
}

#[tokio::test]
async fn basic_sends_base64_of_user_and_password() {
    let seen = deliver_with(AuthConfig::Basic {
        credentials: Secret::new("user:pa:ss"),
    })
    .await;
    // base64("user:pa:ss")
    assert_eq!(seen.header("authorization"), "Basic dXNlcjpwYTpzcw==");
}

/// `key = "X-API-Key:abc123"` → `X-API-Key: abc123`.
#[tokio::test]
async fn api_key_in_its_own_header() {
    let seen = deliver_with(AuthConfig::ApiKey {
        header: "X-API-Key".to_owned(),
        value: Secret::new("abc123"),
    })
    .await;
    assert_eq!(seen.header("x-api-key"), "abc123");
    assert!(seen.headers.get("authorization").is_none());
}

/// `key = "Authorization:Bearer abc"` → `Authorization: Bearer abc`.
#[tokio::test]
async fn api_key_as_a_bearer_authorization() {
    let seen = deliver_with(AuthConfig::ApiKey {
        header: "Authorization".to_owned(),
        value: Secret::new("Bearer abc"),
    })
    .await;
    assert_eq!(seen.header("authorization"), "Bearer abc");
}

/// `key = "abc123"` (no colon) → `Authorization: abc123`, no scheme added.
#[tokio::test]
async fn api_key_without_a_colon_is_a_bare_authorization() {
    let seen = deliver_with(AuthConfig::ApiKey {
        header: "Authorization".to_owned(),
        value: Secret::new("abc123"),
    })
    .await;
    assert_eq!(seen.header("authorization"), "abc123");
}

/// `key = "X-Token:abc:def"` → split on the first colon only: `X-Token: abc:def`.
#[tokio::test]
async fn api_key_value_keeps_later_colons() {
    let seen = deliver_with(AuthConfig::ApiKey {
        header: "X-Token".to_owned(),
        value: Secret::new("abc:def"),
    })
    .await;
    assert_eq!(seen.header("x-token"), "abc:def");
}

#[tokio::test]
async fn static_auth_does_not_resend_on_401() {
    let receiver = Receiver::start(Reply::status(401)).await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.auth = AuthConfig::Basic {
        credentials: Secret::new("user:wrong"),
    };
    let result = endpoint(&cfg).attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.error.as_deref(), Some("HTTP 401"));
    assert_eq!(receiver.count(), 1);
}
