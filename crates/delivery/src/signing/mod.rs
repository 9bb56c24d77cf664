//! Payload signing: the [`Signer`] seam and its two schemes.
//!
//! - [`StandardWebhooks`] (`scheme = "standard-webhooks"`): `webhook-signature: v1,<base64
//!   HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, verifiable with the official Standard
//!   Webhooks libraries.
//! - [`Sha256V1`] (`scheme = "sha256-v1"`, Unidy-compatible): `{prefix}-signature:
//!   hex(SHA-256(secret ‖ body))` plus `{prefix}-version`, `{prefix}-delivery-id` and
//!   `{prefix}-delivery-attempt`.
//!
//! During key rotation a subscriber has several secrets: every secret that has not expired
//! signs, and the signatures go into the one header, space-separated, in configuration order.
//!
//! **Expiry** (`not_after`): a secret signs an attempt whose `webhook-timestamp` (unix seconds)
//! is at or before its `not_after` (in whole seconds), and no attempt after it. The check is one
//! integer comparison per secret at signing time, so a secret stops signing on time without a
//! reload. The first attempt that finds a secret expired logs it once (`warn`). When every
//! secret has expired the attempt is **not sent** — neither unsigned nor signed with an expired
//! key — and fails with [`DeliveryError::SigningSecretsExpired`] (logged once at `error`), so the
//! delivery is retried per `[retry]` and goes out as soon as a reload brings a valid secret.
//! (The config loader refuses a file whose secrets have all expired already.)
//!
//! Keys are derived once, when the [`Endpoint`](crate::Endpoint) is built; signing an attempt
//! only clones a prepared hash state and feeds it the message.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::HeaderMap;

use herald_core::{SigningConfig, SigningScheme, SigningSecret, SubscriberId};

use crate::DeliveryError;

mod sha256_v1;
mod standard_webhooks;

pub use sha256_v1::Sha256V1;
pub use standard_webhooks::{StandardWebhooks, SECRET_PREFIX, SIGNATURE_HEADER};

/// What a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    /// The delivery id as sent in `webhook-id`.
    pub delivery_id: &'a str,
    /// Unix seconds, as sent in `webhook-timestamp`.
    pub timestamp: u64,
    /// The attempt number, as sent in `webhook-attempt`.
    pub attempt: u32,
    /// The exact bytes of the request body.
    pub body: &'a [u8],
}

/// A signing scheme: adds its headers for one attempt.
///
/// `Debug` must not print key material.
pub trait Signer: Send + Sync + fmt::Debug {
    /// Inserts the signature header(s) for `input` into `headers`.
    fn sign(&self, input: &SignInput<'_>, headers: &mut HeaderMap) -> Result<(), DeliveryError>;
}

/// The signer for a subscriber's `[signing]` section.
pub fn build(
    subscriber: &SubscriberId,
    cfg: &SigningConfig,
) -> Result<Arc<dyn Signer>, DeliveryError> {
    Ok(match &cfg.scheme {
        SigningScheme::StandardWebhooks => {
            Arc::new(StandardWebhooks::new(subscriber, &cfg.secrets)?)
        }
        SigningScheme::Sha256V1 { header_prefix } => {
            Arc::new(Sha256V1::new(subscriber, header_prefix, &cfg.secrets)?)
        }
    })
}

/// Prepared keys of one subscriber with their expiry: what both schemes share.
pub(crate) struct KeyRing<K> {
    subscriber: SubscriberId,
    keys: Vec<RingKey<K>>,
    /// Set once "every secret has expired" has been logged.
    all_expired_logged: AtomicBool,
}

struct RingKey<K> {
    key: K,
    /// `not_after` in whole unix seconds; `u64::MAX` for a secret without one.
    not_after_secs: u64,
    /// Set once this key's expiry has been logged.
    expiry_logged: AtomicBool,
}

impl<K> KeyRing<K> {
    /// Prepares each secret with `prepare(index from 1, secret)`.
    pub(crate) fn new(
        subscriber: &SubscriberId,
        secrets: &[SigningSecret],
        mut prepare: impl FnMut(usize, &SigningSecret) -> Result<K, DeliveryError>,
    ) -> Result<Self, DeliveryError> {
        if secrets.is_empty() {
            return Err(DeliveryError::NoSigningSecret {
                subscriber: subscriber.to_string(),
            });
        }
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                Ok(RingKey {
                    key: prepare(i + 1, secret)?,
                    not_after_secs: secret.not_after.map_or(u64::MAX, |t| t.as_secs()),
                    expiry_logged: AtomicBool::new(false),
                })
            })
            .collect::<Result<Vec<_>, DeliveryError>>()?;
        Ok(Self {
            subscriber: subscriber.clone(),
            keys,
            all_expired_logged: AtomicBool::new(false),
        })
    }

    /// How many secrets are configured (expired ones included).
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Calls `sign` with each key that is valid at `timestamp` (unix seconds), in configuration
    /// order; an error when none is.
    pub(crate) fn each_valid(
        &self,
        timestamp: u64,
        mut sign: impl FnMut(&K),
    ) -> Result<(), DeliveryError> {
        let mut signed = false;
        for (i, ring_key) in self.keys.iter().enumerate() {
            if timestamp <= ring_key.not_after_secs {
                sign(&ring_key.key);
                signed = true;
            } else if !ring_key.expiry_logged.load(Ordering::Relaxed)
                && !ring_key.expiry_logged.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    subscriber = %self.subscriber,
                    secret = i + 1,
                    "signing secret #{} is past its not_after and no longer signs",
                    i + 1
                );
            }
        }
        if signed {
            return Ok(());
        }
        if !self.all_expired_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                subscriber = %self.subscriber,
                "every signing secret is past its not_after: deliveries are not sent until a \
                 new secret is configured and reloaded"
            );
        }
        Err(DeliveryError::SigningSecretsExpired {
            subscriber: self.subscriber.to_string(),
        })
    }
}
