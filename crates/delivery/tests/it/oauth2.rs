//! OAuth2 client credentials against a real token endpoint.

use std::sync::Arc;
use std::time::Duration;

use herald_core::{AuthConfig, Secret};
use herald_delivery::Verdict;

use crate::support::*;

fn oauth_endpoint(receiver: &Receiver, auth: AuthConfig) -> herald_delivery::Endpoint {
    let mut cfg = subscriber(receiver.url("/"));
    cfg.auth = auth;
    endpoint(&cfg)
}

#[tokio::test]
async fn sends_the_bearer_token_and_caches_it() {
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(3600),
    })
    .await;
    let receiver = Receiver::ok().await;
    let mut auth = idp.auth();
    if let AuthConfig::OAuth2 { scopes, .. } = &mut auth {
        *scopes = vec!["webhooks.write".to_owned(), "events".to_owned()];
    }
    let endpoint = oauth_endpoint(&receiver, auth);
    for _ in 0..3 {
        let result = endpoint.attempt(request(1, PAYLOAD)).await;
        assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    }
    assert_eq!(idp.requests(), 1);
    assert_eq!(idp.scopes(), ["webhooks.write events"]);
    for seen in receiver.requests() {
        assert_eq!(seen.header("authorization"), "Bearer token-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_deliveries_share_one_token_request() {
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(3600),
    })
    .await;
    idp.set_delay(Duration::from_millis(300));
    let receiver = Receiver::ok().await;
    let endpoint = Arc::new(oauth_endpoint(&receiver, idp.auth()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let endpoint = Arc::clone(&endpoint);
            tokio::spawn(async move { endpoint.attempt(request(1, PAYLOAD)).await })
        })
        .collect();
    for task in tasks {
        let result = task.await.unwrap();
        assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    }
    assert_eq!(idp.requests(), 1);
    let seen = receiver.requests();
    assert_eq!(seen.len(), 100);
    assert!(seen
        .iter()
        .all(|r| r.header("authorization") == "Bearer token-1"));
}

#[tokio::test]
async fn refreshes_before_expiry() {
    // A 1 s token is refreshed 100 ms (10 %) before it expires.
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(1),
    })
    .await;
    let receiver = Receiver::ok().await;
    let endpoint = oauth_endpoint(&receiver, idp.auth());
    assert_eq!(
        endpoint.attempt(request(1, PAYLOAD)).await.verdict,
        Verdict::Success
    );
    assert_eq!(
        endpoint.attempt(request(1, PAYLOAD)).await.verdict,
        Verdict::Success
    );
    assert_eq!(idp.requests(), 1, "still fresh");
    tokio::time::sleep(Duration::from_millis(950)).await;
    assert_eq!(
        endpoint.attempt(request(1, PAYLOAD)).await.verdict,
        Verdict::Success
    );
    assert_eq!(idp.requests(), 2);
    let auths = receiver.header_values("authorization");
    assert_eq!(
        auths,
        ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    );
}

/// Issue 11 item 1: `expires_in` of `u64::MAX` seconds overflowed `Instant` and panicked the
/// attempt. The lifetime is cut to a day: the token is used and cached.
#[tokio::test]
async fn an_absurd_expires_in_is_bounded_instead_of_overflowing_the_clock() {
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(u64::MAX),
    })
    .await;
    let receiver = Receiver::ok().await;
    let endpoint = oauth_endpoint(&receiver, idp.auth());
    for _ in 0..2 {
        let result = endpoint.attempt(request(1, PAYLOAD)).await;
        assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    }
    assert_eq!(idp.requests(), 1, "the bounded token is cached");
    assert_eq!(
        receiver.header_values("authorization"),
        ["Bearer token-1", "Bearer token-1"]
    );
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_resends_once() {
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(3600),
    })
    .await;
    let receiver = Receiver::ok().await;
    receiver.script([Reply::status(401)]);
    let endpoint = oauth_endpoint(&receiver, idp.auth());
    let result = endpoint.attempt(request(2, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    assert_eq!(result.status_code, Some(204));
    assert_eq!(idp.requests(), 2);
    let seen = receiver.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("authorization"), "Bearer token-1");
    assert_eq!(seen[1].header("authorization"), "Bearer token-2");
    // Same attempt: same id, timestamp, attempt number and body.
    for name in ["webhook-id", "webhook-timestamp", "webhook-attempt"] {
        assert_eq!(seen[0].header(name), seen[1].header(name), "{name}");
    }
    assert_eq!(seen[1].header("webhook-attempt"), "2");
    assert_eq!(seen[1].body.as_ref(), PAYLOAD);
    // The next attempt uses the refreshed token without asking again.
    endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(idp.requests(), 2);
    assert_eq!(
        receiver.requests()[2].header("authorization"),
        "Bearer token-2"
    );
}

#[tokio::test]
async fn a_second_401_is_a_failure_without_a_third_request() {
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(3600),
    })
    .await;
    let receiver = Receiver::start(Reply::status(401)).await;
    let endpoint = oauth_endpoint(&receiver, idp.auth());
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.status_code, Some(401));
    assert_eq!(result.error.as_deref(), Some("HTTP 401"));
    assert_eq!(receiver.count(), 2);
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn token_endpoint_down_fails_the_attempt_clearly() {
    let receiver = Receiver::ok().await;
    let endpoint = oauth_endpoint(
        &receiver,
        AuthConfig::OAuth2 {
            token_url: closed_port_url().await,
            client_id: CLIENT_ID.to_owned(),
            client_secret: Secret::new(CLIENT_SECRET),
            scopes: Vec::new(),
        },
    );
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.status_code, None);
    assert_eq!(
        result.error.as_deref(),
        Some("oauth2 token request failed: connection refused")
    );
    assert_eq!(receiver.count(), 0, "nothing sent without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_token_endpoint_is_asked_once_by_concurrent_attempts() {
    let idp = TokenServer::start(TokenMode::Fail(500)).await;
    idp.set_delay(Duration::from_millis(300));
    let receiver = Receiver::ok().await;
    let endpoint = Arc::new(oauth_endpoint(&receiver, idp.auth()));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let endpoint = Arc::clone(&endpoint);
            tokio::spawn(async move { endpoint.attempt(request(1, PAYLOAD)).await })
        })
        .collect();
    for task in tasks {
        let result = task.await.unwrap();
        assert_eq!(result.verdict, Verdict::Failure);
        assert_eq!(
            result.error.as_deref(),
            Some("oauth2 token request failed: token endpoint answered HTTP 500")
        );
    }
    assert_eq!(idp.requests(), 1);
    assert_eq!(receiver.count(), 0);
    // A later attempt asks again.
    endpoint.attempt(request(2, PAYLOAD)).await;
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn rejected_client_credentials_are_reported_without_the_secret() {
    let idp = TokenServer::start(TokenMode::Issue { expires_in: None }).await;
    let receiver = Receiver::ok().await;
    let endpoint = oauth_endpoint(&receiver, idp.auth_with_secret("wrong-s3cret-value"));
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(
        result.error.as_deref(),
        Some("oauth2 token request failed: token endpoint refused: invalid_client")
    );
    assert!(!format!("{result:?}").contains("s3cret"));
    // Basic was refused, so the credentials were offered once more in the body.
    assert_eq!(idp.requests(), 2);
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn an_endpoint_that_takes_credentials_only_in_the_body_gets_them_there_from_then_on() {
    let idp = TokenServer::start(TokenMode::Issue {
        expires_in: Some(1),
    })
    .await;
    idp.take_credentials_only_in_the_body();
    let receiver = Receiver::ok().await;
    let endpoint = oauth_endpoint(&receiver, idp.auth());
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    assert_eq!(idp.requests(), 2, "Basic refused, then the form body");
    // The 1 s token is refreshed 100 ms before expiry, straight in the body this time.
    tokio::time::sleep(Duration::from_millis(950)).await;
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    assert_eq!(idp.requests(), 3);
    let auths = receiver.header_values("authorization");
    assert_eq!(auths, ["Bearer token-1", "Bearer token-2"]);
}

#[tokio::test]
async fn token_request_has_its_own_timeout() {
    let idp = TokenServer::start(TokenMode::Issue { expires_in: None }).await;
    idp.set_delay(Duration::from_secs(10));
    let receiver = Receiver::ok().await;
    let mut cfg = subscriber(receiver.url("/"));
    cfg.auth = idp.auth();
    cfg.timeout = Duration::from_millis(400);
    let endpoint = endpoint(&cfg);
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(
        result.error.as_deref(),
        Some("oauth2 token request failed: timeout after 400ms")
    );
    assert!(result.duration < Duration::from_secs(2), "{result:?}");
    assert_eq!(receiver.count(), 0);
}
