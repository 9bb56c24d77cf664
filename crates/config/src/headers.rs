//! HTTP header names and values: the static `headers` table and the `api_key` auth header.
//!
//! Values are never quoted in messages: a static header may well carry a token.

use std::collections::BTreeMap;

use herald_core::{AuthConfig, SigningConfig, SigningScheme};
use http::{HeaderName, HeaderValue};

use crate::env::join_key;
use crate::error::Report;
use crate::raw::RawSecret;
use crate::values::quote;

/// Headers the HTTP client manages; setting them by hand would corrupt the request.
const CLIENT_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
];

/// Headers Herald sets on every delivery.
const HERALD_HEADERS: [&str; 2] = ["content-type", "user-agent"];

/// Checks a header name with the `http` crate.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the header name is empty".to_owned());
    }
    HeaderName::from_bytes(name.as_bytes())
        .map(drop)
        .map_err(|_| {
            format!(
                "\"{}\" is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                quote(name)
            )
        })
}

/// Checks a header value: no control characters (line breaks, tabs, NUL, DEL), and whatever
/// else the `http` crate refuses. Non-ASCII text is allowed and sent as UTF-8.
pub(crate) fn check_value(value: &str) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        return Err(
            "the value contains a control character such as a line break or tab (value not shown)"
                .to_owned(),
        );
    }
    HeaderValue::from_bytes(value.as_bytes())
        .map(drop)
        .map_err(|_| "the value is not a valid HTTP header value (value not shown)".to_owned())
}

/// Splits an `api_key` on its first colon: `"X-API-Key:abc"` is header `X-API-Key`, value
/// `abc`; without a colon the header is `Authorization` and the value the whole key. Spaces and
/// tabs right after the colon are dropped (`"Authorization: Bearer abc"` works); later colons
/// stay in the value.
pub(crate) fn split_api_key(key: &str) -> Result<(String, String), String> {
    let (name, value) = match key.split_once(':') {
        Some((name, value)) => (name, value.trim_start_matches([' ', '\t'])),
        None => ("Authorization", key),
    };
    check_name(name).map_err(|e| format!("{e}; write \"Header-Name:value\" or just the value"))?;
    if value.is_empty() {
        return Err("the header value is empty".to_owned());
    }
    check_value(value)?;
    Ok((name.to_owned(), value.to_owned()))
}

/// Validates the static `headers` table, refusing names Herald or the chosen auth and signing
/// set themselves. `auth` and `signing` are `None` when they were invalid (their checks are then
/// skipped).
pub(crate) fn static_headers(
    raw: Option<BTreeMap<String, RawSecret>>,
    auth: Option<&AuthConfig>,
    signing: Option<&SigningConfig>,
    report: &mut Report<'_>,
) -> Option<Vec<(String, String)>> {
    let raw = raw.unwrap_or_default();
    let mut headers = Vec::with_capacity(raw.len());
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut ok = true;
    for (name, RawSecret(value)) in raw {
        let key = join_key("headers", &name);
        let lower = name.to_ascii_lowercase();
        let problem = check_name(&name)
            .and_then(|()| check_value(&value))
            .and_then(|()| reserved(&lower, auth, signing))
            .and_then(|()| match seen.get(&lower) {
                Some(first) => Err(format!(
                    "duplicate of header \"{}\" (header names are case-insensitive)",
                    quote(first)
                )),
                None => Ok(()),
            });
        if let Err(message) = problem {
            report.error(key, message);
            ok = false;
            continue;
        }
        seen.insert(lower, name.clone());
        headers.push((name, value));
    }
    ok.then_some(headers)
}

/// Why a (lower-cased) name may not be set by hand, if it may not.
fn reserved(
    lower: &str,
    auth: Option<&AuthConfig>,
    signing: Option<&SigningConfig>,
) -> Result<(), String> {
    if HERALD_HEADERS.contains(&lower) {
        return Err("is set by Herald on every delivery".to_owned());
    }
    if CLIENT_HEADERS.contains(&lower) {
        return Err("is managed by the HTTP client".to_owned());
    }
    if lower.starts_with("webhook-") {
        return Err(
            "webhook-* headers are set by Herald (id, timestamp, attempt, signature)".to_owned(),
        );
    }
    let auth_header = match auth {
        Some(AuthConfig::Basic { .. } | AuthConfig::OAuth2 { .. }) => {
            Some("authorization".to_owned())
        }
        Some(AuthConfig::ApiKey { header, .. }) => Some(header.to_ascii_lowercase()),
        Some(AuthConfig::None) | None => None,
    };
    if auth_header.as_deref() == Some(lower) {
        return Err("is set by [auth]".to_owned());
    }
    if let Some(SigningConfig {
        scheme: SigningScheme::Sha256V1 { header_prefix },
        ..
    }) = signing
    {
        let prefix = format!("{}-", header_prefix.to_ascii_lowercase());
        if lower.starts_with(&prefix) {
            return Err(format!(
                "{prefix}* headers are set by [signing] (header_prefix \"{}\")",
                quote(header_prefix)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use herald_core::{Secret, SigningSecret};

    use super::*;

    #[test]
    fn api_keys_split_on_the_first_colon() {
        assert_eq!(
            split_api_key("X-API-Key:abc123"),
            Ok(("X-API-Key".into(), "abc123".into()))
        );
        assert_eq!(
            split_api_key("Authorization:Bearer abc"),
            Ok(("Authorization".into(), "Bearer abc".into()))
        );
        assert_eq!(
            split_api_key("Authorization: Bearer abc"),
            Ok(("Authorization".into(), "Bearer abc".into()))
        );
        assert_eq!(
            split_api_key("abc123"),
            Ok(("Authorization".into(), "abc123".into()))
        );
        assert_eq!(
            split_api_key("X-Key:a:b:c"),
            Ok(("X-Key".into(), "a:b:c".into()))
        );
    }

    #[test]
    fn api_key_problems_never_show_the_value() {
        for bad in [
            ":hunter2",
            "Bad Name:hunter2",
            "X-Key:",
            "X-Key:hunter2\r\nInjected: 1",
            "hunter2\n",
            "X-Key:\thunter2\u{7f}",
            "",
        ] {
            let message = split_api_key(bad).unwrap_err();
            assert!(!message.contains("hunter2"), "{bad:?}: {message}");
        }
    }

    fn headers(
        pairs: &[(&str, &str)],
        auth: Option<&AuthConfig>,
        signing: Option<&SigningConfig>,
    ) -> Result<Vec<(String, String)>, Vec<String>> {
        let raw = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), RawSecret((*v).to_owned())))
            .collect();
        let mut report = Report::new(Path::new("s.toml"));
        match static_headers(Some(raw), auth, signing, &mut report) {
            Some(h) if report.is_clean() => Ok(h),
            _ => Err(report.into_errors().into_iter().map(|e| e.key).collect()),
        }
    }

    #[test]
    fn reserved_names_are_refused() {
        assert!(headers(&[("X-Tenant", "acme")], None, None).is_ok());
        let errors = headers(
            &[
                ("Content-Type", "text/plain"),
                ("User-Agent", "me"),
                ("Webhook-Id", "1"),
                ("Host", "x"),
            ],
            Some(&AuthConfig::None),
            None,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 4);

        let basic = AuthConfig::Basic {
            credentials: Secret::new("u:p"),
        };
        assert!(headers(&[("Authorization", "x")], Some(&AuthConfig::None), None).is_ok());
        assert!(headers(&[("Authorization", "x")], Some(&basic), None).is_err());
        let api_key = AuthConfig::ApiKey {
            header: "X-API-Key".into(),
            value: Secret::new("k"),
        };
        assert!(headers(&[("x-api-key", "x")], Some(&api_key), None).is_err());

        let signing = SigningConfig {
            scheme: SigningScheme::Sha256V1 {
                header_prefix: "unidy-webhook".into(),
            },
            secrets: vec![SigningSecret::new("s")],
        };
        assert!(headers(&[("Unidy-Webhook-Signature", "x")], None, Some(&signing)).is_err());
        assert!(headers(&[("Unidy-Other", "x")], None, Some(&signing)).is_ok());
    }

    #[test]
    fn names_and_values_are_checked() {
        assert_eq!(
            headers(&[("Bad Name", "x"), ("X-Ok", "a\r\nb")], None, None).unwrap_err(),
            ["headers.\"Bad Name\"", "headers.X-Ok"]
        );
        assert!(headers(&[("X-A", "1"), ("x-a", "2")], None, None).is_err());
        assert!(headers(&[("X-Name", "Müller")], None, None).is_ok());
    }
}
