//! `[auth]`: none, basic, api_key or oauth2.
//!
//! A missing section means `none`. A key that belongs to another type (say `credentials` with
//! `type = "none"`) is an error, so a half-edited section cannot silently send no credentials.

use herald_core::{AuthConfig, Secret, SecurityPolicy};

use crate::error::Report;
use crate::headers::split_api_key;
use crate::raw::{RawAuth, RawAuthType, RawSecret};
use crate::url_check::{outbound_url, Target};

/// Validates `[auth]`; `None` when it is invalid (problems recorded in `report`).
pub(crate) fn auth(
    raw: Option<RawAuth>,
    security: &SecurityPolicy,
    report: &mut Report<'_>,
) -> Option<AuthConfig> {
    let Some(raw) = raw else {
        return Some(AuthConfig::None);
    };
    let Some(kind) = raw.kind else {
        report.error(
            "auth.type",
            "missing; expected one of \"none\", \"basic\", \"api_key\", \"oauth2\"",
        );
        return None;
    };

    // Keys that the chosen type does not use.
    let present = [
        ("credentials", raw.credentials.is_some(), RawAuthType::Basic),
        ("key", raw.key.is_some(), RawAuthType::ApiKey),
        ("token_url", raw.token_url.is_some(), RawAuthType::Oauth2),
        ("client_id", raw.client_id.is_some(), RawAuthType::Oauth2),
        (
            "client_secret",
            raw.client_secret.is_some(),
            RawAuthType::Oauth2,
        ),
        ("scopes", raw.scopes.is_some(), RawAuthType::Oauth2),
    ];
    let mut ok = true;
    for (name, is_present, owner) in present {
        if is_present && owner != kind {
            report.error(
                format!("auth.{name}"),
                format!(
                    "not allowed with type \"{}\" (it belongs to type \"{}\")",
                    kind.name(),
                    owner.name()
                ),
            );
            ok = false;
        }
    }

    let config = match kind {
        RawAuthType::None => Some(AuthConfig::None),
        RawAuthType::Basic => basic(raw.credentials, report),
        RawAuthType::ApiKey => api_key(raw.key, report),
        RawAuthType::Oauth2 => oauth2(raw, security, report),
    };
    config.filter(|_| ok)
}

fn basic(credentials: Option<RawSecret>, report: &mut Report<'_>) -> Option<AuthConfig> {
    let Some(RawSecret(credentials)) = credentials else {
        report.error("auth.credentials", "missing; expected \"user:password\"");
        return None;
    };
    if !credentials.contains(':') {
        report.error(
            "auth.credentials",
            "must be \"user:password\" (no ':' found; value not shown)",
        );
        return None;
    }
    Some(AuthConfig::Basic {
        credentials: Secret::new(credentials),
    })
}

fn api_key(key: Option<RawSecret>, report: &mut Report<'_>) -> Option<AuthConfig> {
    let Some(RawSecret(key)) = key else {
        report.error(
            "auth.key",
            "missing; expected \"Header-Name:value\", or just the value for an Authorization header",
        );
        return None;
    };
    let (header, value) = report.check("auth.key", split_api_key(&key))?;
    Some(AuthConfig::ApiKey {
        header,
        value: Secret::new(value),
    })
}

fn oauth2(raw: RawAuth, security: &SecurityPolicy, report: &mut Report<'_>) -> Option<AuthConfig> {
    let token_url = match raw.token_url {
        None => {
            report.error(
                "auth.token_url",
                "missing; expected the token endpoint's https:// URL",
            );
            None
        }
        Some(url) => report.check(
            "auth.token_url",
            outbound_url(&url, security, Target::TokenEndpoint),
        ),
    };
    let client_id = match raw.client_id {
        None => {
            report.error("auth.client_id", "missing");
            None
        }
        Some(id) if id.trim().is_empty() => {
            report.error("auth.client_id", "is empty");
            None
        }
        Some(id) => Some(id),
    };
    let client_secret = match raw.client_secret {
        None => {
            report.error("auth.client_secret", "missing");
            None
        }
        Some(RawSecret(secret)) if secret.is_empty() => {
            report.error("auth.client_secret", "is empty");
            None
        }
        Some(RawSecret(secret)) => Some(Secret::new(secret)),
    };
    let mut scopes_ok = true;
    let scopes = raw.scopes.unwrap_or_default();
    for (i, scope) in scopes.iter().enumerate() {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            report.error(
                format!("auth.scopes[{i}]"),
                "a scope must be non-empty and contain no spaces (list each scope separately)",
            );
            scopes_ok = false;
        }
    }
    Some(AuthConfig::OAuth2 {
        token_url: token_url?,
        client_id: client_id?,
        client_secret: client_secret?,
        scopes: scopes_ok.then_some(scopes)?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn run(text: &str, security: SecurityPolicy) -> (Option<AuthConfig>, Vec<(String, String)>) {
        let raw: crate::raw::RawSubscriber = toml::from_str(text).unwrap();
        let mut report = Report::new(Path::new("s.toml"));
        let result = auth(raw.auth, &security, &mut report);
        let errors = report
            .into_errors()
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect();
        (result, errors)
    }

    fn strict() -> SecurityPolicy {
        SecurityPolicy::default()
    }

    #[test]
    fn each_type() {
        assert_eq!(run("", strict()).0, Some(AuthConfig::None));
        assert_eq!(
            run("[auth]\ntype = 'none'\n", strict()).0,
            Some(AuthConfig::None)
        );
        assert!(matches!(
            run("[auth]\ntype = 'basic'\ncredentials = 'u:p'\n", strict()).0,
            Some(AuthConfig::Basic { credentials }) if credentials.expose() == "u:p"
        ));
        assert!(matches!(
            run("[auth]\ntype = 'api_key'\nkey = 'X-API-Key:abc123'\n", strict()).0,
            Some(AuthConfig::ApiKey { header, value }) if header == "X-API-Key" && value.expose() == "abc123"
        ));
        let (oauth, errors) = run(
            "[auth]\ntype = 'oauth2'\ntoken_url = 'https://idp.example/token'\nclient_id = 'c'\nclient_secret = 's'\nscopes = ['a', 'b']\n",
            strict(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(oauth, Some(AuthConfig::OAuth2 { scopes, .. }) if scopes == ["a", "b"]));
        let (oauth, _) = run(
            "[auth]\ntype = 'oauth2'\ntoken_url = 'https://idp.example/token'\nclient_id = 'c'\nclient_secret = 's'\n",
            strict(),
        );
        assert!(matches!(oauth, Some(AuthConfig::OAuth2 { scopes, .. }) if scopes.is_empty()));
    }

    #[test]
    fn keys_of_other_types_are_refused() {
        let (result, errors) = run(
            "[auth]\ntype = 'none'\ncredentials = 'u:hunter2'\n",
            strict(),
        );
        assert_eq!(result, None);
        assert_eq!(errors[0].0, "auth.credentials");
        assert!(errors[0].1.contains("\"none\""));
        let (result, errors) = run(
            "[auth]\ntype = 'basic'\ncredentials = 'u:p'\nkey = 'k'\n",
            strict(),
        );
        assert_eq!(result, None);
        assert_eq!(errors[0].0, "auth.key");
    }

    #[test]
    fn problems_are_reported_without_values() {
        let (result, errors) = run(
            "[auth]\ntype = 'basic'\ncredentials = 'hunter2'\n",
            strict(),
        );
        assert_eq!(result, None);
        assert_eq!(errors[0].0, "auth.credentials");
        let (_, errors) = run(
            "[auth]\ntype = 'api_key'\nkey = \"X-Key:hunter2\\n\"\n",
            strict(),
        );
        assert_eq!(errors[0].0, "auth.key");
        let (_, errors) = run(
            "[auth]\ntype = 'oauth2'\ntoken_url = 'http://idp.example/t'\nclient_secret = ''\nscopes = ['a b']\n",
            strict(),
        );
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth.token_url",
                "auth.client_id",
                "auth.client_secret",
                "auth.scopes[0]"
            ]
        );
        assert!(!format!("{errors:?}").contains("hunter2"));
        let (_, errors) = run("[auth]\n", strict());
        assert_eq!(errors[0].0, "auth.type");
    }
}
