//! The SSRF guard, the http:// policy, and secrets staying out of Debug and errors.

use herald_core::{
    AuthConfig, Secret, SecurityPolicy, SigningConfig, SigningScheme, SigningSecret,
};
use herald_delivery::{DeliveryError, Endpoint, HttpClient, Verdict};
use url::Url;

use crate::support::*;

fn guarded_client() -> HttpClient {
    HttpClient::new(SecurityPolicy {
        allow_http: true,
        allow_private_networks: false,
    })
    .unwrap()
}

#[tokio::test]
async fn loopback_ip_literal_is_refused_and_receives_nothing() {
    let receiver = Receiver::ok().await;
    let endpoint = Endpoint::new(&subscriber(receiver.url("/")), &guarded_client()).unwrap();
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    assert_eq!(result.status_code, None);
    assert_eq!(
        result.error.as_deref(),
        Some("blocked: 127.0.0.1 is a loopback address")
    );
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn names_resolving_to_loopback_are_refused_and_receive_nothing() {
    let receiver = Receiver::ok().await;
    let url = Url::parse(&format!("http://localhost:{}/", receiver.port())).unwrap();
    let endpoint = Endpoint::new(&subscriber(url), &guarded_client()).unwrap();
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(result.verdict, Verdict::Failure);
    let error = result.error.unwrap();
    assert!(
        error.starts_with("blocked: localhost resolves to ")
            && error.ends_with("a loopback address"),
        "{error}"
    );
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn private_networks_can_be_allowed() {
    let receiver = Receiver::ok().await;
    let client = HttpClient::new(SecurityPolicy {
        allow_http: true,
        allow_private_networks: true,
    })
    .unwrap();
    let url = Url::parse(&format!("http://localhost:{}/", receiver.port())).unwrap();
    let result = Endpoint::new(&subscriber(url), &client)
        .unwrap()
        .attempt(request(1, PAYLOAD))
        .await;
    assert_eq!(result.verdict, Verdict::Success, "{result:?}");
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn token_endpoint_is_guarded_too() {
    let idp = TokenServer::start(TokenMode::Issue { expires_in: None }).await;
    let mut cfg = subscriber(Url::parse("http://93.184.215.14/").unwrap());
    cfg.auth = idp.auth();
    let endpoint = Endpoint::new(&cfg, &guarded_client()).unwrap();
    let result = endpoint.attempt(request(1, PAYLOAD)).await;
    assert_eq!(
        result.error.as_deref(),
        Some("oauth2 token request failed: blocked: 127.0.0.1 is a loopback address")
    );
    assert_eq!(idp.requests(), 0);
}

#[test]
fn http_urls_are_refused_unless_allowed() {
    let strict = HttpClient::new(SecurityPolicy::default()).unwrap();
    let http = subscriber(Url::parse("http://hooks.example/x").unwrap());
    let err = Endpoint::new(&http, &strict).unwrap_err();
    assert!(
        matches!(err, DeliveryError::HttpNotAllowed { what: "url", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("allow_http"), "{err}");

    let https = subscriber(Url::parse("https://hooks.example/x").unwrap());
    assert!(Endpoint::new(&https, &strict).is_ok());

    let ftp = subscriber(Url::parse("ftp://hooks.example/x").unwrap());
    assert!(matches!(
        Endpoint::new(&ftp, &strict).unwrap_err(),
        DeliveryError::UnsupportedScheme { .. }
    ));

    let mut oauth = https.clone();
    oauth.auth = AuthConfig::OAuth2 {
        token_url: Url::parse("http://idp.example/token").unwrap(),
        client_id: "c".to_owned(),
        client_secret: Secret::new("s"),
        scopes: Vec::new(),
    };
    assert!(matches!(
        Endpoint::new(&oauth, &strict).unwrap_err(),
        DeliveryError::HttpNotAllowed {
            what: "auth.token_url",
            ..
        }
    ));

    let lenient = HttpClient::new(SecurityPolicy {
        allow_http: true,
        allow_private_networks: false,
    })
    .unwrap();
    assert!(Endpoint::new(&http, &lenient).is_ok());
}

#[test]
fn bad_static_headers_are_config_errors() {
    let client = open_client();
    let mut cfg = subscriber(Url::parse("https://hooks.example/").unwrap());
    cfg.headers = vec![("X-Ok".to_owned(), "bad\nvalue".to_owned())];
    let err = Endpoint::new(&cfg, &client).unwrap_err();
    assert!(
        matches!(err, DeliveryError::InvalidHeader { part: "value", .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("bad\nvalue"));
}

#[test]
fn debug_never_shows_secrets() {
    let client = open_client();
    let url = Url::parse("https://user:url-passw0rd@hooks.example/x?token=query-t0ken").unwrap();
    let signing = Some(SigningConfig {
        scheme: SigningScheme::StandardWebhooks,
        secrets: vec![SigningSecret::new("whsec_c2lnbmluZy1zZWNyZXQta2V5")],
    });
    let auths = [
        AuthConfig::Basic {
            credentials: Secret::new("user:basic-passw0rd"),
        },
        AuthConfig::ApiKey {
            header: "X-API-Key".to_owned(),
            value: Secret::new("api-k3y-value"),
        },
        AuthConfig::OAuth2 {
            token_url: Url::parse("https://idp.example/token").unwrap(),
            client_id: "client".to_owned(),
            client_secret: Secret::new("client-s3cret-value"),
            scopes: vec!["s".to_owned()],
        },
    ];
    let secrets = [
        "url-passw0rd",
        "query-t0ken",
        "c2lnbmluZy1zZWNyZXQta2V5",
        "basic-passw0rd",
        // base64("user:basic-passw0rd")
        "dXNlcjpiYXNpYy1wYXNzdzByZA",
        "api-k3y-value",
        "client-s3cret-value",
    ];
    for auth in auths {
        let mut cfg = subscriber(url.clone());
        cfg.auth = auth;
        cfg.signing = signing.clone();
        let endpoint = Endpoint::new(&cfg, &client).unwrap();
        let printed = format!("{endpoint:?} {endpoint:#?} {client:?}");
        for secret in secrets {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("hooks.example"), "{printed}");
    }
}
