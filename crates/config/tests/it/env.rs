//! `${VAR}` expansion, through the public API with an explicit environment.

use herald_core::AuthConfig;

use crate::support::{assert_has, Fixture};

#[test]
fn variables_expand_in_both_file_kinds() {
    let fixture =
        Fixture::new("[server]\napi_token = \"${TOKEN}\"\n[storage]\npath = \"${DATA}/herald\"\n");
    fixture.sub(
        "acme.toml",
        "url = \"https://${HOST}/webhook\"\nevents = [\"${EVENT}\", \"B\"]\nheaders = { \"X-Tenant\" = \"${TENANT}\" }\n\
         [auth]\ntype = \"api_key\"\nkey = \"X-API-Key:${KEY}\"\n",
    );
    let config = fixture
        .load_env(&[
            ("TOKEN", "t"),
            ("DATA", "/srv"),
            ("HOST", "hooks.acme.example"),
            ("EVENT", "A"),
            ("TENANT", "acme"),
            ("KEY", "k3y"),
        ])
        .unwrap();
    assert_eq!(config.storage.path, std::path::Path::new("/srv/herald"));
    let sub = &config.subscribers[0];
    assert_eq!(sub.url.host_str(), Some("hooks.acme.example"));
    assert_eq!(sub.events.to_vec(), ["A", "B"]);
    assert_eq!(sub.headers, vec![("X-Tenant".into(), "acme".into())]);
    assert!(matches!(&sub.auth, AuthConfig::ApiKey { value, .. } if value.expose() == "k3y"));
}

#[test]
fn missing_variables_name_file_key_and_variable() {
    let fixture = Fixture::new("[server]\napi_token = \"${HERALD_API_TOKEN}\"\n");
    fixture.sub(
        "acme.toml",
        "url = \"${ACME_URL}\"\nevents = [\"E\"]\n[signing]\nscheme = \"sha256-v1\"\nsecret = [\"${NEW}\", \"${OLD}\"]\n",
    );
    let errors = fixture.load().unwrap_err();
    assert_has(
        &errors,
        "herald.toml",
        "server.api_token",
        "`HERALD_API_TOKEN` is not set",
    );
    assert_has(&errors, "acme.toml", "url", "`ACME_URL` is not set");
    assert_has(
        &errors,
        "acme.toml",
        "signing.secret[0]",
        "`NEW` is not set",
    );
    assert_has(
        &errors,
        "acme.toml",
        "signing.secret[1]",
        "`OLD` is not set",
    );
    assert_eq!(errors.len(), 4, "{errors}");
}

#[test]
fn escapes_and_malformed_references() {
    let fixture = Fixture::new("");
    fixture.sub(
        "acme.toml",
        "url = \"https://x.example/\"\nevents = [\"$${LITERAL}\", \"cost $5\"]\n",
    );
    let config = fixture.load().unwrap();
    assert_eq!(
        config.subscribers[0].events.to_vec(),
        ["${LITERAL}", "cost $5"]
    );

    fixture.sub(
        "acme.toml",
        "url = \"https://x.example/${\"\nevents = [\"${9x}\"]\n",
    );
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "acme.toml", "url", "unterminated");
    assert_has(
        &errors,
        "acme.toml",
        "events[0]",
        "not a valid variable reference",
    );
}

#[test]
fn expansion_problems_and_unknown_keys_are_reported_together() {
    let fixture = Fixture::new("");
    fixture.sub(
        "acme.toml",
        "url = \"${NOPE}\"\nevents = [\"E\"]\nbogus = 1\n",
    );
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "acme.toml", "url", "`NOPE`");
    assert_has(&errors, "acme.toml", "bogus", "unknown key");
}

#[test]
fn an_empty_variable_is_set_but_empty() {
    let fixture = Fixture::new("[server]\napi_token = \"${TOKEN}\"\n");
    let errors = fixture.load_env(&[("TOKEN", "")]).unwrap_err();
    assert_has(&errors, "herald.toml", "server.api_token", "empty");
}

#[test]
fn load_uses_the_process_environment() {
    // Only reads variables every test environment has; never mutates the environment.
    let Ok(path) = std::env::var("PATH") else {
        return;
    };
    let fixture = Fixture::new("");
    fixture.sub(
        "acme.toml",
        "url = \"https://x.example/\"\nevents = [\"${PATH}\"]\n",
    );
    let config = herald_config::load(&fixture.daemon()).unwrap();
    assert_eq!(config.subscribers[0].events.to_vec(), [path]);
}
