//! The Standard Webhooks scheme (<https://www.standardwebhooks.com/>).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use herald_core::webhook_secret::{self, WebhookSecretError};
use herald_core::{SigningSecret, SubscriberId};

use super::{KeyRing, SignInput, Signer};
use crate::DeliveryError;

/// The header carrying the signatures.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("webhook-signature");

/// The prefix the Standard Webhooks libraries put on generated secrets.
pub const SECRET_PREFIX: &str = webhook_secret::PREFIX;

/// `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
///
/// **Secret decoding** ([`herald_core::webhook_secret`], the rule of the official libraries and
/// of the config loader): an optional `whsec_` prefix is removed and the rest is base64-decoded
/// (standard alphabet, padding optional); the decoded bytes are the HMAC key. A secret that is
/// not base64 is a configuration error, not silently used as raw bytes: a receiver using an
/// official library could never verify such signatures.
///
/// Secrets past their `not_after` do not sign (see the [module docs](super)).
pub struct StandardWebhooks {
    /// One keyed HMAC state per secret, in configuration order.
    keys: KeyRing<Hmac<Sha256>>,
}

impl StandardWebhooks {
    /// Decodes the secrets (see the type's docs).
    pub fn new(
        subscriber: &SubscriberId,
        secrets: &[SigningSecret],
    ) -> Result<Self, DeliveryError> {
        let keys = KeyRing::new(subscriber, secrets, |index, secret| {
            let subscriber = subscriber.to_string();
            let key = webhook_secret::decode(secret.secret.expose()).map_err(|e| match e {
                WebhookSecretError::Empty => {
                    DeliveryError::EmptySigningSecret { subscriber, index }
                }
                e => DeliveryError::InvalidSigningSecret {
                    subscriber,
                    index,
                    reason: e.to_string(),
                },
            })?;
            // HMAC accepts keys of any length, so this cannot fail.
            Hmac::<Sha256>::new_from_slice(&key)
                .map_err(|_| DeliveryError::Signing("HMAC key rejected"))
        })?;
        Ok(Self { keys })
    }

    /// The signature value for `input` (`v1,<sig>[ v1,<sig>…]`), from every secret valid at
    /// `input.timestamp`; an error when none is.
    pub fn signature(&self, input: &SignInput<'_>) -> Result<String, DeliveryError> {
        let ts = input.timestamp.to_string();
        let mut out = String::with_capacity(self.keys.len() * 48);
        self.keys.each_valid(input.timestamp, |key| {
            let mut mac = key.clone();
            mac.update(input.delivery_id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(input.body);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("v1,");
            STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
        })?;
        Ok(out)
    }
}

impl Signer for StandardWebhooks {
    fn sign(&self, input: &SignInput<'_>, headers: &mut HeaderMap) -> Result<(), DeliveryError> {
        let value = HeaderValue::try_from(self.signature(input)?)
            .map_err(|_| DeliveryError::Signing("signature is not a valid header value"))?;
        headers.insert(SIGNATURE_HEADER, value);
        Ok(())
    }
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> SubscriberId {
        SubscriberId::new("acme").expect("id")
    }

    /// The example from the Standard Webhooks specification.
    #[test]
    fn matches_the_specification_example() {
        let signer = StandardWebhooks::new(
            &sub(),
            &[SigningSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
        )
        .expect("valid secret");
        let input = SignInput {
            delivery_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1_614_265_330,
            attempt: 1,
            body: br#"{"test": 2432232314}"#,
        };
        assert_eq!(
            signer.signature(&input).expect("signed"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Same key without the prefix, and without padding.
        let bare = StandardWebhooks::new(
            &sub(),
            &[SigningSecret::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
        )
        .expect("valid secret");
        assert_eq!(
            bare.signature(&input).expect("signed"),
            signer.signature(&input).expect("signed")
        );
    }

    /// The specification's example again, with the secret given a `not_after`: it signs up to
    /// and including that second, then no more; with no valid secret left nothing is signed.
    #[test]
    fn an_expired_secret_stops_signing() {
        let not_after = herald_core::UnixMillis(1_614_265_330_000);
        let signer = StandardWebhooks::new(
            &sub(),
            &[
                SigningSecret::new("whsec_c2Vjb25kLWtleQ"),
                SigningSecret::until("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", not_after),
            ],
        )
        .expect("valid secrets");
        let at = |timestamp| SignInput {
            delivery_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp,
            attempt: 1,
            body: br#"{"test": 2432232314}"#,
        };
        let before = signer.signature(&at(1_614_265_330)).expect("signed");
        let parts: Vec<&str> = before.split(' ').collect();
        assert_eq!(parts.len(), 2, "{before}");
        assert_eq!(parts[1], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let after = signer.signature(&at(1_614_265_331)).expect("signed");
        let new_only = StandardWebhooks::new(&sub(), &[SigningSecret::new("whsec_c2Vjb25kLWtleQ")])
            .expect("valid secret");
        assert_eq!(
            after,
            new_only.signature(&at(1_614_265_331)).expect("signed")
        );

        let only_old = StandardWebhooks::new(
            &sub(),
            &[SigningSecret::until(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                not_after,
            )],
        )
        .expect("valid secret");
        let err = only_old
            .signature(&at(1_614_265_331))
            .expect_err("nothing valid");
        assert!(
            matches!(err, DeliveryError::SigningSecretsExpired { .. }),
            "{err}"
        );
        let mut headers = HeaderMap::new();
        assert!(only_old.sign(&at(1_614_265_331), &mut headers).is_err());
        assert!(headers.get(SIGNATURE_HEADER).is_none());
    }

    #[test]
    fn every_secret_signs_space_separated() {
        let signer = StandardWebhooks::new(
            &sub(),
            &[
                SigningSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                SigningSecret::new("whsec_c2Vjb25kLWtleQ"),
            ],
        )
        .expect("valid secrets");
        let input = SignInput {
            delivery_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1_614_265_330,
            attempt: 1,
            body: br#"{"test": 2432232314}"#,
        };
        let value = signer.signature(&input).expect("signed");
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(parts[1].starts_with("v1,") && parts[1] != parts[0]);
    }

    #[test]
    fn bad_secrets_are_refused_without_quoting_them() {
        let err = StandardWebhooks::new(&sub(), &[SigningSecret::new("whsec_not*base64!")])
            .expect_err("not base64");
        let text = err.to_string();
        assert!(text.contains("secret #1"), "{text}");
        assert!(
            !text.contains("not*base64") && !text.contains('*'),
            "{text}"
        );
        let err =
            StandardWebhooks::new(&sub(), &[SigningSecret::new("whsec_")]).expect_err("empty");
        assert!(matches!(
            err,
            DeliveryError::EmptySigningSecret { index: 1, .. }
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let signer = StandardWebhooks::new(
            &sub(),
            &[SigningSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
        )
        .expect("valid secret");
        assert_eq!(format!("{signer:?}"), "StandardWebhooks { secrets: 1 }");
    }
}
