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

/// Daemon durations are bounded too: the bound loads, one second more names file and key.
#[test]
fn every_duration_is_bounded() {
    for (section, name, bound, over) in [
        ("storage", "retention", "3650d", "315360001s"),
        ("shutdown", "grace", "1h", "3601s"),
    ] {
        let config = Fixture::new(&format!("[{section}]\n{name} = \"{bound}\"\n"))
            .load()
            .unwrap();
        let got = match name {
            "retention" => config.storage.retention,
            _ => config.shutdown.grace,
        };
        assert_eq!(got, humantime::parse_duration(bound).unwrap(), "{name}");
        for value in [over, "300000000000y"] {
            let errors = Fixture::new(&format!("[{section}]\n{name} = \"{value}\"\n"))
                .load()
                .unwrap_err();
            assert_has(
                &errors,
                "herald.toml",
                &format!("{section}.{name}"),
                &format!("must be at most {bound}"),
            );
        }
    }
}

#[test]
fn storage_defaults_to_sled_with_no_cluster() {
    let config = Fixture::new("").load().unwrap();
    assert_eq!(config.storage.engine, herald_config::StorageEngine::Sled);
    assert_eq!(config.storage.url, None);
    assert_eq!(config.storage.pool_size, 16);
    assert_eq!(config.storage.database_target(), None);
    assert_eq!(config.cluster.node_id, None);
}

#[test]
fn the_spec_cluster_example_loads_and_hides_the_password() {
    let fixture = Fixture::new(
        r#"
[storage]
engine = "postgres"
url = "${HERALD_DATABASE_URL}"
pool_size = 8
retention = "7d"

[cluster]
node_id = "herald-a"
"#,
    );
    let config = fixture
        .load_env(&[(
            "HERALD_DATABASE_URL",
            "postgres://herald:pw-MARKER@db.internal:5433/herald",
        )])
        .unwrap();
    assert_eq!(
        config.storage.engine,
        herald_config::StorageEngine::Postgres
    );
    assert_eq!(
        config.storage.url.as_ref().unwrap().expose(),
        "postgres://herald:pw-MARKER@db.internal:5433/herald"
    );
    assert_eq!(config.storage.pool_size, 8);
    assert_eq!(config.cluster.node_id.as_deref(), Some("herald-a"));
    assert_eq!(
        config.storage.database_target().as_deref(),
        Some("db.internal:5433/herald")
    );
    assert!(!format!("{config:?}").contains("pw-MARKER"));
}

#[test]
fn storage_and_cluster_errors_name_the_key_never_the_url() {
    for (text, key, fragment) in [
        ("[storage]\nengine = \"mysql\"\n", "storage.engine", "not an engine"),
        ("[storage]\nengine = \"postgres\"\n", "storage.url", "required"),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"mysql://u:pw-MARKER@h/db\"\n",
            "storage.url",
            "not a database URL",
        ),
        (
            "[storage]\nurl = \"postgres://u:pw-MARKER@h/db\"\n",
            "storage.url",
            "postgres\" only",
        ),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\npool_size = 0\n",
            "storage.pool_size",
            "between 1 and 1000",
        ),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\npool_size = 5000\n",
            "storage.pool_size",
            "between 1 and 1000",
        ),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\nhost = \"h\"\n",
            "storage.host",
            "unknown key",
        ),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\n[cluster]\nnode_id = \"a b\"\n",
            "cluster.node_id",
            "letters, digits",
        ),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\n[cluster]\nnode_id = \"\"\n",
            "cluster.node_id",
            "1 to 64",
        ),
        (
            "[storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\n[cluster]\nzone = \"x\"\n",
            "cluster.zone",
            "unknown key",
        ),
        ("[cluster]\nnode_id = \"a\"\n", "cluster", "postgres\" only"),
    ] {
        let errors = Fixture::new(text).load().unwrap_err();
        assert_has(&errors, "herald.toml", key, fragment);
        assert!(!errors.to_string().contains("pw-MARKER"), "{errors}");
    }
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

#[test]
fn telemetry_is_off_unless_configured() {
    assert_eq!(Fixture::new("").load().unwrap().telemetry, None);
}

#[test]
fn telemetry_posts_to_v1_traces_under_the_endpoint() {
    for (endpoint, want) in [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        (
            "https://otel.example/base/",
            "https://otel.example/base/v1/traces",
        ),
        (
            "https://otel.example/custom/v1/traces",
            "https://otel.example/custom/v1/traces",
        ),
        (
            "https://otel.example/v1/traces/",
            "https://otel.example/v1/traces",
        ),
        (
            "http://127.0.0.1:4318?tenant=a",
            "http://127.0.0.1:4318/v1/traces?tenant=a",
        ),
    ] {
        let fixture = Fixture::new(&format!("[telemetry]\notlp_endpoint = {endpoint:?}\n"));
        let telemetry = fixture.load().unwrap().telemetry.expect("[telemetry]");
        assert_eq!(telemetry.traces_url().as_str(), want, "{endpoint}");
        assert_eq!(telemetry.service_name, "herald");
    }
    let fixture = Fixture::new(
        "[telemetry]\notlp_endpoint = \"http://collector:4318\"\nservice_name = \"herald-eu\"\n",
    );
    let telemetry = fixture.load().unwrap().telemetry.unwrap();
    assert_eq!(telemetry.service_name, "herald-eu");
}

#[test]
fn the_telemetry_endpoint_is_never_shown_with_its_credentials() {
    let fixture = Fixture::new("[telemetry]\notlp_endpoint = \"${OTLP}\"\n");
    let config = fixture
        .load_env(&[(
            "OTLP",
            "https://user:pw-MARKER@otel.example:4318/?token=tok-MARKER",
        )])
        .unwrap();
    let telemetry = config.telemetry.as_ref().unwrap();
    assert_eq!(
        telemetry.traces_url().as_str(),
        "https://otel.example:4318/v1/traces?token=tok-MARKER",
        "the URL sent to keeps its query; the user info becomes Basic authentication"
    );
    assert_eq!(
        telemetry.basic_auth().map(|s| s.expose()),
        Some("user:pw-MARKER")
    );
    assert_eq!(
        telemetry.display_url().as_str(),
        "https://otel.example:4318/v1/traces"
    );
    let debug = format!("{config:?} {config:#?}");
    assert!(debug.contains("otel.example:4318/v1/traces"), "{debug}");
    assert!(!debug.contains("MARKER"), "{debug}");
}

#[test]
fn the_telemetry_user_info_is_percent_decoded() {
    let fixture = Fixture::new(
        "[telemetry]\notlp_endpoint = \"https://inst%2042:p%40ss%3Aw@otel.example\"\n",
    );
    let telemetry = fixture.load().unwrap().telemetry.unwrap();
    assert_eq!(
        telemetry.basic_auth().map(|s| s.expose()),
        Some("inst 42:p@ss:w")
    );
    assert_eq!(
        telemetry.traces_url().as_str(),
        "https://otel.example/v1/traces"
    );
    let fixture = Fixture::new("[telemetry]\notlp_endpoint = \"https://tok3n@otel.example\"\n");
    let telemetry = fixture.load().unwrap().telemetry.unwrap();
    assert_eq!(telemetry.basic_auth().map(|s| s.expose()), Some("tok3n:"));
    assert_eq!(
        Fixture::new("[telemetry]\notlp_endpoint = \"http://c:4318\"\n")
            .load()
            .unwrap()
            .telemetry
            .unwrap()
            .basic_auth(),
        None
    );
}

#[test]
fn telemetry_errors_name_the_key_never_the_url() {
    for (text, key, fragment) in [
        ("[telemetry]\n", "telemetry.otlp_endpoint", "is required"),
        (
            "[telemetry]\notlp_endpoint = \"\"\n",
            "telemetry.otlp_endpoint",
            "is empty",
        ),
        (
            "[telemetry]\notlp_endpoint = \"collector-MARKER:4318\"\n",
            "telemetry.otlp_endpoint",
            "http:// or https://",
        ),
        (
            "[telemetry]\notlp_endpoint = \"not a url MARKER\"\n",
            "telemetry.otlp_endpoint",
            "not a valid URL",
        ),
        (
            "[telemetry]\notlp_endpoint = \"grpc://u:pw-MARKER@collector:4317\"\n",
            "telemetry.otlp_endpoint",
            "http:// or https://",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://u:pw-MARKER@:4318\"\n",
            "telemetry.otlp_endpoint",
            "",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://us%3Aer:pw-MARKER@c:4318\"\n",
            "telemetry.otlp_endpoint",
            "':'",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://u:pw-MARKER%FF@c:4318\"\n",
            "telemetry.otlp_endpoint",
            "not UTF-8",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://c:4318\"\nservice_name = \"\"\n",
            "telemetry.service_name",
            "1 to 255",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://c:4318\"\nservice_name = \"a\\nb\"\n",
            "telemetry.service_name",
            "control",
        ),
        (
            "[telemetry]\notlp_endpoint = \"http://c:4318\"\nprotocol = \"grpc\"\n",
            "telemetry.protocol",
            "unknown key",
        ),
        (
            "[telemetry]\notlp_endpoint = 4318\n",
            "telemetry.otlp_endpoint",
            "",
        ),
    ] {
        let errors = Fixture::new(text).load().unwrap_err();
        assert_has(&errors, "herald.toml", key, fragment);
        assert!(!errors.to_string().contains("MARKER"), "{errors}");
    }
}
