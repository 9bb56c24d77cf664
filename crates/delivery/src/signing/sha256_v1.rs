//! The `sha256-v1` scheme (Unidy-compatible).

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use herald_core::{SigningSecret, SubscriberId};

use super::{KeyRing, SignInput, Signer};
use crate::DeliveryError;

/// `{prefix}-signature: hex(SHA-256(secret ‖ body))`, `{prefix}-version: 1`,
/// `{prefix}-delivery-id: <delivery id>`, `{prefix}-delivery-attempt: <n>`.
///
/// The secret is used as its UTF-8 bytes, exactly as configured (no decoding). The prefix comes
/// from `header_prefix` (the config layer fills in `webhook` when none is given). Secrets past
/// their `not_after` do not sign (see the [module docs](super)).
pub struct Sha256V1 {
    /// One SHA-256 state that has already absorbed each secret, in configuration order.
    keyed: KeyRing<Sha256>,
    signature: HeaderName,
    version: HeaderName,
    delivery_id: HeaderName,
    delivery_attempt: HeaderName,
}

impl Sha256V1 {
    /// Prepares the keyed hash states and the header names.
    pub fn new(
        subscriber: &SubscriberId,
        header_prefix: &str,
        secrets: &[SigningSecret],
    ) -> Result<Self, DeliveryError> {
        let name = |suffix: &str| {
            let full = format!("{header_prefix}-{suffix}");
            HeaderName::from_bytes(full.as_bytes()).map_err(|e| DeliveryError::InvalidHeader {
                subscriber: subscriber.to_string(),
                name: full,
                part: "name",
                source: Box::new(e),
            })
        };
        let keyed = KeyRing::new(subscriber, secrets, |index, secret| {
            if secret.secret.expose().is_empty() {
                return Err(DeliveryError::EmptySigningSecret {
                    subscriber: subscriber.to_string(),
                    index,
                });
            }
            Ok(Sha256::new_with_prefix(secret.secret.expose().as_bytes()))
        })?;
        Ok(Self {
            keyed,
            signature: name("signature")?,
            version: name("version")?,
            delivery_id: name("delivery-id")?,
            delivery_attempt: name("delivery-attempt")?,
        })
    }

    /// The signature value for `input` (lower-case hex, space-separated when several secrets
    /// are valid at `input.timestamp`); an error when none is.
    pub fn signature(&self, input: &SignInput<'_>) -> Result<String, DeliveryError> {
        let mut out = String::with_capacity(self.keyed.len() * 65);
        self.keyed.each_valid(input.timestamp, |keyed| {
            let digest = keyed.clone().chain_update(input.body).finalize();
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&hex::encode(digest));
        })?;
        Ok(out)
    }
}

impl Signer for Sha256V1 {
    fn sign(&self, input: &SignInput<'_>, headers: &mut HeaderMap) -> Result<(), DeliveryError> {
        let invalid = |_| DeliveryError::Signing("signature header is not a valid header value");
        headers.insert(
            self.signature.clone(),
            HeaderValue::try_from(self.signature(input)?).map_err(invalid)?,
        );
        headers.insert(self.version.clone(), HeaderValue::from_static("1"));
        headers.insert(
            self.delivery_id.clone(),
            HeaderValue::from_str(input.delivery_id).map_err(invalid)?,
        );
        headers.insert(
            self.delivery_attempt.clone(),
            HeaderValue::from(input.attempt),
        );
        Ok(())
    }
}

impl fmt::Debug for Sha256V1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256V1")
            .field("signature_header", &self.signature)
            .field("secrets", &self.keyed.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_secret_then_body_and_sets_its_headers() {
        let sub = SubscriberId::new("acme").expect("id");
        let signer = Sha256V1::new(&sub, "unidy-webhook", &[SigningSecret::new("s3cret")])
            .expect("valid config");
        let input = SignInput {
            delivery_id: "0190c0de-0000-7000-8000-000000000001",
            timestamp: 1,
            attempt: 3,
            body: b"{\"a\":1}",
        };
        let mut headers = HeaderMap::new();
        signer.sign(&input, &mut headers).expect("signed");
        let expected = hex::encode(Sha256::digest(b"s3cret{\"a\":1}"));
        assert_eq!(headers["unidy-webhook-signature"], expected.as_str());
        assert_eq!(headers["unidy-webhook-version"], "1");
        assert_eq!(
            headers["unidy-webhook-delivery-id"],
            "0190c0de-0000-7000-8000-000000000001"
        );
        assert_eq!(headers["unidy-webhook-delivery-attempt"], "3");
        assert!(!format!("{signer:?}").contains("s3cret"));
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let sub = SubscriberId::new("acme").expect("id");
        let signer = Sha256V1::new(
            &sub,
            "webhook",
            &[SigningSecret::new("a"), SigningSecret::new("b")],
        )
        .expect("valid config");
        let input = SignInput {
            delivery_id: "x",
            timestamp: 1,
            attempt: 1,
            body: b"body",
        };
        assert_eq!(
            signer.signature(&input).expect("signed"),
            format!(
                "{} {}",
                hex::encode(Sha256::digest(b"abody")),
                hex::encode(Sha256::digest(b"bbody"))
            )
        );
    }

    #[test]
    fn an_expired_secret_stops_signing() {
        let sub = SubscriberId::new("acme").expect("id");
        let signer = Sha256V1::new(
            &sub,
            "webhook",
            &[
                SigningSecret::until("a", herald_core::UnixMillis(10_999)),
                SigningSecret::new("b"),
            ],
        )
        .expect("valid config");
        let at = |timestamp| SignInput {
            delivery_id: "x",
            timestamp,
            attempt: 1,
            body: b"body",
        };
        assert_eq!(
            signer
                .signature(&at(10))
                .expect("signed")
                .split(' ')
                .count(),
            2
        );
        assert_eq!(
            signer.signature(&at(11)).expect("signed"),
            hex::encode(Sha256::digest(b"bbody"))
        );
        let old = Sha256V1::new(
            &sub,
            "webhook",
            &[SigningSecret::until("a", herald_core::UnixMillis(10_000))],
        )
        .expect("valid config");
        let mut headers = HeaderMap::new();
        let err = old.sign(&at(11), &mut headers).expect_err("expired");
        assert!(
            matches!(err, DeliveryError::SigningSecretsExpired { .. }),
            "{err}"
        );
        assert!(headers.is_empty());
    }

    #[test]
    fn bad_prefix_is_a_config_error() {
        let sub = SubscriberId::new("acme").expect("id");
        let err = Sha256V1::new(&sub, "bad prefix", &[SigningSecret::new("a")]).expect_err("space");
        assert!(matches!(err, DeliveryError::InvalidHeader { .. }), "{err}");
    }
}
