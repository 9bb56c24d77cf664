//! The configurations shipped in `config/` load on a fresh machine, with no environment.

use std::path::PathBuf;
use std::time::Duration;

use herald_core::{AuthConfig, EventFilter, SigningScheme};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn config_herald_toml_loads_with_an_empty_environment() {
    let path = repo().join("config/herald.toml");
    let config = match herald_config::load_with_env(&path, &|_| None) {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    };
    assert!(!config.security.allow_http);
    assert!(!config.security.allow_private_networks);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.api_token, None);
    assert_eq!(config.storage.path, repo().join("config/data/herald"));
    assert_eq!(config.subscribers_dir, repo().join("config/subscribers"));

    let ids: Vec<_> = config.subscribers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["crm", "idp-client", "legacy-erp", "unidy"]);
    let by_id = |id: &str| {
        config
            .subscribers
            .iter()
            .find(|s| s.id.as_str() == id)
            .unwrap()
    };

    let idp = by_id("idp-client");
    assert_eq!(idp.max_in_flight, 500);
    assert_eq!(
        idp.events,
        EventFilter::Only(vec!["PROCESS_STATE_FINISHED".into()])
    );
    assert!(matches!(idp.auth, AuthConfig::OAuth2 { .. }));

    let unidy = by_id("unidy");
    assert_eq!(unidy.timeout, Duration::from_secs(2));
    assert_eq!(unidy.retry.max_attempts, 25);
    assert_eq!(unidy.retry.max_age, Some(Duration::from_secs(21 * 86_400)));
    assert_eq!(
        unidy.signing.as_ref().unwrap().scheme,
        SigningScheme::Sha256V1 {
            header_prefix: "unidy-webhook".into()
        }
    );

    assert!(matches!(by_id("crm").auth, AuthConfig::ApiKey { .. }));
    assert!(matches!(by_id("legacy-erp").auth, AuthConfig::Basic { .. }));
    for sub in &config.subscribers {
        assert_eq!(sub.url.scheme(), "https", "{}", sub.id);
        assert!(
            sub.url.host_str().unwrap().ends_with(".example"),
            "{}",
            sub.id
        );
    }
}

#[test]
fn config_local_loads_with_an_empty_environment() {
    let path = repo().join("config/local/herald.toml");
    let config = match herald_config::load_with_env(&path, &|_| None) {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    };
    assert!(config.security.allow_http && config.security.allow_private_networks);
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        config.storage.path,
        repo().join("config/local/../../data/local")
    );
    assert_eq!(config.subscribers.len(), 1);
    let receiver = &config.subscribers[0];
    assert_eq!(receiver.id.as_str(), "receiver");
    assert_eq!(receiver.url.as_str(), "http://127.0.0.1:9000/webhook");
    assert_eq!(receiver.events, EventFilter::All);
    let signing = receiver.signing.as_ref().unwrap();
    assert_eq!(signing.scheme, SigningScheme::StandardWebhooks);
    assert!(signing.secrets[0].secret.expose().starts_with("whsec_"));
}
