//! The files as written: serde structs with `deny_unknown_fields`, no interpretation yet.
//!
//! Every field is optional here, even the required ones, so that a missing key is reported by
//! the validation step with its full key path, alongside every other problem of the file.
//! Durations stay strings ([`RawDuration`]) and integers stay `i64`, so range errors can say
//! what the allowed range is. Credentials are [`RawSecret`]s, whose `Debug` is redacted.
//!
//! Turning a TOML text into one of these structs is [`parse`]: syntax check, `${VAR}` expansion
//! on the parsed tree, then serde.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::env::{expand_table, join_key, Env};
use crate::error::Report;

/// `config/herald.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawDaemon {
    pub(crate) subscribers_dir: Option<String>,
    #[serde(default)]
    pub(crate) server: RawServer,
    #[serde(default)]
    pub(crate) storage: RawStorage,
    #[serde(default)]
    pub(crate) security: RawSecurity,
    #[serde(default)]
    pub(crate) shutdown: RawShutdown,
    pub(crate) cluster: Option<RawCluster>,
    #[serde(default)]
    pub(crate) alerts: RawAlerts,
    pub(crate) telemetry: Option<RawTelemetry>,
}

/// `[telemetry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [telemetry] table")]
pub(crate) struct RawTelemetry {
    /// May hold credentials (user info, a query token): redacted in `Debug`.
    pub(crate) otlp_endpoint: Option<RawSecret>,
    pub(crate) service_name: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [alerts] table")]
pub(crate) struct RawAlerts {
    pub(crate) subscriber: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [server] table")]
pub(crate) struct RawServer {
    pub(crate) listen: Option<String>,
    pub(crate) api_token: Option<RawSecret>,
    pub(crate) max_payload_bytes: Option<i64>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [storage] table")]
pub(crate) struct RawStorage {
    pub(crate) engine: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) url: Option<RawSecret>,
    pub(crate) pool_size: Option<i64>,
    pub(crate) retention: Option<RawDuration>,
}

/// `[cluster]` (postgres only).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cluster] table")]
pub(crate) struct RawCluster {
    pub(crate) node_id: Option<String>,
}

/// `[security]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [security] table")]
pub(crate) struct RawSecurity {
    pub(crate) allow_http: Option<bool>,
    pub(crate) allow_private_networks: Option<bool>,
}

/// `[shutdown]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [shutdown] table")]
pub(crate) struct RawShutdown {
    pub(crate) grace: Option<RawDuration>,
}

/// One `subscribers/*.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawSubscriber {
    pub(crate) id: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) events: Option<Vec<String>>,
    pub(crate) timeout: Option<RawDuration>,
    pub(crate) max_in_flight: Option<i64>,
    pub(crate) headers: Option<BTreeMap<String, RawSecret>>,
    pub(crate) retry: Option<RawRetry>,
    pub(crate) auth: Option<RawAuth>,
    pub(crate) signing: Option<RawSigning>,
    pub(crate) throttle: Option<RawThrottle>,
    pub(crate) rate_limit: Option<RawRateLimit>,
    pub(crate) ordering: Option<String>,
}

/// `[retry]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [retry] table")]
pub(crate) struct RawRetry {
    pub(crate) max_attempts: Option<i64>,
    pub(crate) initial_interval: Option<RawDuration>,
    pub(crate) multiplier: Option<f64>,
    pub(crate) max_interval: Option<RawDuration>,
    pub(crate) randomization: Option<f64>,
    pub(crate) max_age: Option<RawDuration>,
}

/// `[auth]`: one flat struct, so that a key of another type gets a precise message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [auth] table")]
pub(crate) struct RawAuth {
    #[serde(rename = "type")]
    pub(crate) kind: Option<RawAuthType>,
    pub(crate) credentials: Option<RawSecret>,
    pub(crate) key: Option<RawSecret>,
    pub(crate) token_url: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<RawSecret>,
    pub(crate) scopes: Option<Vec<String>>,
}

/// `[auth] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(
    rename_all = "snake_case",
    expecting = "one of \"none\", \"basic\", \"api_key\", \"oauth2\""
)]
pub(crate) enum RawAuthType {
    None,
    Basic,
    ApiKey,
    Oauth2,
}

impl RawAuthType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic => "basic",
            Self::ApiKey => "api_key",
            Self::Oauth2 => "oauth2",
        }
    }
}

/// `[signing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [signing] table")]
pub(crate) struct RawSigning {
    pub(crate) scheme: Option<RawScheme>,
    pub(crate) secret: Option<RawSecrets>,
    pub(crate) header_prefix: Option<String>,
}

/// `[signing] scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(expecting = "one of \"standard-webhooks\", \"sha256-v1\"")]
pub(crate) enum RawScheme {
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
    #[serde(rename = "sha256-v1")]
    Sha256V1,
}

/// `[throttle]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [throttle] table")]
pub(crate) struct RawThrottle {
    pub(crate) error_rate: Option<f64>,
    pub(crate) window: Option<RawDuration>,
    pub(crate) min_requests: Option<i64>,
}

/// `[rate_limit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [rate_limit] table")]
pub(crate) struct RawRateLimit {
    pub(crate) per_second: Option<i64>,
    pub(crate) burst: Option<i64>,
}

/// The form durations are written in, quoted in error messages.
pub(crate) const DURATION_FORM: &str =
    "a duration string such as \"500ms\", \"10s\", \"1h\" or \"21d\"";

/// A duration as written; parsed by the validation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawDuration(pub(crate) String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_FORM)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(v.to_owned()))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// A credential as written. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawSecret(pub(crate) String);

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**REDACTED**")
    }
}

/// `secret = "..."` or `secret = ["...", { secret = "...", not_after = "..." }, ...]` (key
/// rotation, each item a string or a table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawSecrets {
    One(RawSecret),
    Many(Vec<RawSecretItem>),
}

/// One item of a `secret` list: `"whsec_..."`, or `{ secret = "whsec_...", not_after =
/// "<RFC 3339>" }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RawSecretItem {
    pub(crate) secret: Option<RawSecret>,
    pub(crate) not_after: Option<RawDateTime>,
    /// Written as a table (errors then name `signing.secret[i].secret`).
    pub(crate) table: bool,
}

/// The table form of a [`RawSecretItem`].
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with `secret` and optional `not_after`"
)]
struct RawSecretTable {
    secret: Option<RawSecret>,
    not_after: Option<RawDateTime>,
}

/// A date-time as written: a string, or a TOML date-time literal turned back into its text.
/// Parsed (RFC 3339) by the validation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawDateTime(pub(crate) String);

impl<'de> Deserialize<'de> for RawDateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DateTimeVisitor;
        impl<'de> Visitor<'de> for DateTimeVisitor {
            type Value = RawDateTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time such as \"2026-12-31T00:00:00Z\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDateTime, E> {
                Ok(RawDateTime(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawDateTime, A::Error> {
                let datetime =
                    toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawDateTime(datetime.to_string()))
            }
        }
        deserializer.deserialize_any(DateTimeVisitor)
    }
}

impl<'de> Deserialize<'de> for RawSecretItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = RawSecretItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a table { secret = \"...\", not_after = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecretItem, E> {
                Ok(RawSecretItem {
                    secret: Some(RawSecret(v.to_owned())),
                    not_after: None,
                    table: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSecretItem, A::Error> {
                let table =
                    RawSecretTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawSecretItem {
                    secret: table.secret,
                    not_after: table.not_after,
                    table: true,
                })
            }
        }
        deserializer.deserialize_any(ItemVisitor)
    }
}

impl<'de> Deserialize<'de> for RawSecrets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretsVisitor;
        impl<'de> Visitor<'de> for SecretsVisitor {
            type Value = RawSecrets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings and { secret, not_after } tables")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSecrets, E> {
                Ok(RawSecrets::One(RawSecret(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSecrets, A::Error> {
                let mut secrets = Vec::new();
                while let Some(secret) = seq.next_element::<RawSecretItem>()? {
                    secrets.push(secret);
                }
                Ok(RawSecrets::Many(secrets))
            }
        }
        deserializer.deserialize_any(SecretsVisitor)
    }
}

/// Parses `text` into `T`: TOML syntax, then `${VAR}` expansion, then serde.
///
/// Returns `None` when the syntax or serde failed, with the problem recorded in `report`; serde
/// stops at the first unknown key or wrong type of the file. Expansion problems are all
/// recorded, and the struct is still returned (with the failed strings unexpanded) so that a
/// caller can carry on with keys that did not fail: check `report` before validating.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    env: Env<'_>,
    report: &mut Report<'_>,
) -> Option<T> {
    let mut table: toml::Table = match toml::from_str(text) {
        Ok(table) => table,
        Err(error) => {
            report.error("", syntax_message(text, &error));
            return None;
        }
    };
    expand_table(&mut table, env, report);
    match T::deserialize(table) {
        Ok(raw) => Some(raw),
        Err(error) => {
            let (key, message) = locate(&error);
            report.error(key, message);
            None
        }
    }
}

/// `TOML syntax error at line L, column C: <message>`.
///
/// Built from the parser's message and span only: toml's own `Display` quotes the offending
/// line, which may hold a credential.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let start = floor_char_boundary(text, span.start);
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before, |newline| &before[newline + 1..])
                .chars()
                .count()
                + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The key path and message of a serde error from deserializing a parsed table.
///
/// toml records the path of tables it went through but exposes it only in `Display`, as a last
/// line `in `a.b``; an unknown key's own name is only in serde's message.
fn locate(error: &toml::de::Error) -> (String, String) {
    let message = hide_string_value(error.message().trim_end())
        .replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected a list");
    let display = error.to_string();
    let path = display
        .strip_prefix(error.message())
        .map(|rest| rest.trim_start_matches('\n'))
        .and_then(|rest| rest.strip_prefix("in `"))
        .and_then(|rest| rest.trim_end_matches('\n').strip_suffix('`'))
        .unwrap_or("")
        .to_owned();

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let end = rest
            .find("`, expected")
            .or_else(|| rest.find("`, there are no fields"));
        if let Some(end) = end {
            let field = &rest[..end];
            let expected = &rest[end + 3..];
            return (join_key(&path, field), format!("unknown key, {expected}"));
        }
    }
    (path, message)
}

/// serde quotes a string given where another type was expected (`invalid type: string "…",
/// expected a boolean`); after `${VAR}` expansion that string could be a credential, so it is
/// left out.
fn hide_string_value(message: &str) -> String {
    const PREFIX: &str = "invalid type: string \"";
    const SUFFIX: &str = "\", expected";
    match (message.strip_prefix(PREFIX), message.rfind(SUFFIX)) {
        (Some(_), Some(end)) if end >= PREFIX.len() - 1 => {
            format!("invalid type: string{}", &message[end + 1..])
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_subscriber(text: &str) -> Result<RawSubscriber, Vec<(String, String)>> {
        let mut report = Report::new(Path::new("s.toml"));
        let parsed = parse::<RawSubscriber>(text, &no_env, &mut report);
        parsed.filter(|_| report.is_clean()).ok_or_else(|| {
            report
                .into_errors()
                .into_iter()
                .map(|e| (e.key, e.message))
                .collect()
        })
    }

    #[test]
    fn unknown_keys_name_their_full_path() {
        let errors = parse_subscriber("url = 'x'\n[retry]\nmax_atempts = 3\n").unwrap_err();
        assert_eq!(errors[0].0, "retry.max_atempts");
        assert!(
            errors[0].1.starts_with("unknown key, expected one of"),
            "{errors:?}"
        );
        let errors = parse_subscriber("colour = 'red'\n").unwrap_err();
        assert_eq!(errors[0].0, "colour");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let errors = parse_subscriber("[retry]\ninitial_interval = 5\n").unwrap_err();
        assert_eq!(errors[0].0, "retry.initial_interval");
        assert!(errors[0].1.contains("\"10s\""), "{errors:?}");
        let errors = parse_subscriber("retry = 5\n").unwrap_err();
        assert_eq!(errors[0].0, "retry");
        assert!(errors[0].1.contains("a [retry] table"), "{errors:?}");
        let errors = parse_subscriber("[auth]\ntype = 'magic'\n").unwrap_err();
        assert_eq!(errors[0].0, "auth.type");
        assert!(errors[0].1.contains("`oauth2`"), "{errors:?}");
        let errors = parse_subscriber("[signing]\nsecret = ['a', 1]\n").unwrap_err();
        assert_eq!(errors[0].0, "signing.secret");
    }

    #[test]
    fn syntax_errors_give_a_position_but_not_the_line() {
        let errors =
            parse_subscriber("url = 'x'\n[auth]\ncredentials = \"user:hunter2\n").unwrap_err();
        assert_eq!(errors[0].0, "");
        assert!(errors[0].1.contains("line 3"), "{errors:?}");
        assert!(!errors[0].1.contains("hunter2"), "{errors:?}");
    }

    #[test]
    fn strings_of_the_wrong_type_are_not_echoed() {
        let errors = parse_subscriber("max_in_flight = \"hunter2\"\n").unwrap_err();
        assert_eq!(errors[0].0, "max_in_flight");
        assert_eq!(errors[0].1, "invalid type: string, expected an integer");
        assert_eq!(
            hide_string_value("invalid type: string \"a\", expected x\", expected y"),
            "invalid type: string, expected y"
        );
        assert_eq!(
            hide_string_value("invalid type: integer `1`, expected a string"),
            "invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn secrets_accept_one_or_many() {
        let raw = parse_subscriber("[signing]\nsecret = 'a'\n").unwrap();
        assert_eq!(
            raw.signing.unwrap().secret,
            Some(RawSecrets::One(RawSecret("a".into())))
        );
        let raw = parse_subscriber("[signing]\nsecret = ['a', 'b']\n").unwrap();
        assert!(matches!(raw.signing.unwrap().secret, Some(RawSecrets::Many(v)) if v.len() == 2));
    }

    #[test]
    fn secret_lists_take_tables_with_not_after() {
        let raw = parse_subscriber(
            "[signing]\nsecret = ['a', { secret = 'b', not_after = '2026-12-31T00:00:00Z' }, \
             { secret = 'c', not_after = 2027-01-01T12:00:00+02:00 }, { secret = 'd' }]\n",
        )
        .unwrap();
        let Some(RawSecrets::Many(items)) = raw.signing.unwrap().secret else {
            panic!("a list");
        };
        let not_after: Vec<_> = items
            .iter()
            .map(|i| i.not_after.as_ref().map(|d| d.0.as_str()))
            .collect();
        assert_eq!(
            not_after,
            [
                None,
                Some("2026-12-31T00:00:00Z"),
                Some("2027-01-01T12:00:00+02:00"),
                None
            ]
        );
        assert_eq!(items[1].secret, Some(RawSecret("b".into())));

        let errors = parse_subscriber("[signing]\nsecret = [{ secret = 'b', not_afer = 'x' }]\n")
            .unwrap_err();
        assert!(errors[0].0.starts_with("signing.secret"), "{errors:?}");
        assert!(errors[0].1.contains("not_after"), "{errors:?}");
        let errors = parse_subscriber("[signing]\nsecret = [{ secret = 'b', not_after = 5 }]\n")
            .unwrap_err();
        assert!(errors[0].1.contains("RFC 3339"), "{errors:?}");
    }

    #[test]
    fn raw_debug_redacts_credentials() {
        let raw = parse_subscriber("[auth]\ntype = 'basic'\ncredentials = 'u:hunter2'\n").unwrap();
        assert!(!format!("{raw:?}").contains("hunter2"));
    }
}
