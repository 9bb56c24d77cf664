//! The Standard Webhooks scheme (<https://www.standardwebhooks.com/>).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

use herald_core::webhook_secret::{self, WebhookSecretError};
use herald_core::{Secret, SubscriberId};

use super::{SignInput, Signer};
use crate::DeliveryError;

/// The header carrying the signatures.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("webhook-signature");

/// The prefix the Standard Webhooks libraries put on generated secrets.
pub const SECRET_PREFIX: &str = webhook_secret::PREFIX;

/// `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
///
/// **Secret decoding** ([`herald_core::webhook_secret`], the rule of the official libraries and
/// of the config loader): an optional `whsec_` prefix is removed and the rest is base64-decoded
/// (standard alphabet, padding optional); the decoded bytes are the HMAC key. A secret that is not base64 is a configuration error, not silently
/// used as raw bytes: a receiver using an official library could never verify such signatures.
#[derive(Clone)]
pub struct StandardWebhooks {
    /// One keyed HMAC state per secret, in configuration order.
    keys: Vec<Hmac<Sha256>>,
}

impl StandardWebhooks {
    /// Decodes the secrets (see the type's docs).
    pub fn new(subscriber: &SubscriberId, secrets: &[Secret]) -> Result<Self, DeliveryError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let index = i + 1;
                let subscriber = subscriber.to_string();
                let key = webhook_secret::decode(secret.expose()).map_err(|e| match e {
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
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// The signature value for `input` (`v1,<sig>[ v1,<sig>…]`).
    pub fn signature(&self, input: &SignInput<'_>) -> String {
        let ts = input.timestamp.to_string();
        let mut out = String::with_capacity(self.keys.len() * 48);
        for (i, key) in self.keys.iter().enumerate() {
            let mut mac = key.clone();
            mac.update(input.delivery_id.as_bytes());
            mac.update(b".");
            mac.update(ts.as_bytes());
            mac.update(b".");
            mac.update(input.body);
            if i > 0 {
                out.push(' ');
            }
            out.push_str("v1,");
            STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
        }
        out
    }
}

impl Signer for StandardWebhooks {
    fn sign(&self, input: &SignInput<'_>, headers: &mut HeaderMap) -> Result<(), DeliveryError> {
        let value = HeaderValue::try_from(self.signature(input))
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
            &[Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
        )
        .expect("valid secret");
        let input = SignInput {
            delivery_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1_614_265_330,
            attempt: 1,
            body: br#"{"test": 2432232314}"#,
        };
        assert_eq!(
            signer.signature(&input),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // Same key without the prefix, and without padding.
        let bare =
            StandardWebhooks::new(&sub(), &[Secret::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")])
                .expect("valid secret");
        assert_eq!(bare.signature(&input), signer.signature(&input));
    }

    #[test]
    fn every_secret_signs_space_separated() {
        let signer = StandardWebhooks::new(
            &sub(),
            &[
                Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                Secret::new("whsec_c2Vjb25kLWtleQ"),
            ],
        )
        .expect("valid secrets");
        let input = SignInput {
            delivery_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
            timestamp: 1_614_265_330,
            attempt: 1,
            body: br#"{"test": 2432232314}"#,
        };
        let value = signer.signature(&input);
        let parts: Vec<&str> = value.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(parts[1].starts_with("v1,") && parts[1] != parts[0]);
    }

    #[test]
    fn bad_secrets_are_refused_without_quoting_them() {
        let err = StandardWebhooks::new(&sub(), &[Secret::new("whsec_not*base64!")])
            .expect_err("not base64");
        let text = err.to_string();
        assert!(text.contains("secret #1"), "{text}");
        assert!(
            !text.contains("not*base64") && !text.contains('*'),
            "{text}"
        );
        let err = StandardWebhooks::new(&sub(), &[Secret::new("whsec_")]).expect_err("empty");
        assert!(matches!(
            err,
            DeliveryError::EmptySigningSecret { index: 1, .. }
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let signer = StandardWebhooks::new(
            &sub(),
            &[Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")],
        )
        .expect("valid secret");
        assert_eq!(format!("{signer:?}"), "StandardWebhooks { secrets: 1 }");
    }
}
