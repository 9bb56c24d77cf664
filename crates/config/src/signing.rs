//! `[signing]`: scheme, secret(s), header prefix.
//!
//! Secrets are never quoted in messages; a problem names `signing.secret` (or
//! `signing.secret[i]` in a rotation list, `signing.secret[i].secret` and
//! `signing.secret[i].not_after` for a table item) and says what is wrong with it.
//!
//! **Expiry**: a list item may be `{ secret = "...", not_after = "<RFC 3339>" }` (a quoted
//! string or a TOML date-time). A secret already past its `not_after` at load is a warning
//! (`herald check` prints it, the daemon logs it); a list whose every secret is past it is an
//! error, because nothing could be signed. The delivery side stops using a secret at its
//! `not_after` while running, without a reload.

use herald_core::webhook_secret::{self, WebhookSecretError};
use herald_core::{Secret, SigningConfig, SigningScheme, SigningSecret, UnixMillis};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::Report;
use crate::headers::check_name;
use crate::raw::{RawDateTime, RawScheme, RawSecret, RawSecrets, RawSigning};
use crate::values::quote;

/// The `sha256-v1` header prefix when none is given.
pub(crate) const DEFAULT_HEADER_PREFIX: &str = "webhook";

/// Validates `[signing]`; `Ok(None)` when the section is absent, `Err(())` when it is invalid
/// (problems recorded in `report`).
pub(crate) fn signing(
    raw: Option<RawSigning>,
    report: &mut Report<'_>,
) -> Result<Option<SigningConfig>, ()> {
    signing_at(raw, UnixMillis::now(), report)
}

/// [`signing`] with the clock given: secrets past their `not_after` at `now` are a warning, or
/// an error when no secret is left.
fn signing_at(
    raw: Option<RawSigning>,
    now: UnixMillis,
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

    let listed: Vec<Listed> = match raw.secret {
        None => {
            report.error(
                "signing.secret",
                "missing; give the secret, or a list of secrets during key rotation",
            );
            ok = false;
            Vec::new()
        }
        Some(RawSecrets::One(secret)) => vec![Listed {
            key: "signing.secret".to_owned(),
            secret_key: "signing.secret".to_owned(),
            secret: Some(secret),
            not_after: None,
        }],
        Some(RawSecrets::Many(list)) if list.is_empty() => {
            report.error("signing.secret", "the list of secrets is empty");
            ok = false;
            Vec::new()
        }
        Some(RawSecrets::Many(list)) => list
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let key = format!("signing.secret[{i}]");
                Listed {
                    secret_key: if item.table {
                        format!("{key}.secret")
                    } else {
                        key.clone()
                    },
                    key,
                    secret: item.secret,
                    not_after: item.not_after,
                }
            })
            .collect(),
    };

    let mut secrets = Vec::with_capacity(listed.len());
    let mut keys = Vec::with_capacity(listed.len());
    for item in listed {
        let Some(RawSecret(secret)) = item.secret else {
            report.error(
                &item.secret_key,
                "missing; a table in the list needs `secret` (and may have `not_after`)",
            );
            ok = false;
            continue;
        };
        let checked = match raw.scheme {
            Some(RawScheme::StandardWebhooks) => check_standard_secret(&secret),
            Some(RawScheme::Sha256V1) | None => check_plain_secret(&secret),
        };
        let secret_ok = report.check(&item.secret_key, checked).is_some();
        let not_after = match &item.not_after {
            None => Some(None),
            Some(RawDateTime(text)) => report
                .check(&format!("{}.not_after", item.key), not_after(text))
                .map(|t| Some((t, text.clone()))),
        };
        match not_after {
            Some(not_after) if secret_ok => {
                secrets.push(SigningSecret {
                    secret: Secret::new(secret),
                    not_after: not_after.as_ref().map(|(t, _)| *t),
                });
                keys.push((item.key, not_after.map(|(_, text)| text)));
            }
            _ => ok = false,
        }
    }

    if ok && secrets.iter().all(|s| s.is_expired_at(now)) {
        report.error(
            "signing.secret",
            "every secret is past its not_after, so nothing could be signed: add a new secret \
             (the expired ones may stay in the list until receivers have switched)",
        );
        ok = false;
    } else if ok {
        for (secret, (key, text)) in secrets.iter().zip(&keys) {
            if let (true, Some(text)) = (secret.is_expired_at(now), text) {
                report.warn(
                    format!("{key}.not_after"),
                    format!(
                        "this secret expired at {} and no longer signs; remove it from the list",
                        quote(text)
                    ),
                );
            }
        }
    }

    match scheme {
        Some(scheme) if ok => Ok(Some(SigningConfig { scheme, secrets })),
        _ => Err(()),
    }
}

/// One secret of `[signing] secret` as written, with the key to name it by.
struct Listed {
    /// `signing.secret` or `signing.secret[i]`.
    key: String,
    /// Where the secret itself is: `key`, or `key.secret` for a table item.
    secret_key: String,
    secret: Option<RawSecret>,
    not_after: Option<RawDateTime>,
}

/// `not_after`: an RFC 3339 date-time with an offset (`Z` or `+02:00`), not before 1970.
fn not_after(text: &str) -> Result<UnixMillis, String> {
    let invalid = || {
        format!(
            "\"{}\" is not an RFC 3339 date-time with a time zone, e.g. \"2026-12-31T00:00:00Z\"",
            quote(text)
        )
    };
    let parsed = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| invalid())?;
    let millis = parsed.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(millis).map(UnixMillis).map_err(|_| invalid())
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
        assert_eq!(signing.secrets[0].secret.expose(), "whsec_aGVsbG8=");

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

    /// 2026-06-01T00:00:00Z.
    const NOW: UnixMillis = UnixMillis(1_780_272_000_000);

    fn run_at(text: &str, now: UnixMillis) -> (Outcome, Vec<(String, String)>) {
        let raw: crate::raw::RawSubscriber = toml::from_str(text).unwrap();
        let mut report = Report::new(Path::new("s.toml"));
        let result = signing_at(raw.signing, now, &mut report);
        let warnings = report
            .take_warnings()
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect();
        let errors = report
            .into_errors()
            .into_iter()
            .map(|e| (e.key, e.message))
            .collect();
        ((result, errors), warnings)
    }

    #[test]
    fn not_after_is_read_per_secret() {
        let ((ok, errors), warnings) = run_at(
            "[signing]\nscheme = 'standard-webhooks'\nsecret = ['whsec_bmV3', \
             { secret = 'whsec_b2xk', not_after = '2026-12-31T00:00:00Z' }, \
             { secret = 'whsec_b2xkZXI=', not_after = 2026-12-31T02:00:00.5+02:00 }]\n",
            NOW,
        );
        assert!(
            errors.is_empty() && warnings.is_empty(),
            "{errors:?} {warnings:?}"
        );
        let secrets = ok.unwrap().unwrap().secrets;
        let not_after: Vec<_> = secrets.iter().map(|s| s.not_after).collect();
        assert_eq!(
            not_after,
            [
                None,
                Some(UnixMillis(1_798_675_200_000)),
                Some(UnixMillis(1_798_675_200_500))
            ]
        );
        assert_eq!(secrets[1].secret.expose(), "whsec_b2xk");
    }

    #[test]
    fn expired_secrets_warn_and_all_expired_is_an_error() {
        let text = "[signing]\nscheme = 'standard-webhooks'\nsecret = ['whsec_bmV3', \
                    { secret = 'whsec_b2xk', not_after = '2026-01-01T00:00:00Z' }]\n";
        let ((ok, errors), warnings) = run_at(text, NOW);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ok.unwrap().unwrap().secrets.len(), 2);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].0, "signing.secret[1].not_after");
        assert!(
            warnings[0].1.contains("2026-01-01T00:00:00Z"),
            "{warnings:?}"
        );
        assert!(!warnings[0].1.contains("b2xk"), "{warnings:?}");
        // Before its not_after, no warning.
        let ((_, _), warnings) = run_at(text, UnixMillis(1_767_225_600_000));
        assert!(warnings.is_empty(), "{warnings:?}");

        let ((bad, errors), _) = run_at(
            "[signing]\nscheme = 'sha256-v1'\nsecret = [{ secret = 'a', not_after = '2026-01-01T00:00:00Z' }, \
             { secret = 'b', not_after = '2026-05-31T23:59:59Z' }]\n",
            NOW,
        );
        assert!(bad.is_err());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "signing.secret");
        assert!(errors[0].1.contains("every secret"), "{errors:?}");
    }

    #[test]
    fn bad_not_after_and_tables_without_secret_name_their_key() {
        let ((bad, errors), _) = run_at(
            "[signing]\nscheme = 'standard-webhooks'\nsecret = ['whsec_bmV3', \
             { secret = 'whsec_b2xk', not_after = 'next tuesday' }, \
             { secret = 'whsec_b2xk', not_after = '2026-12-31T00:00:00' }, \
             { secret = 'whsec_b2xk', not_after = 2026-12-31 }, \
             { not_after = '2026-12-31T00:00:00Z' }, \
             { secret = 'hunter2!' }]\n",
            NOW,
        );
        assert!(bad.is_err());
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "signing.secret[1].not_after",
                "signing.secret[2].not_after",
                "signing.secret[3].not_after",
                "signing.secret[4].secret",
                "signing.secret[5].secret",
            ]
        );
        assert!(errors[0].1.contains("RFC 3339"), "{errors:?}");
        assert!(errors[0].1.contains("next tuesday"), "{errors:?}");
        assert!(!format!("{errors:?}").contains("hunter2"));
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
