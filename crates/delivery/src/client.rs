//! [`HttpClient`]: the one reqwest client every subscriber shares.

use std::fmt;
use std::time::Duration;

use herald_core::{SecurityPolicy, USER_AGENT};

use crate::guard::GuardedResolver;
use crate::DeliveryError;

/// Idle keep-alive connections kept per host: enough for a subscriber at the
/// `max_in_flight` ceiling (500) to reuse every connection it opened.
pub const MAX_IDLE_PER_HOST: usize = 512;

/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP client shared by all subscribers.
///
/// It wraps a single `reqwest::Client` (cloning is cheap: the pool is shared), configured for
/// webhook delivery:
///
/// - keep-alive pooling, up to [`MAX_IDLE_PER_HOST`] idle connections per host;
/// - HTTP/1.1 and HTTP/2 (negotiated by ALPN) over rustls;
/// - redirects are never followed (a 3xx is a failed attempt), reqwest's own retries are off,
///   and no proxy is used (a proxy would resolve names itself, past the SSRF guard);
/// - unless `allow_private_networks`, every name is resolved through the SSRF guard
///   (see [`guard`](crate::guard)).
///
/// Timeouts are per request (each [`Endpoint`](crate::Endpoint) applies its subscriber's), so the
/// client itself has none.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    security: SecurityPolicy,
}

impl HttpClient {
    /// Builds the shared client for the given `[security]` policy.
    pub fn new(security: SecurityPolicy) -> Result<Self, DeliveryError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .referer(false)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(30))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(10))
            .http2_adaptive_window(true);
        if !security.allow_private_networks {
            builder = builder.dns_resolver(GuardedResolver);
        }
        let inner = builder.build().map_err(DeliveryError::Client)?;
        Ok(Self { inner, security })
    }

    /// The policy this client was built with.
    pub fn security(&self) -> SecurityPolicy {
        self.security
    }

    pub(crate) fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}
