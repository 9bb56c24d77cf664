//! [`DeliveryError`]: everything that can go wrong while *building* delivery machinery, plus the
//! causes an attempt reports as text.

use std::error::Error as StdError;

/// The error type of `herald-delivery`.
///
/// Setup problems (a refused URL, a bad header, an undecodable signing secret) come out of
/// [`HttpClient::new`](crate::HttpClient::new) and [`Endpoint::new`](crate::Endpoint::new). A
/// failed *attempt* is not an error: it is an [`AttemptResult`](crate::AttemptResult) with
/// [`Verdict::Failure`](crate::Verdict::Failure) and a short text.
///
/// No variant ever carries a secret: header values, credentials and signing keys are named by
/// position or header name only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// An `http://` URL while `[security] allow_http` is false.
    #[error(
        "subscriber {subscriber}: {what} uses http://, which is refused; \
         set [security] allow_http = true to allow it"
    )]
    HttpNotAllowed {
        /// The subscriber.
        subscriber: String,
        /// Which URL (`url` or `auth.token_url`).
        what: &'static str,
    },

    /// A URL whose scheme is neither `https` nor `http`.
    #[error("subscriber {subscriber}: {what} has unsupported scheme {scheme:?} (use https)")]
    UnsupportedScheme {
        /// The subscriber.
        subscriber: String,
        /// Which URL.
        what: &'static str,
        /// The scheme found.
        scheme: String,
    },

    /// A URL without a host.
    #[error("subscriber {subscriber}: {what} has no host")]
    MissingHost {
        /// The subscriber.
        subscriber: String,
        /// Which URL.
        what: &'static str,
    },

    /// A static, auth or signing header whose name or value is not valid HTTP.
    #[error("subscriber {subscriber}: header {name:?} is not a valid HTTP header ({part})")]
    InvalidHeader {
        /// The subscriber.
        subscriber: String,
        /// The header name as configured (never the value).
        name: String,
        /// `name` or `value`.
        part: &'static str,
        /// The parser's complaint (it never quotes the value).
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A `standard-webhooks` secret that is not base64 after the optional `whsec_` prefix.
    ///
    /// `reason` names the position of the problem, never the offending character, so no part of
    /// the secret leaks (this is why the base64 error is not kept as `#[source]`).
    #[error(
        "subscriber {subscriber}: signing secret #{index} is not valid base64 after the optional \
         \"whsec_\" prefix ({reason})"
    )]
    InvalidSigningSecret {
        /// The subscriber.
        subscriber: String,
        /// 1-based position in `[signing] secret`.
        index: usize,
        /// What is wrong, without quoting the secret.
        reason: String,
    },

    /// An empty signing secret (or an empty key after decoding).
    #[error("subscriber {subscriber}: signing secret #{index} is empty")]
    EmptySigningSecret {
        /// The subscriber.
        subscriber: String,
        /// 1-based position in `[signing] secret`.
        index: usize,
    },

    /// `[signing]` with no secret at all.
    #[error("subscriber {subscriber}: [signing] needs at least one secret")]
    NoSigningSecret {
        /// The subscriber.
        subscriber: String,
    },

    /// Every signing secret of the subscriber is past its `not_after`: the attempt is not sent,
    /// because an unsigned or expired-key delivery is what the rotation was meant to stop.
    #[error(
        "subscriber {subscriber}: every signing secret is past its not_after, so nothing is sent; \
         add a new secret to [signing] and reload"
    )]
    SigningSecretsExpired {
        /// The subscriber.
        subscriber: String,
    },

    /// The shared HTTP client could not be built (TLS backend initialisation).
    #[error("could not build the HTTP client: {0}")]
    Client(String),

    /// A subscriber URL that the HTTP stack cannot use as a request target.
    #[error("subscriber {subscriber}: {what} is not a usable request URL")]
    InvalidUrl {
        /// The subscriber.
        subscriber: String,
        /// Which setting: `url` or `auth.token_url`.
        what: &'static str,
    },

    /// The OAuth2 token endpoint did not hand out a usable token. The text is short and safe to
    /// store: it never contains the client secret or a token.
    #[error("oauth2 token request failed: {0}")]
    TokenRequest(String),

    /// A signature header could not be encoded (should be impossible: signatures are ASCII).
    #[error("signing failed: {0}")]
    Signing(&'static str),
}
