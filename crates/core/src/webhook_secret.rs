//! Standard Webhooks secrets: which strings are valid and which key each one stands for.
//!
//! One rule, used by `herald-config` (to refuse a bad secret when the config loads) and by
//! `herald-delivery` (to get the key it signs with), so the two can never disagree. It is the
//! rule of the official Standard Webhooks libraries: an optional `whsec_` prefix, then standard
//! base64 (`A-Z a-z 0-9 + /`) with optional `=` padding, never more padding than canonical and
//! no stray bits in the last symbol. Errors say where a secret is wrong, never what it holds.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine as _};

/// The prefix the Standard Webhooks libraries put on the secrets they generate.
pub const PREFIX: &str = "whsec_";

/// Standard alphabet, padding optional (secrets are often copied without it).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a string is not a usable Standard Webhooks secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookSecretError {
    /// Nothing after the optional prefix, or base64 of nothing.
    #[error("the key is empty")]
    Empty,
    /// Not standard base64; the text says where (a position, never the value).
    #[error("not standard base64: {0}")]
    NotBase64(String),
}

/// The HMAC key `secret` stands for.
pub fn decode(secret: &str) -> Result<Vec<u8>, WebhookSecretError> {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let key = LENIENT_BASE64
        .decode(encoded)
        .map_err(|e| WebhookSecretError::NotBase64(describe(&e)))?;
    if key.is_empty() {
        return Err(WebhookSecretError::Empty);
    }
    Ok(key)
}

fn describe(e: &DecodeError) -> String {
    match e {
        DecodeError::InvalidByte(at, _) => format!("invalid character at position {}", at + 1),
        DecodeError::InvalidLength(_) => "invalid length".to_owned(),
        DecodeError::InvalidLastSymbol(at, _) => {
            format!("invalid last character at position {}", at + 1)
        }
        DecodeError::InvalidPadding => "invalid padding".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> Option<Vec<u8>> {
        decode(secret).ok()
    }

    #[test]
    fn prefix_optional_padding_optional_canonical_only() {
        assert_eq!(key("whsec_aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(key("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(key("aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(key("aA=="), Some(b"h".to_vec()));
        assert_eq!(key("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
        // Padding is optional, but never excessive.
        assert_eq!(key("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(key("aA="), Some(b"h".to_vec()));
        assert_eq!(key("whsec_c2Vjb25kLWtleQ"), Some(b"second-key".to_vec()));
        assert_eq!(key("aGk=="), None);
        assert_eq!(key("aGVsbG8h="), None);
        assert_eq!(key("aGVsb"), None); // a lone trailing symbol
        assert_eq!(key("aB=="), None); // non-zero trailing bits
        assert_eq!(key("===="), None);
        assert_eq!(key("aG=k"), None);
        assert_eq!(key("-_-_"), None); // URL-safe alphabet
        assert_eq!(key("aGVs bG8="), None);
    }

    #[test]
    fn empty_keys_and_errors_without_the_value() {
        assert_eq!(decode("whsec_"), Err(WebhookSecretError::Empty));
        assert_eq!(decode(""), Err(WebhookSecretError::Empty));
        let err = decode("whsec_hunter2!")
            .expect_err("not base64")
            .to_string();
        assert_eq!(err, "not standard base64: invalid character at position 8");
        assert!(!err.contains("hunter2"));
    }
}
