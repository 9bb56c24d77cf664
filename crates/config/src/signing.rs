//! `[signing]`: scheme, secret(s), header prefix.
//!
//! Secrets are never quoted in messages; a problem names `signing.secret` (or
//! `signing.secret[i]` in a rotation list) and says what is wrong with it.

use herald_core::{Secret, SigningConfig, SigningScheme};

use crate::error::Report;
use crate::headers::check_name;
use crate::raw::{RawScheme, RawSecret, RawSecrets, RawSigning};
use crate::values::quote;

/// The `sha256-v1` header prefix when none is given.
pub(crate) const DEFAULT_HEADER_PREFIX: &str = "webhook";

/// The prefix of a Standard Webhooks secret.
const WHSEC: &str = "whsec_";

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

/// Standard base64 of a non-empty key, after an optional `whsec_` prefix: the rule of the
/// official Standard Webhooks libraries (and of the delivery layer that decodes it).
fn check_standard_secret(secret: &str) -> Result<(), String> {
    let encoded = secret.strip_prefix(WHSEC).unwrap_or(secret);
    match decode_base64(encoded) {
        Some(key) if !key.is_empty() => Ok(()),
        Some(_) => Err("the key is empty (expected \"whsec_\" followed by base64)".to_owned()),
        None => Err(
            "a standard-webhooks secret must be base64 (A-Z a-z 0-9 + /, optionally padded with =), optionally after \"whsec_\" (value not shown)"
                .to_owned(),
        ),
    }
}

/// Decodes standard-alphabet base64 the way the delivery layer (and the `base64` crate with
/// `DecodePaddingMode::Indifferent`) does: `=` padding optional, but never more than the
/// canonical amount, and no stray bits in the last symbol. `None` if it is not valid.
pub(crate) fn decode_base64(encoded: &str) -> Option<Vec<u8>> {
    fn sextet(byte: u8) -> Option<u32> {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    }

    let bytes = encoded.as_bytes();
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &bytes[..bytes.len() - padding];
    let allowed_padding = match body.len() % 4 {
        0 => 0,
        2 => 2,
        3 => 1,
        _ => return None,
    };
    if padding > allowed_padding {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &byte in body {
        acc = (acc << 6) | sextet(byte)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Canonical encodings leave no set bits behind.
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn base64_decodes_canonical_standard_input_only() {
        assert_eq!(decode_base64("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aA=="), Some(b"h".to_vec()));
        assert_eq!(decode_base64("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(decode_base64(""), Some(vec![]));
        // Padding is optional (as in the delivery layer), but never excessive.
        assert_eq!(decode_base64("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aA="), Some(b"h".to_vec()));
        assert_eq!(
            decode_base64("c2Vjb25kLWtleQ"),
            Some(b"second-key".to_vec())
        );
        assert_eq!(decode_base64("aGk=="), None);
        assert_eq!(decode_base64("aGVsbG8h="), None);
        assert_eq!(decode_base64("aGVsb"), None); // 5 symbols: a lone trailing symbol
        assert_eq!(decode_base64("aB=="), None); // non-zero trailing bits
        assert_eq!(decode_base64("a==="), None);
        assert_eq!(decode_base64("===="), None);
        assert_eq!(decode_base64("aG=k"), None);
        assert_eq!(decode_base64("-_-_"), None); // URL-safe alphabet
        assert_eq!(decode_base64("aGVs bG8="), None);
    }

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
