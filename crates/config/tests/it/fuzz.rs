//! The loader never panics, whatever the files contain.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};

use crate::support::Fixture;

const SUBSCRIBER_KEYS: &[&str] = &[
    "id",
    "url",
    "events",
    "timeout",
    "max_in_flight",
    "headers",
    "retry",
    "auth",
    "signing",
    "throttle",
    "rate_limit",
];
const SECTION_KEYS: &[&str] = &[
    "max_attempts",
    "initial_interval",
    "multiplier",
    "max_interval",
    "randomization",
    "max_age",
    "type",
    "credentials",
    "key",
    "token_url",
    "client_id",
    "client_secret",
    "scopes",
    "scheme",
    "secret",
    "header_prefix",
    "error_rate",
    "window",
    "min_requests",
    "per_second",
    "burst",
];
const DAEMON_KEYS: &[&str] = &[
    "subscribers_dir",
    "server",
    "storage",
    "security",
    "shutdown",
];
const DAEMON_SECTION_KEYS: &[&str] = &[
    "listen",
    "api_token",
    "max_payload_bytes",
    "path",
    "retention",
    "allow_http",
    "allow_private_networks",
    "grace",
];
const WORDS: &[&str] = &[
    "",
    "*",
    "10s",
    "0s",
    "500ms",
    "21d",
    "1h",
    "-1s",
    "https://x.example/",
    "http://127.0.0.1:9/",
    "https://[::1]/",
    "https://u:p@x.example/",
    "none",
    "basic",
    "api_key",
    "oauth2",
    "standard-webhooks",
    "sha256-v1",
    "whsec_aGVsbG8=",
    "whsec_",
    "X-API-Key:abc",
    "u:p",
    ":",
    "${X}",
    "${MISSING}",
    "$${",
    "${",
    "127.0.0.1:8080",
    "subscribers",
    "..",
    "/",
    "webhook-id",
    "Content-Type",
    "a\r\nb",
    "\u{0}",
    "é",
    "\u{feff}",
];

#[derive(Debug, Clone)]
enum V {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<V>),
    Table(BTreeMap<String, V>),
}

fn leaf() -> impl Strategy<Value = V> {
    prop_oneof![
        4 => select(WORDS).prop_map(|w| V::Str(w.to_owned())),
        1 => any::<String>().prop_map(V::Str),
        2 => (-3i64..600).prop_map(V::Int),
        1 => any::<i64>().prop_map(V::Int),
        1 => prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), -2.0..2.0f64]
            .prop_map(V::Float),
        1 => any::<bool>().prop_map(V::Bool),
    ]
}

fn field() -> impl Strategy<Value = V> {
    prop_oneof![
        5 => leaf(),
        1 => prop::collection::vec(leaf(), 0..4).prop_map(V::Array),
    ]
}

fn key(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        9 => select(known).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn table(known: &'static [&'static str], value: BoxedStrategy<V>) -> impl Strategy<Value = V> {
    prop::collection::btree_map(key(known), value, 0..8).prop_map(V::Table)
}

fn document(
    top: &'static [&'static str],
    section: &'static [&'static str],
) -> impl Strategy<Value = V> {
    let section_table = table(section, field().boxed()).boxed();
    let header_table =
        prop::collection::btree_map(any::<String>(), leaf(), 0..3).prop_map(V::Table);
    let value = prop_oneof![3 => field(), 2 => section_table, 1 => header_table].boxed();
    table(top, value)
}

fn emit_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn emit(v: &V) -> String {
    match v {
        V::Str(s) => emit_str(s),
        V::Int(i) => i.to_string(),
        V::Float(f) if f.is_nan() => "nan".to_owned(),
        V::Float(f) if f.is_infinite() => if *f > 0.0 { "inf" } else { "-inf" }.to_owned(),
        V::Float(f) => {
            let text = format!("{f:?}");
            if text.contains(['.', 'e']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        V::Bool(b) => b.to_string(),
        V::Array(items) => format!(
            "[{}]",
            items.iter().map(emit).collect::<Vec<_>>().join(", ")
        ),
        V::Table(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", emit_str(k), emit(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn emit_document(v: &V) -> String {
    let V::Table(map) = v else { unreachable!() };
    map.iter()
        .map(|(k, v)| format!("{} = {}\n", emit_str(k), emit(v)))
        .collect()
}

fn env(name: &str) -> Option<String> {
    (name == "X").then(|| "value".to_owned())
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn random_text_never_panics() {
    let fixture = Fixture::new("");
    let text = prop_oneof![any::<String>(), "[a-z_\\[\\]=\"'{}$ ,.0-9\n#:*-]{0,120}",];
    runner(300)
        .run(&(text.clone(), text), |(sub, daemon)| {
            fixture.sub("fuzz.toml", &sub);
            let _ = herald_config::load_with_env(&fixture.daemon(), &env);
            std::fs::write(fixture.daemon(), &daemon).unwrap();
            let _ = herald_config::load_with_env(&fixture.daemon(), &env);
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_tables_never_panic() {
    let fixture = Fixture::new("");
    runner(600)
        .run(&document(SUBSCRIBER_KEYS, SECTION_KEYS), |doc| {
            let text = emit_document(&doc);
            // The emitter writes valid TOML, so failures are validation failures, not syntax.
            toml::from_str::<toml::Table>(&text)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            fixture.sub("fuzz.toml", &text);
            match herald_config::load_with_env(&fixture.daemon(), &env) {
                Ok(_) => {}
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for error in errors.errors() {
                        prop_assert!(error.file.ends_with("fuzz.toml"), "{}", error);
                    }
                }
            }
            Ok(())
        })
        .unwrap();

    runner(300)
        .run(&document(DAEMON_KEYS, DAEMON_SECTION_KEYS), |doc| {
            std::fs::write(fixture.daemon(), emit_document(&doc)).unwrap();
            let _ = herald_config::load_with_env(&fixture.daemon(), &env);
            Ok(())
        })
        .unwrap();
}
