//! The validated settings of one subscriber.
//!
//! `herald-config` parses `subscribers/*.toml` into these types; nothing downstream ever sees a
//! raw string duration or an unchecked limit. Secrets are [`Secret`]s, so deriving `Debug` here is
//! safe; the two types holding a [`Url`] print it as a [`DisplayUrl`] (no query, no user info).

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use url::Url;

use crate::{DisplayUrl, Secret, SubscriberId, UnixMillis};

/// The most requests a subscriber may have in flight at once (`max_in_flight` upper bound).
pub const MAX_IN_FLIGHT_LIMIT: u32 = 500;

/// Per-attempt timeout of a subscriber whose file sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `max_in_flight` of a subscriber whose file sets none.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 50;

/// Everything Herald knows about one subscriber.
#[derive(Clone, PartialEq)]
pub struct SubscriberConfig {
    /// The subscriber's id (default: the config file's stem).
    pub id: SubscriberId,
    /// The endpoint every delivery is POSTed to.
    pub url: Url,
    /// Which event types this subscriber receives.
    pub events: EventFilter,
    /// Limit for one attempt, connect to last body byte.
    pub timeout: Duration,
    /// Simultaneous requests, `1..=MAX_IN_FLIGHT_LIMIT`.
    pub max_in_flight: u32,
    /// Static headers added to every delivery (names validated at load).
    pub headers: Vec<(String, String)>,
    /// When to try again and when to give up.
    pub retry: RetryPolicy,
    /// How requests authenticate.
    pub auth: AuthConfig,
    /// How requests are signed, if at all.
    pub signing: Option<SigningConfig>,
    /// Error-rate throttling.
    pub throttle: ThrottleConfig,
    /// Optional requests-per-second cap.
    pub rate_limit: Option<RateLimitConfig>,
    /// Per-key ordering of this subscriber's deliveries (SPEC §9).
    pub ordering: OrderingMode,
}

/// `ordering = "per_key" | "none"` (SPEC §9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderingMode {
    /// Deliveries go in parallel, whatever their key (the default).
    #[default]
    None,
    /// Deliveries with the same `ordering_key` go one at a time, in acceptance order.
    PerKey,
}

impl OrderingMode {
    /// The config value (`none`, `per_key`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PerKey => "per_key",
        }
    }
}

impl fmt::Debug for SubscriberConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberConfig")
            .field("id", &self.id)
            .field("url", &DisplayUrl::new(&self.url))
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("headers", &self.headers)
            .field("retry", &self.retry)
            .field("auth", &self.auth)
            .field("signing", &self.signing)
            .field("throttle", &self.throttle)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl SubscriberConfig {
    /// The subscriber a file with only `id`, `url` and `events = ["*"]` describes: every event
    /// type, the default timeout, retry schedule and throttle, [`DEFAULT_MAX_IN_FLIGHT`], no
    /// headers, auth, signing or rate limit. Change fields with struct update syntax.
    pub fn new(id: SubscriberId, url: Url) -> Self {
        Self {
            id,
            url,
            events: EventFilter::All,
            timeout: DEFAULT_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            headers: Vec::new(),
            retry: RetryPolicy::default(),
            auth: AuthConfig::None,
            signing: None,
            throttle: ThrottleConfig::default(),
            rate_limit: None,
            ordering: OrderingMode::None,
        }
    }
}

/// Which event types a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `events = ["*"]`.
    All,
    /// An explicit list of event types.
    Only(Vec<String>),
}

impl EventFilter {
    /// Whether an event of this type goes to the subscriber.
    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.iter().any(|t| t == event_type),
        }
    }

    /// The configured list, `["*"]` for [`EventFilter::All`].
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::All => vec!["*".to_owned()],
            Self::Only(types) => types.clone(),
        }
    }
}

/// The exponential retry model: initial interval, multiplier, max interval, randomization,
/// bounded by a number of attempts and optionally by the event's age.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (≥ 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt.
    pub initial_interval: Duration,
    /// Growth factor per attempt (≥ 1.0).
    pub multiplier: f64,
    /// Upper bound of one delay.
    pub max_interval: Duration,
    /// Jitter share in `0.0..=1.0`: a delay `d` becomes uniform in `d·(1±r)`.
    pub randomization: f64,
    /// Give up once the event is this old.
    pub max_age: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_interval: Duration::from_secs(5),
            multiplier: 2.0,
            max_interval: Duration::from_secs(3600),
            randomization: 0.2,
            max_age: None,
        }
    }
}

/// Outbound authentication of a subscriber.
#[derive(Clone, PartialEq)]
pub enum AuthConfig {
    /// No auth header.
    None,
    /// `Authorization: Basic base64(user:pass)`; `credentials` is `user:pass`.
    Basic {
        /// `user:pass`.
        credentials: Secret,
    },
    /// A static header: `key` split on the first colon at load time.
    ApiKey {
        /// Header name (`Authorization` when the key had no colon).
        header: String,
        /// Header value.
        value: Secret,
    },
    /// OAuth2 client-credentials grant.
    OAuth2 {
        /// Token endpoint.
        token_url: Url,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Requested scopes (may be empty).
        scopes: Vec<String>,
    },
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { credentials } => f
                .debug_struct("Basic")
                .field("credentials", credentials)
                .finish(),
            Self::ApiKey { header, value } => f
                .debug_struct("ApiKey")
                .field("header", header)
                .field("value", value)
                .finish(),
            Self::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scopes,
            } => f
                .debug_struct("OAuth2")
                .field("token_url", &DisplayUrl::new(token_url))
                .field("client_id", client_id)
                .field("client_secret", client_secret)
                .field("scopes", scopes)
                .finish(),
        }
    }
}

/// Payload signing of a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningConfig {
    /// The scheme.
    pub scheme: SigningScheme,
    /// One or more secrets; during rotation every secret that has not expired signs and the
    /// signatures are space-separated, in this order.
    pub secrets: Vec<SigningSecret>,
}

/// One `[signing] secret` and the instant after which it stops signing, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecret {
    /// The secret.
    pub secret: Secret,
    /// `not_after`: the secret signs messages whose `webhook-timestamp` is at or before this
    /// instant (compared in whole seconds), and none after it. `None`: it never expires.
    pub not_after: Option<UnixMillis>,
}

impl SigningSecret {
    /// A secret that never expires.
    pub fn new(secret: impl Into<Box<str>>) -> Self {
        Self {
            secret: Secret::new(secret),
            not_after: None,
        }
    }

    /// A secret that stops signing after `not_after`.
    pub fn until(secret: impl Into<Box<str>>, not_after: UnixMillis) -> Self {
        Self {
            secret: Secret::new(secret),
            not_after: Some(not_after),
        }
    }

    /// Whether the secret has expired at `now` (strictly after its `not_after`).
    pub fn is_expired_at(&self, now: UnixMillis) -> bool {
        self.not_after.is_some_and(|limit| now > limit)
    }
}

/// A signing scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningScheme {
    /// Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key, id.ts.body)>`,
    /// key = base64-decoded secret after `whsec_`.
    StandardWebhooks,
    /// `{prefix}-signature: hex(SHA-256(secret ‖ body))` and the `{prefix}-*` headers.
    Sha256V1 {
        /// Header prefix, e.g. `unidy-webhook`.
        header_prefix: String,
    },
}

/// Error-rate throttling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleConfig {
    /// Failure share (0..=1) above which concurrency is cut.
    pub error_rate: f64,
    /// The window over which the failure share is measured.
    pub window: Duration,
    /// Fewer attempts than this in the window never trigger a cut.
    pub min_requests: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.5,
            window: Duration::from_secs(30),
            min_requests: 20,
        }
    }
}

/// Requests-per-second cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Requests allowed in a burst.
    pub burst: NonZeroU32,
}

/// Where deliveries may go (`[security]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecurityPolicy {
    /// Accept `http://` subscriber URLs.
    pub allow_http: bool,
    /// Allow targets that resolve to loopback, private, link-local or other special ranges.
    pub allow_private_networks: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn event_filter_matches() {
        assert!(EventFilter::All.matches("X"));
        let only = EventFilter::Only(vec!["A".into(), "B".into()]);
        assert!(only.matches("B"));
        assert!(!only.matches("C"));
        assert_eq!(EventFilter::All.to_vec(), vec!["*"]);
    }

    #[test]
    fn auth_debug_redacts() {
        let auth = AuthConfig::OAuth2 {
            token_url: Url::parse("https://idp.example/token").unwrap(),
            client_id: "client".into(),
            client_secret: Secret::new("s3cr3t-value"),
            scopes: vec![],
        };
        let printed = format!("{auth:?}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
    }

    #[test]
    fn signing_secret_expiry_is_inclusive_and_redacted() {
        let forever = SigningSecret::new("whsec_forever");
        assert!(!forever.is_expired_at(UnixMillis(u64::MAX)));
        let old = SigningSecret::until("whsec_old", UnixMillis(1_000));
        assert!(!old.is_expired_at(UnixMillis(999)));
        assert!(!old.is_expired_at(UnixMillis(1_000)));
        assert!(old.is_expired_at(UnixMillis(1_001)));
        let printed = format!("{old:?}");
        assert!(!printed.contains("whsec_old"), "{printed}");
    }

    #[test]
    fn debug_shows_urls_without_query_or_user_info() {
        let auth = AuthConfig::OAuth2 {
            token_url: Url::parse("https://idp.example/token?tenant_key=TOKMARK").unwrap(),
            client_id: "client".into(),
            client_secret: Secret::new("s3cr3t-value"),
            scopes: vec!["a".into()],
        };
        let config = SubscriberConfig {
            auth,
            ..SubscriberConfig::new(
                SubscriberId::new("acme").unwrap(),
                Url::parse("https://u:PASSMARK@hooks.example/in?token=URLMARK").unwrap(),
            )
        };
        let printed = format!("{config:?} {config:#?}");
        for secret in ["TOKMARK", "PASSMARK", "URLMARK", "s3cr3t-value"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(
            printed.contains("\"https://hooks.example/in\""),
            "{printed}"
        );
        assert!(
            printed.contains("\"https://idp.example/token\""),
            "{printed}"
        );
        assert!(printed.contains("client_id: \"client\""), "{printed}");
    }
}
