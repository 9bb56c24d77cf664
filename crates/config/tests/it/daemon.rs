//! The daemon file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herald_core::SecurityPolicy;

use crate::support::{assert_has, Fixture, MINIMAL};

#[test]
fn empty_file_gets_the_documented_defaults() {
    let fixture = Fixture::new("");
    let config = fixture.load().unwrap();
    let root = fixture.dir.path();
    assert_eq!(config.path, fixture.daemon());
    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.server.api_token, None);
    assert_eq!(config.server.max_payload_bytes, 1_048_576);
    assert_eq!(config.storage.path, root.join("data/herald"));
    assert_eq!(config.storage.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(config.security, SecurityPolicy::default());
    assert_eq!(config.shutdown.grace, Duration::from_secs(30));
    assert_eq!(config.subscribers_dir, root.join("subscribers"));
    assert!(config.subscribers.is_empty());
}

#[test]
fn the_spec_example_loads() {
    let fixture = Fixture::new(
        r#"
subscribers_dir = "subscribers"

[server]
listen = "0.0.0.0:9090"
api_token = "${HERALD_API_TOKEN}"
max_payload_bytes = 2048

[storage]
path = "/var/lib/herald"
retention = "30d"

[security]
allow_http = true
allow_private_networks = true

[shutdown]
grace = "0s"
"#,
    );
    let config = fixture.load_env(&[("HERALD_API_TOKEN", "tok")]).unwrap();
    assert_eq!(config.server.listen.port(), 9090);
    assert_eq!(config.server.api_token.unwrap().expose(), "tok");
    assert_eq!(config.server.max_payload_bytes, 2048);
    assert_eq!(
        config.storage.path,
        Path::new("/var/lib/herald"),
        "absolute paths stay"
    );
    assert_eq!(config.storage.retention, Duration::from_secs(30 * 86_400));
    assert!(config.security.allow_http && config.security.allow_private_networks);
    assert_eq!(config.shutdown.grace, Duration::ZERO);
}

#[test]
fn relative_paths_follow_the_daemon_file_not_the_working_directory() {
    let fixture = Fixture::new("subscribers_dir = \"subs\"\n[storage]\npath = \"../db\"\n");
    std::fs::create_dir(fixture.dir.path().join("subs")).unwrap();
    std::fs::write(fixture.dir.path().join("subs/acme.toml"), MINIMAL).unwrap();
    let config = fixture.load().unwrap();
    assert_eq!(config.subscribers_dir, fixture.dir.path().join("subs"));
    assert_eq!(config.storage.path, fixture.dir.path().join("../db"));
    assert_eq!(config.subscribers.len(), 1);
}

#[test]
fn bad_values_name_the_key() {
    for (text, key, fragment) in [
        (
            "[server]\nlisten = \"localhost\"\n",
            "server.listen",
            "127.0.0.1:8080",
        ),
        ("[server]\nlisten = 8080\n", "server.listen", "invalid type"),
        (
            "[server]\nmax_payload_bytes = 0\n",
            "server.max_payload_bytes",
            "positive",
        ),
        (
            "[server]\nmax_payload_bytes = -5\n",
            "server.max_payload_bytes",
            "positive",
        ),
        ("[server]\napi_token = \"\"\n", "server.api_token", "empty"),
        (
            "[server]\napi_token = 5\n",
            "server.api_token",
            "invalid type",
        ),
        ("[storage]\npath = \"\"\n", "storage.path", "empty"),
        (
            "[storage]\nretention = \"0s\"\n",
            "storage.retention",
            "longer than zero",
        ),
        ("[storage]\nretention = 7\n", "storage.retention", "\"21d\""),
        (
            "[storage]\nretention = \"a week\"\n",
            "storage.retention",
            "invalid duration",
        ),
        (
            "[security]\nallow_http = \"yes\"\n",
            "security.allow_http",
            "invalid type",
        ),
        (
            "[shutdown]\ngrace = \"forever\"\n",
            "shutdown.grace",
            "invalid duration",
        ),
        ("subscribers_dir = \"\"\n", "subscribers_dir", "empty"),
        ("[server]\nport = 1\n", "server.port", "unknown key"),
        ("[metrics]\nenabled = true\n", "metrics", "unknown key"),
        ("verbose = true\n", "verbose", "unknown key"),
        ("[server\n", "", "TOML syntax error at line 1"),
    ] {
        let fixture = Fixture::new(text);
        let errors = fixture.load().unwrap_err();
        assert_has(&errors, "herald.toml", key, fragment);
    }
}

#[test]
fn daemon_and_subscriber_problems_are_reported_together() {
    let fixture = Fixture::new("[server]\nmax_payload_bytes = 0\n[shutdown]\ngrace = \"x\"\n");
    fixture.sub("acme.toml", "url = \"https://x.example/\"\n");
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "herald.toml", "server.max_payload_bytes", "");
    assert_has(&errors, "herald.toml", "shutdown.grace", "");
    assert_has(&errors, "acme.toml", "events", "missing");
    assert_eq!(errors.len(), 3, "{errors}");
}

#[test]
fn subscribers_are_checked_even_when_the_daemon_file_has_an_unknown_key() {
    let fixture = Fixture::new("bogus = 1\n[security]\nallow_http = true\n");
    fixture
        .sub("acme.toml", "url = \"http://x.example/\"\n")
        .sub("ok.toml", "url = \"http://x.example/\"\nevents = [\"E\"]\n");
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "herald.toml", "bogus", "unknown key");
    assert_has(&errors, "acme.toml", "events", "missing");
    assert_eq!(errors.len(), 2, "{errors}");

    // A syntax error in the daemon file leaves nothing to go on.
    let fixture = Fixture::new("[security\n");
    fixture.sub("acme.toml", "url = 1\n");
    assert_eq!(fixture.load().unwrap_err().len(), 1);
}

#[test]
fn the_security_policy_applies_to_subscribers() {
    let fixture = Fixture::new("[security]\nallow_http = true\n");
    fixture.sub(
        "acme.toml",
        "url = \"http://hooks.acme.example/\"\nevents = [\"E\"]\n",
    );
    assert!(fixture.load().is_ok());
    let fixture = Fixture::new("");
    fixture.sub(
        "acme.toml",
        "url = \"http://hooks.acme.example/\"\nevents = [\"E\"]\n",
    );
    assert_has(
        &fixture.load().unwrap_err(),
        "acme.toml",
        "url",
        "allow_http",
    );
}

#[test]
fn an_unreadable_daemon_file_is_named() {
    let errors =
        herald_config::load_with_env(Path::new("/nonexistent/herald.toml"), &|_| None).unwrap_err();
    assert_has(&errors, "/nonexistent/herald.toml", "", "cannot be read");
    assert!(std::error::Error::source(&errors).is_none());
}

#[test]
fn alerts_name_a_configured_subscriber() {
    let fixture = Fixture::new("[alerts]\nsubscriber = \"ops\"\n");
    fixture.sub("ops.toml", MINIMAL).sub("acme.toml", MINIMAL);
    let config = fixture.load().unwrap();
    assert_eq!(
        config.alerts.subscriber.as_ref().map(|s| s.as_str()),
        Some("ops")
    );
    assert_eq!(Fixture::new("").load().unwrap().alerts.subscriber, None);

    let fixture = Fixture::new("[alerts]\nsubscriber = \"nobody\"\n");
    fixture.sub("acme.toml", MINIMAL);
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "herald.toml", "alerts.subscriber", "nobody");

    let fixture = Fixture::new("[alerts]\nsubscriber = \"a b\"\n");
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "herald.toml", "alerts.subscriber", "");
    let fixture = Fixture::new("[alerts]\nsubscribr = \"ops\"\n");
    assert!(fixture.load().is_err());
}
