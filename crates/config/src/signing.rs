//! `[signing]`: scheme, secret(s), header prefix.
//!
//! Secrets are never quoted in messages; a problem names `signing.secret` (or
//! `signing.secret[i]` in a rotation list) and says what is wrong with it.

use herald_core::webhook_secret::{self, WebhookSecretError};
use herald_core::{Secret, SigningConfig, SigningScheme};

use crate::error::Report;
use crate::headers::check_name;
use crate::raw::{RawScheme, RawSecret, RawSecrets, RawSigning};
use crate::values::quote;

/// The `sha256-v1` header prefix when none is given.
pub(crate) const DEFAULT_HEADER_PREFIX: &str = "webhook";

/// Validates `[signing]`; `Ok(None)` when the section is absent, `Err(())` when it is invalid
/// (problems recorded in `report`).
pub(crate) fn signing(
    raw: Option<RawSigning>,
    report: &mut Report<'_>,
) -> Result<Option<SigningConfig>, ()> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut ok = true;

    let scheme = match (raw.scheme, raw.header_prefix) {
        (None, _) => {
            report.error(
                "signing.scheme",
                "missing; expected \"standard-webhooks\" or \"sha256-v1\"",
            );
            None
        }
        (Some(RawScheme::StandardWebhooks), Some(_)) => {
            report.error(
                "signing.header_prefix",
                "only allowed with scheme \"sha256-v1\" (standard-webhooks always uses webhook-*)",
            );
            None
        }
        (Some(RawScheme::StandardWebhooks), None) => Some(SigningScheme::StandardWebhooks),
        (Some(RawScheme::Sha256V1), prefix) => {
            let prefix = prefix.unwrap_or_else(|| DEFAULT_HEADER_PREFIX.to_owned());
            report
                .check("signing.header_prefix", check_prefix(&prefix))
                .map(|()| SigningScheme::Sha256V1 {
                    header_prefix: prefix,
                })
        }
    };

    let listed: Vec<(String, RawSecret)> = match raw.secret {
        None => {
            report.error(
                "signing.secret",
                "missing; give the secret, or a list of secrets during key rotation",
            );
            ok = false;
            Vec::new()
        }
        Some(RawSecrets::One(secret)) => vec![("signing.secret".to_owned(), secret)],
        Some(RawSecrets::Many(list)) if list.is_empty() => {
            report.error("signing.secret", "the list of secrets is empty");
            ok = false;
            Vec::new()
        }
        Some(RawSecrets::Many(list)) => list
            .into_iter()
            .enumerate()
            .map(|(i, secret)| (format!("signing.secret[{i}]"), secret))
            .collect(),
    };

    let mut secrets = Vec::with_capacity(listed.len());
    for (key, RawSecret(secret)) in listed {
        let checked = match raw.scheme {
            Some(RawScheme::StandardWebhooks) => check_standard_secret(&secret),
            Some(RawScheme::Sha256V1) | None => check_plain_secret(&secret),
        };
        if report.check(&key, checked).is_some() {
            secrets.push(Secret::new(secret));
        } else {
            ok = false;
        }
    }

    match scheme {
        Some(scheme) if ok => Ok(Some(SigningConfig { scheme, secrets })),
        _ => Err(()),
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.ends_with('-') {
        return Err(format!(
            "\"{}\" is not a usable prefix: give a name such as \"unidy-webhook\" (headers become <prefix>-signature, ...)",
            quote(prefix)
        ));
    }
    check_name(&format!("{prefix}-signature"))
        .map_err(|_| format!("\"{}\" is not usable in an HTTP header name", quote(prefix)))
}

fn check_plain_secret(secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        Err("the secret is empty".to_owned())
    } else {
        Ok(())
    }
}

/// A secret the signer can use (the rule lives in [`herald_core::webhook_secret`]).
fn check_standard_secret(secret: &str) -> Result<(), String> {
    match webhook_secret::decode(secret) {
        Ok(_) => Ok(()),
        Err(WebhookSecretError::Empty) => {
            Err("the key is empty (expected \"whsec_\" followed by base64)".to_owned())
        }
        Err(e) => Err(format!(
            "a standard-webhooks secret must be base64 (A-Z a-z 0-9 + /, optionally padded with =), optionally after \"whsec_\": {e} (value not shown)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    type Outcome = (Result<Option<SigningConfig>, ()>, Vec<(String, String)>);

    fn run(text: &str) -> Outcome {
        let raw: crate::raw::RawSubscriber = toml::from_str(text).unwrap();
        let mut report = Report::new(Path::new("s.toml"));
        let result = signing(raw.signing, &mut report);
        let errors = report
            .into_errors()
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect();
        (result, errors)
    }

    #[test]
    fn standard_webhooks() {
        let (ok, errors) =
            run("[signing]\nscheme = 'standard-webhooks'\nsecret = 'whsec_aGVsbG8='\n");
        assert!(errors.is_empty(), "{errors:?}");
        let signing = ok.unwrap().unwrap();
        assert_eq!(signing.scheme, SigningScheme::StandardWebhooks);
        assert_eq!(signing.secrets[0].expose(), "whsec_aGVsbG8=");

        let (bad, errors) = run(
            "[signing]\nscheme = 'standard-webhooks'\nsecret = ['whsec_aGVsbG8=', 'hunter2!', 'whsec_hunter2!', 'aGVsbG8=']\nheader_prefix = 'x'\n",
        );
        assert!(bad.is_err());
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "signing.header_prefix",
                "signing.secret[1]",
                "signing.secret[2]"
            ]
        );
        assert!(!format!("{errors:?}").contains("hunter2"));
    }

    #[test]
    fn sha256_v1() {
        let (ok, errors) = run(
            "[signing]\nscheme = 'sha256-v1'\nsecret = 's3cr3t'\nheader_prefix = 'unidy-webhook'\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            ok.unwrap().unwrap().scheme,
            SigningScheme::Sha256V1 {
                header_prefix: "unidy-webhook".into()
            }
        );
        let (ok, _) = run("[signing]\nscheme = 'sha256-v1'\nsecret = ['a', 'b']\n");
        let signing = ok.unwrap().unwrap();
        assert_eq!(
            signing.scheme,
            SigningScheme::Sha256V1 {
                header_prefix: "webhook".into()
            }
        );
        assert_eq!(signing.secrets.len(), 2);
        for prefix in ["", "bad prefix", "trailing-", "a\nb"] {
            let text = format!(
                "[signing]\nscheme = 'sha256-v1'\nsecret = 'x'\nheader_prefix = \"{}\"\n",
                prefix.escape_default()
            );
            let (bad, errors) = run(&text);
            assert!(bad.is_err(), "{prefix:?}");
            assert_eq!(errors[0].0, "signing.header_prefix");
        }
    }

    #[test]
    fn missing_and_empty() {
        let (bad, errors) = run("[signing]\n");
        assert!(bad.is_err());
        assert_eq!(errors.len(), 2);
        let (bad, errors) = run("[signing]\nscheme = 'sha256-v1'\nsecret = []\n");
        assert!(bad.is_err());
        assert!(errors[0].1.contains("empty"));
        let (bad, _) = run("[signing]\nscheme = 'sha256-v1'\nsecret = ''\n");
        assert!(bad.is_err());
        let (bad, _) = run("[signing]\nscheme = 'standard-webhooks'\nsecret = 'whsec_'\n");
        assert!(bad.is_err());
        assert_eq!(run("").0, Ok(None));
    }
}
