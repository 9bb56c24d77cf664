//! Subscriber files: every rule of SPEC §2, good and bad.

use std::fs;
use std::num::NonZeroU32;
use std::time::Duration;

use herald_core::{
    AuthConfig, EventFilter, OrderingMode, RateLimitConfig, RetryPolicy, SecurityPolicy,
    SigningScheme, SubscriberConfig, ThrottleConfig,
};

use crate::support::{assert_has, load_sub_with, sub_err, sub_err_with, sub_ok, Fixture, MINIMAL};

const ALLOW_HTTP: &str = "[security]\nallow_http = true\n";

fn with(sections: &str) -> String {
    format!("{MINIMAL}{sections}")
}

#[test]
fn minimal_file_gets_the_documented_defaults() {
    let sub = sub_ok(MINIMAL);
    assert_eq!(sub.id.as_str(), "acme");
    assert_eq!(sub.url.as_str(), "https://hooks.acme.example/webhook");
    assert_eq!(
        sub.events,
        EventFilter::Only(vec!["PROCESS_STATE_FINISHED".into()])
    );
    assert_eq!(sub.timeout, Duration::from_secs(10));
    assert_eq!(sub.max_in_flight, 50);
    assert!(sub.headers.is_empty());
    assert_eq!(sub.retry, RetryPolicy::default());
    assert_eq!(sub.retry.max_attempts, 10);
    assert_eq!(sub.retry.initial_interval, Duration::from_secs(5));
    assert_eq!(sub.retry.max_interval, Duration::from_secs(3600));
    assert_eq!(sub.retry.max_age, None);
    assert_eq!(sub.auth, AuthConfig::None);
    assert_eq!(sub.signing, None);
    assert_eq!(sub.throttle, ThrottleConfig::default());
    assert_eq!(sub.rate_limit, None);
    // herald-core's constructor (used by tests and benches) describes the same subscriber.
    assert_eq!(
        sub,
        SubscriberConfig {
            events: sub.events.clone(),
            ..SubscriberConfig::new(sub.id.clone(), sub.url.clone())
        }
    );
}

#[test]
fn the_spec_example_loads() {
    let sub = sub_ok(
        r#"
id = "acme"
url = "https://hooks.acme.example/webhook"
events = ["PROCESS_STATE_FINISHED"]
timeout = "10s"
max_in_flight = 50
headers = { "X-Tenant" = "acme" }

[retry]
max_attempts = 10
initial_interval = "5s"
multiplier = 2.0
max_interval = "1h"
randomization = 0.2
max_age = "21d"

[auth]
type = "none"

[signing]
scheme = "standard-webhooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[throttle]
error_rate = 0.5
window = "30s"
min_requests = 20

[rate_limit]
per_second = 200
burst = 50
"#,
    );
    assert_eq!(sub.headers, vec![("X-Tenant".into(), "acme".into())]);
    assert_eq!(sub.retry.max_age, Some(Duration::from_secs(21 * 86_400)));
    assert_eq!(sub.signing.unwrap().scheme, SigningScheme::StandardWebhooks);
    assert_eq!(
        sub.rate_limit,
        Some(RateLimitConfig {
            per_second: NonZeroU32::new(200).unwrap(),
            burst: NonZeroU32::new(50).unwrap(),
        })
    );
}

#[test]
fn id_defaults_to_the_stem_and_can_be_set() {
    let fixture = Fixture::new("");
    fixture
        .sub("zeta.toml", MINIMAL)
        .sub("b.toml", &format!("id = \"alpha\"\n{MINIMAL}"))
        .sub("notes.txt", "not a subscriber")
        .sub(".hidden.toml", "garbage = [")
        .sub("README", "ignored");
    fs::create_dir(fixture.sub_path("folder.toml")).unwrap();
    let config = fixture.load().unwrap();
    let ids: Vec<_> = config.subscribers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "zeta"], "sorted by id, other files ignored");
}

#[test]
fn bad_ids() {
    sub_err(&format!("id = \"a/b\"\n{MINIMAL}"), "id", "only letters");
    sub_err(&format!("id = \"\"\n{MINIMAL}"), "id", "empty");
    let fixture = Fixture::new("");
    fixture.sub("has space.toml", MINIMAL);
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "has space.toml", "id", "file name");
}

#[test]
fn an_empty_folder_is_fine_and_a_missing_one_is_named() {
    let fixture = Fixture::new("");
    assert!(fixture.load().unwrap().subscribers.is_empty());

    let fixture = Fixture::new("subscribers_dir = \"nowhere\"\n");
    let errors = fixture.load().unwrap_err();
    let error = &errors.errors()[0];
    assert!(error.file.ends_with("nowhere"), "{errors}");
    assert!(errors.to_string().contains("nowhere"));
    assert!(error.message.contains("cannot read the subscribers folder"));
}

#[test]
fn urls() {
    sub_err("events = [\"E\"]\n", "url", "missing");
    sub_err(
        "url = \"not a url\"\nevents = [\"E\"]\n",
        "url",
        "not a valid URL",
    );
    sub_err(
        "url = \"ftp://x.example/\"\nevents = [\"E\"]\n",
        "url",
        "http:// or https://",
    );
    sub_err(
        "url = \"mailto:a@x.example\"\nevents = [\"E\"]\n",
        "url",
        "http:// or https://",
    );
    sub_err(
        "url = \"http://x.example/\"\nevents = [\"E\"]\n",
        "url",
        "allow_http",
    );
    sub_err(
        "url = \"https://u:p@x.example/\"\nevents = [\"E\"]\n",
        "url",
        "credentials",
    );
    sub_err(
        "url = \"https://10.0.0.7/hook\"\nevents = [\"E\"]\n",
        "url",
        "allow_private_networks",
    );
    sub_err("url = 42\nevents = [\"E\"]\n", "url", "invalid type");

    sub_err_with(
        ALLOW_HTTP,
        "url = \"http://localhost:9000/\"\nevents = [\"E\"]\n",
        "url",
        "allow_private_networks",
    );
    let sub = load_sub_with(
        ALLOW_HTTP,
        "url = \"http://x.example/\"\nevents = [\"E\"]\n",
    )
    .unwrap();
    assert_eq!(sub.url.scheme(), "http");
    let private = "[security]\nallow_http = true\nallow_private_networks = true\n";
    let sub = load_sub_with(
        private,
        "url = \"http://127.0.0.1:9000/webhook\"\nevents = [\"*\"]\n",
    )
    .unwrap();
    assert_eq!(sub.url.port(), Some(9000));
}

#[test]
fn events() {
    let url = "url = \"https://x.example/\"\n";
    assert_eq!(
        sub_ok(&format!("{url}events = [\"*\"]\n")).events,
        EventFilter::All
    );
    assert_eq!(
        sub_ok(&format!("{url}events = [\"A\", \"B\"]\n")).events,
        EventFilter::Only(vec!["A".into(), "B".into()])
    );
    sub_err(url, "events", "missing");
    sub_err(&format!("{url}events = []\n"), "events", "empty");
    sub_err(
        &format!("{url}events = [\"*\", \"A\"]\n"),
        "events",
        "cannot be combined",
    );
    sub_err(
        &format!("{url}events = [\"A\", \"\"]\n"),
        "events[1]",
        "empty",
    );
    sub_err(&format!("{url}events = \"A\"\n"), "events", "invalid type");
}

#[test]
fn timeout_and_max_in_flight() {
    assert_eq!(
        sub_ok(&format!("{MINIMAL}timeout = \"500ms\"\n")).timeout,
        Duration::from_millis(500)
    );
    sub_err(
        &format!("{MINIMAL}timeout = \"0s\"\n"),
        "timeout",
        "longer than zero",
    );
    sub_err(&format!("{MINIMAL}timeout = 10\n"), "timeout", "\"10s\"");
    sub_err(
        &format!("{MINIMAL}timeout = \"10 parsecs\"\n"),
        "timeout",
        "\"500ms\"",
    );

    assert_eq!(
        sub_ok(&format!("{MINIMAL}max_in_flight = 1\n")).max_in_flight,
        1
    );
    assert_eq!(
        sub_ok(&format!("{MINIMAL}max_in_flight = 500\n")).max_in_flight,
        500
    );
    sub_err(
        &format!("{MINIMAL}max_in_flight = 0\n"),
        "max_in_flight",
        "between 1 and 500",
    );
    sub_err(
        &format!("{MINIMAL}max_in_flight = 501\n"),
        "max_in_flight",
        "between 1 and 500",
    );
    sub_err(
        &format!("{MINIMAL}max_in_flight = -3\n"),
        "max_in_flight",
        "between 1 and 500",
    );
    sub_err(
        &format!("{MINIMAL}max_in_flight = 2.5\n"),
        "max_in_flight",
        "invalid type",
    );
}

#[test]
fn headers() {
    let sub = sub_ok(&format!(
        "{MINIMAL}headers = {{ \"X-Tenant\" = \"acme\", \"X-Env\" = \"prod\" }}\n"
    ));
    assert_eq!(sub.headers.len(), 2);
    for name in [
        "Content-Type",
        "user-agent",
        "Webhook-Id",
        "webhook-signature",
        "Host",
        "Content-Length",
    ] {
        sub_err(
            &format!("{MINIMAL}headers = {{ \"{name}\" = \"x\" }}\n"),
            &format!("headers.{name}"),
            "",
        );
    }
    sub_err(
        &format!("{MINIMAL}headers = {{ \"Bad Name\" = \"x\" }}\n"),
        "headers.\"Bad Name\"",
        "header name",
    );
    sub_err(
        &format!("{MINIMAL}headers = {{ \"X-A\" = \"a\\nb\" }}\n"),
        "headers.X-A",
        "control character",
    );
    sub_err(
        &format!("{MINIMAL}headers = {{ \"X-A\" = 1 }}\n"),
        "headers.X-A",
        "invalid type",
    );
    sub_err(
        &format!("{MINIMAL}headers = {{ \"X-A\" = \"1\", \"x-a\" = \"2\" }}\n"),
        "headers.x-a",
        "duplicate",
    );

    // Authorization is free unless [auth] sets it.
    sub_ok(&format!(
        "{MINIMAL}headers = {{ \"Authorization\" = \"Token t\" }}\n"
    ));
    sub_err(
        &format!("{MINIMAL}headers = {{ \"Authorization\" = \"x\" }}\n[auth]\ntype = \"basic\"\ncredentials = \"u:p\"\n"),
        "headers.Authorization",
        "[auth]",
    );
    sub_err(
        &format!("{MINIMAL}headers = {{ \"X-API-Key\" = \"x\" }}\n[auth]\ntype = \"api_key\"\nkey = \"X-API-Key:k\"\n"),
        "headers.X-API-Key",
        "[auth]",
    );
    sub_err(
        &format!("{MINIMAL}headers = {{ \"Unidy-Webhook-Version\" = \"2\" }}\n[signing]\nscheme = \"sha256-v1\"\nsecret = \"s\"\nheader_prefix = \"unidy-webhook\"\n"),
        "headers.Unidy-Webhook-Version",
        "[signing]",
    );
}

#[test]
fn retry() {
    let sub = sub_ok(&with(
        "[retry]\nmax_attempts = 25\ninitial_interval = \"1s\"\nmultiplier = 1\nmax_interval = \"1s\"\nrandomization = 0\nmax_age = \"21d\"\n",
    ));
    assert_eq!(
        sub.retry,
        RetryPolicy {
            max_attempts: 25,
            initial_interval: Duration::from_secs(1),
            multiplier: 1.0,
            max_interval: Duration::from_secs(1),
            randomization: 0.0,
            max_age: Some(Duration::from_secs(21 * 86_400)),
        }
    );
    sub_err(
        &with("[retry]\nmax_attempts = 0\n"),
        "retry.max_attempts",
        "at least 1",
    );
    sub_err(
        &with("[retry]\ninitial_interval = 5\n"),
        "retry.initial_interval",
        "\"10s\"",
    );
    sub_err(
        &with("[retry]\ninitial_interval = \"0s\"\n"),
        "retry.initial_interval",
        "longer than zero",
    );
    sub_err(
        &with("[retry]\nmultiplier = 0.5\n"),
        "retry.multiplier",
        "at least 1.0",
    );
    sub_err(
        &with("[retry]\nmultiplier = nan\n"),
        "retry.multiplier",
        "at least 1.0",
    );
    sub_err(
        &with("[retry]\nmultiplier = inf\n"),
        "retry.multiplier",
        "at least 1.0",
    );
    sub_err(
        &with("[retry]\nmax_interval = \"1s\"\n"),
        "retry.max_interval",
        "shorter than retry.initial_interval",
    );
    sub_err(
        &with("[retry]\nrandomization = 1.5\n"),
        "retry.randomization",
        "between 0.0 and 1.0",
    );
    sub_err(
        &with("[retry]\nrandomization = -0.1\n"),
        "retry.randomization",
        "between 0.0 and 1.0",
    );
    sub_err(
        &with("[retry]\nmax_age = \"0s\"\n"),
        "retry.max_age",
        "longer than zero",
    );
    sub_err(
        &with("[retry]\nmax_age = \"soon\"\n"),
        "retry.max_age",
        "invalid duration",
    );
    sub_err(
        &with("[retry]\nmax_atempts = 3\n"),
        "retry.max_atempts",
        "unknown key",
    );
}

#[test]
fn auth_types() {
    assert_eq!(
        sub_ok(&with("[auth]\ntype = \"none\"\n")).auth,
        AuthConfig::None
    );
    match sub_ok(&with(
        "[auth]\ntype = \"basic\"\ncredentials = \"user:pa:ss\"\n",
    ))
    .auth
    {
        AuthConfig::Basic { credentials } => assert_eq!(credentials.expose(), "user:pa:ss"),
        other => panic!("{other:?}"),
    }
    for (key, header, value) in [
        ("X-API-Key:abc123", "X-API-Key", "abc123"),
        ("Authorization:Bearer abc", "Authorization", "Bearer abc"),
        ("Authorization: Bearer abc", "Authorization", "Bearer abc"),
        ("abc123", "Authorization", "abc123"),
        ("X-Key:a:b", "X-Key", "a:b"),
    ] {
        match sub_ok(&with(&format!(
            "[auth]\ntype = \"api_key\"\nkey = \"{key}\"\n"
        )))
        .auth
        {
            AuthConfig::ApiKey {
                header: h,
                value: v,
            } => {
                assert_eq!((h.as_str(), v.expose()), (header, value), "{key}");
            }
            other => panic!("{other:?}"),
        }
    }
    match sub_ok(&with(
        "[auth]\ntype = \"oauth2\"\ntoken_url = \"https://idp.example/oauth2/token\"\nclient_id = \"herald\"\nclient_secret = \"s\"\nscopes = [\"webhooks:write\"]\n",
    ))
    .auth
    {
        AuthConfig::OAuth2 { token_url, client_id, scopes, .. } => {
            assert_eq!(token_url.as_str(), "https://idp.example/oauth2/token");
            assert_eq!(client_id, "herald");
            assert_eq!(scopes, ["webhooks:write"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn auth_errors() {
    sub_err(&with("[auth]\n"), "auth.type", "missing");
    sub_err(
        &with("[auth]\ntype = \"kerberos\"\n"),
        "auth.type",
        "unknown variant",
    );
    sub_err(
        &with("[auth]\ntype = \"none\"\ncredentials = \"u:p\"\n"),
        "auth.credentials",
        "not allowed with type \"none\"",
    );
    sub_err(
        &with("[auth]\ntype = \"api_key\"\nkey = \"k\"\nclient_id = \"c\"\n"),
        "auth.client_id",
        "not allowed",
    );
    sub_err(
        &with("[auth]\ntype = \"basic\"\n"),
        "auth.credentials",
        "missing",
    );
    sub_err(
        &with("[auth]\ntype = \"basic\"\ncredentials = \"nocolon\"\n"),
        "auth.credentials",
        "user:password",
    );
    sub_err(&with("[auth]\ntype = \"api_key\"\n"), "auth.key", "missing");
    sub_err(
        &with("[auth]\ntype = \"api_key\"\nkey = \"Bad Header:v\"\n"),
        "auth.key",
        "header name",
    );
    sub_err(
        &with("[auth]\ntype = \"api_key\"\nkey = \"X-Key:v\\r\\nX-Evil: 1\"\n"),
        "auth.key",
        "control character",
    );
    sub_err(
        &with("[auth]\ntype = \"api_key\"\nkey = \"X-Key:\"\n"),
        "auth.key",
        "empty",
    );
    let errors = sub_err(
        &with("[auth]\ntype = \"oauth2\"\n"),
        "auth.token_url",
        "missing",
    );
    assert_has(&errors, "acme.toml", "auth.client_id", "missing");
    assert_has(&errors, "acme.toml", "auth.client_secret", "missing");
    sub_err(
        &with("[auth]\ntype = \"oauth2\"\ntoken_url = \"ftp://idp.example/\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"),
        "auth.token_url",
        "http:// or https://",
    );
    sub_err(
        &with("[auth]\ntype = \"oauth2\"\ntoken_url = \"http://idp.example/\"\nclient_id = \"c\"\nclient_secret = \"s\"\n"),
        "auth.token_url",
        "allow_http",
    );
    sub_err(
        &with("[auth]\ntype = \"oauth2\"\ntoken_url = \"https://idp.example/\"\nclient_id = \"c\"\nclient_secret = \"s\"\nscopes = \"a b\"\n"),
        "auth.scopes",
        "invalid type",
    );
    sub_err(
        &with("[auth]\ntype = \"basic\"\ncredentials = \"u:p\"\npassword = \"x\"\n"),
        "auth.password",
        "unknown key",
    );
}

#[test]
fn signing() {
    let sub = sub_ok(&with(
        "[signing]\nscheme = \"standard-webhooks\"\nsecret = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\", \"whsec_aGVsbG8=\"]\n",
    ));
    let signing = sub.signing.unwrap();
    assert_eq!(signing.scheme, SigningScheme::StandardWebhooks);
    assert_eq!(signing.secrets.len(), 2);

    let sub = sub_ok(&with("[signing]\nscheme = \"sha256-v1\"\nsecret = \"s\"\n"));
    assert_eq!(
        sub.signing.unwrap().scheme,
        SigningScheme::Sha256V1 {
            header_prefix: "webhook".into()
        }
    );
    let sub = sub_ok(&with(
        "[signing]\nscheme = \"sha256-v1\"\nsecret = \"s\"\nheader_prefix = \"unidy-webhook\"\n",
    ));
    assert_eq!(
        sub.signing.unwrap().scheme,
        SigningScheme::Sha256V1 {
            header_prefix: "unidy-webhook".into()
        }
    );

    sub_err(
        &with("[signing]\nsecret = \"s\"\n"),
        "signing.scheme",
        "missing",
    );
    sub_err(
        &with("[signing]\nscheme = \"md5\"\nsecret = \"s\"\n"),
        "signing.scheme",
        "unknown variant",
    );
    sub_err(
        &with("[signing]\nscheme = \"sha256-v1\"\n"),
        "signing.secret",
        "missing",
    );
    sub_err(
        &with("[signing]\nscheme = \"sha256-v1\"\nsecret = []\n"),
        "signing.secret",
        "empty",
    );
    sub_err(
        &with("[signing]\nscheme = \"sha256-v1\"\nsecret = 7\n"),
        "signing.secret",
        "a string or a list of strings",
    );
    sub_err(
        &with("[signing]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_aGVsbG8=\"\nheader_prefix = \"x\"\n"),
        "signing.header_prefix",
        "only allowed with scheme \"sha256-v1\"",
    );
    sub_err(
        &with("[signing]\nscheme = \"standard-webhooks\"\nsecret = \"plain\"\n"),
        "signing.secret",
        "whsec_",
    );
    sub_err(
        &with("[signing]\nscheme = \"standard-webhooks\"\nsecret = \"whsec_not base64!\"\n"),
        "signing.secret",
        "base64",
    );
    sub_err(
        &with("[signing]\nscheme = \"standard-webhooks\"\nsecret = [\"whsec_aGVsbG8=\", \"whsec_%%%\"]\n"),
        "signing.secret[1]",
        "base64",
    );
    sub_err(
        &with("[signing]\nscheme = \"sha256-v1\"\nsecret = \"s\"\nheader_prefix = \"has space\"\n"),
        "signing.header_prefix",
        "header name",
    );
}

#[test]
fn throttle_and_rate_limit() {
    let sub = sub_ok(&with(
        "[throttle]\nerror_rate = 1\nwindow = \"1m\"\nmin_requests = 1\n",
    ));
    assert_eq!(
        sub.throttle,
        ThrottleConfig {
            error_rate: 1.0,
            window: Duration::from_secs(60),
            min_requests: 1
        }
    );
    sub_err(
        &with("[throttle]\nerror_rate = 0\n"),
        "throttle.error_rate",
        "greater than 0.0",
    );
    sub_err(
        &with("[throttle]\nerror_rate = 1.5\n"),
        "throttle.error_rate",
        "at most 1.0",
    );
    sub_err(
        &with("[throttle]\nwindow = \"0s\"\n"),
        "throttle.window",
        "longer than zero",
    );
    sub_err(
        &with("[throttle]\nmin_requests = 0\n"),
        "throttle.min_requests",
        "at least 1",
    );

    let sub = sub_ok(&with("[rate_limit]\nper_second = 20\n"));
    let limit = sub.rate_limit.unwrap();
    assert_eq!(
        (limit.per_second.get(), limit.burst.get()),
        (20, 20),
        "burst defaults to per_second"
    );
    sub_err(
        &with("[rate_limit]\nburst = 5\n"),
        "rate_limit.per_second",
        "missing",
    );
    sub_err(
        &with("[rate_limit]\nper_second = 0\n"),
        "rate_limit.per_second",
        "at least 1",
    );
    sub_err(
        &with("[rate_limit]\nper_second = 1\nburst = 0\n"),
        "rate_limit.burst",
        "at least 1",
    );
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    sub_err(
        &format!("{MINIMAL}colour = \"red\"\n"),
        "colour",
        "unknown key",
    );
    sub_err(
        &with("[throttle]\nerror_rate = 0.5\nwindoww = \"1s\"\n"),
        "throttle.windoww",
        "unknown key",
    );
    sub_err(&with("[extras]\na = 1\n"), "extras", "unknown key");
    sub_err(
        &with("[retry]\nmax_attempts = \"10\"\n"),
        "retry.max_attempts",
        "invalid type",
    );
    sub_err(&with("retry = 3\n"), "retry", "table");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let errors = sub_err("url = \"https://x.example/\"\nevents = [\n", "", "line 2");
    assert!(
        errors.to_string().contains("acme.toml: TOML syntax error"),
        "{errors}"
    );
    let errors = sub_err("url = \"a\"\nurl = \"b\"\n", "", "TOML syntax error");
    assert_eq!(errors.len(), 1);
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let errors = sub_err(
        "events = []\ntimeout = \"0s\"\nmax_in_flight = 900\n[retry]\nmultiplier = 0.1\n[auth]\ntype = \"basic\"\n",
        "url",
        "missing",
    );
    for key in [
        "events",
        "timeout",
        "max_in_flight",
        "retry.multiplier",
        "auth.credentials",
    ] {
        assert_has(&errors, "acme.toml", key, "");
    }
    assert_eq!(errors.len(), 6, "{errors}");
}

#[test]
fn every_file_is_checked_and_duplicates_name_both_files() {
    let fixture = Fixture::new("");
    fixture
        .sub("a.toml", "url = \"https://x.example/\"\n")
        .sub(
            "b.toml",
            "url = \"https://x.example/\"\nevents = [\"E\"]\nmax_in_flight = 0\n",
        )
        .sub("c.toml", &format!("id = \"shared\"\n{MINIMAL}"))
        .sub("d.toml", &format!("id = \"shared\"\n{MINIMAL}"))
        .sub("e.toml", "[[broken");
    let errors = fixture.load().unwrap_err();
    assert_has(&errors, "a.toml", "events", "missing");
    assert_has(&errors, "b.toml", "max_in_flight", "between 1 and 500");
    let duplicate = assert_has(
        &errors,
        "d.toml",
        "id",
        "duplicate subscriber id \"shared\"",
    );
    assert!(duplicate.message.contains("c.toml"), "{duplicate}");
    assert_has(&errors, "e.toml", "", "TOML syntax error");
    assert_eq!(errors.len(), 4, "{errors}");
    // One line per error.
    assert_eq!(errors.to_string().lines().count(), 4);
}

#[test]
fn reload_reads_the_folder_again() {
    let fixture = Fixture::new("");
    fixture.sub("acme.toml", MINIMAL);
    let config = fixture.load().unwrap();
    fixture.sub("beta.toml", MINIMAL);
    let policy = SecurityPolicy::default();
    let subs =
        herald_config::load_subscribers(&config.subscribers_dir, &policy, &|_| None).unwrap();
    assert_eq!(subs.len(), 2);
    fixture.sub(
        "beta.toml",
        "url = \"http://x.example/\"\nevents = [\"E\"]\n",
    );
    let errors =
        herald_config::load_subscribers(&config.subscribers_dir, &policy, &|_| None).unwrap_err();
    assert_has(&errors, "beta.toml", "url", "allow_http");
    let open = SecurityPolicy {
        allow_http: true,
        allow_private_networks: false,
    };
    assert!(herald_config::load_subscribers(&config.subscribers_dir, &open, &|_| None).is_ok());
}

/// Found by the `config` fuzz target: a value holding a newline (TOML `\n`) made an error
/// message span two lines, the second naming no file.
#[test]
fn a_newline_in_a_value_stays_on_the_error_line() {
    let errors = sub_err(
        "url = \"https://a.example/\"\nevents = [\"*\"]\n[signing]\nscheme = \"sta\\ndard-webhooks\"\nsecret = \"whsec_aGVsbG8=\"\n",
        "signing.scheme",
        "sta\\ndard-webhooks",
    );
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.len(), "{text}");
    assert!(text.lines().all(|l| l.contains("acme.toml")), "{text}");
}

/// Every subscriber duration has a maximum: the bound itself loads, one second more is an
/// error naming the file and the key (`timeout = "300000000000y"` used to load and then panic
/// the first attempt on `Instant::now() + timeout`).
#[test]
fn every_duration_is_bounded() {
    for (key, section, bound, over) in [
        ("timeout", "", "10m", "601s"),
        ("retry.initial_interval", "[retry]\n", "1d", "86401s"),
        ("retry.max_interval", "[retry]\n", "7d", "604801s"),
        ("retry.max_age", "[retry]\n", "365d", "31536001s"),
        ("throttle.window", "[throttle]\n", "1h", "3601s"),
    ] {
        let name = key.rsplit('.').next().unwrap();
        // max_interval must not be shorter than initial_interval: keep the pair consistent.
        let pair = if key == "retry.initial_interval" {
            "max_interval = \"7d\"\n"
        } else {
            ""
        };
        let at = format!("{MINIMAL}{section}{pair}{name} = \"{bound}\"\n");
        let loaded = sub_ok(&at);
        let expected = humantime::parse_duration(bound).unwrap();
        let got = match key {
            "timeout" => loaded.timeout,
            "retry.initial_interval" => loaded.retry.initial_interval,
            "retry.max_interval" => loaded.retry.max_interval,
            "retry.max_age" => loaded.retry.max_age.unwrap(),
            _ => loaded.throttle.window,
        };
        assert_eq!(got, expected, "{key}");
        for value in [over, "300000000000y"] {
            let text = format!("{MINIMAL}{section}{pair}{name} = \"{value}\"\n");
            sub_err(&text, key, &format!("must be at most {bound}"));
        }
    }
}

#[test]
fn ordering_is_none_by_default_per_key_when_asked_and_checked() {
    assert_eq!(sub_ok(MINIMAL).ordering, OrderingMode::None);
    assert_eq!(
        sub_ok(&with("ordering = \"per_key\"\n")).ordering,
        OrderingMode::PerKey
    );
    assert_eq!(
        sub_ok(&with("ordering = \"none\"\n")).ordering,
        OrderingMode::None
    );
    sub_err(
        &with("ordering = \"fifo\"\n"),
        "ordering",
        "expected \"per_key\" or \"none\"",
    );
    sub_err(&with("ordering = 1\n"), "ordering", "");
}
