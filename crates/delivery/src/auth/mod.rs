//! Outbound authentication: the [`AuthProvider`] seam and its four implementations, one per
//! `[auth] type`:
//!
//! | `type`    | provider                   | header                                   |
//! |-----------|----------------------------|------------------------------------------|
//! | `none`    | [`NoAuth`]                 | none                                     |
//! | `basic`   | [`BasicAuth`]              | `Authorization: Basic base64(user:pass)` |
//! | `api_key` | [`ApiKeyAuth`]             | the configured header, value as is       |
//! | `oauth2`  | [`OAuth2ClientCredentials`]| `Authorization: Bearer <token>`          |
//!
//! Header values built from secrets are marked sensitive (`HeaderValue::set_sensitive`), and no
//! provider's `Debug` prints a credential.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use herald_core::{AuthConfig, BoxFuture, SubscriberId};

use crate::{DeliveryError, HttpClient};

mod api_key;
mod basic;
mod none;
mod oauth2;

pub use self::oauth2::{OAuth2ClientCredentials, MAX_TOKEN_LIFETIME, MAX_TOKEN_TIMEOUT};
pub use api_key::ApiKeyAuth;
pub use basic::BasicAuth;
pub use none::NoAuth;

/// One authentication header.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// Header name.
    pub name: HeaderName,
    /// Header value (sensitive).
    pub value: HeaderValue,
}

impl fmt::Debug for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthHeader")
            .field("name", &self.name)
            .field("value", &"**REDACTED**")
            .finish()
    }
}

/// How one subscriber's requests authenticate.
pub trait AuthProvider: Send + Sync + fmt::Debug {
    /// The header to send with the next request (`None`: no auth header). May do I/O (fetching
    /// an OAuth2 token); an error fails the attempt with the error's text.
    fn header(&self) -> BoxFuture<'_, Result<Option<AuthHeader>, DeliveryError>>;

    /// The subscriber answered 401 to a request that carried `rejected`. Returns whether the
    /// request should be sent once more with a fresh [`header`](Self::header) (OAuth2 drops the
    /// rejected token and says yes; static credentials say no).
    fn on_unauthorized(&self, rejected: &AuthHeader) -> bool {
        let _ = rejected;
        false
    }

    /// Whether [`on_unauthorized`](Self::on_unauthorized) can ever say yes. The endpoint keeps a
    /// copy of the request headers for a resend only when it can.
    fn can_refresh(&self) -> bool {
        false
    }
}

/// The provider for a subscriber's `[auth]` section. `timeout` is the subscriber's request
/// timeout; the OAuth2 token request uses it too, capped at [`MAX_TOKEN_TIMEOUT`].
pub fn build(
    subscriber: &SubscriberId,
    cfg: &AuthConfig,
    client: &HttpClient,
    timeout: Duration,
) -> Result<Arc<dyn AuthProvider>, DeliveryError> {
    Ok(match cfg {
        AuthConfig::None => Arc::new(NoAuth),
        AuthConfig::Basic { credentials } => Arc::new(BasicAuth::new(credentials)),
        AuthConfig::ApiKey { header, value } => {
            Arc::new(ApiKeyAuth::new(subscriber, header, value)?)
        }
        AuthConfig::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scopes,
        } => Arc::new(OAuth2ClientCredentials::new(
            subscriber,
            client,
            token_url,
            client_id,
            client_secret,
            scopes,
            timeout.min(MAX_TOKEN_TIMEOUT),
        )?),
    })
}

/// A header value that must never be logged or shown.
fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// The boxed, already-complete future static providers return.
fn ready(
    header: Option<AuthHeader>,
) -> BoxFuture<'static, Result<Option<AuthHeader>, DeliveryError>> {
    Box::pin(std::future::ready(Ok(header)))
}
