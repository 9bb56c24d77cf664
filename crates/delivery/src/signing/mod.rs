//! Payload signing: the [`Signer`] seam and its two schemes.
//!
//! - [`StandardWebhooks`] (`scheme = "standard-webhooks"`): `webhook-signature: v1,<base64
//!   HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, verifiable with the official Standard
//!   Webhooks libraries.
//! - [`Sha256V1`] (`scheme = "sha256-v1"`, Unidy-compatible): `{prefix}-signature:
//!   hex(SHA-256(secret ‖ body))` plus `{prefix}-version`, `{prefix}-delivery-id` and
//!   `{prefix}-delivery-attempt`.
//!
//! During key rotation a subscriber has several secrets: every secret signs, and the signatures
//! go into the one header, space-separated, in configuration order.
//!
//! Keys are derived once, when the [`Endpoint`](crate::Endpoint) is built; signing an attempt
//! only clones a prepared hash state and feeds it the message.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;

use herald_core::{SigningConfig, SigningScheme, SubscriberId};

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
    if cfg.secrets.is_empty() {
        return Err(DeliveryError::NoSigningSecret {
            subscriber: subscriber.to_string(),
        });
    }
    Ok(match &cfg.scheme {
        SigningScheme::StandardWebhooks => {
            Arc::new(StandardWebhooks::new(subscriber, &cfg.secrets)?)
        }
        SigningScheme::Sha256V1 { header_prefix } => {
            Arc::new(Sha256V1::new(subscriber, header_prefix, &cfg.secrets)?)
        }
    })
}
