//! `type = "oauth2"`: the client-credentials grant, with a shared, single-flight token cache.
//!
//! ## Token lifecycle
//!
//! - One cache per subscriber, shared by all its concurrent attempts.
//! - **Single flight**: at most one token request is in progress per subscriber. Attempts that
//!   need a token while one is being fetched wait for it (a `tokio::sync::Mutex` serialises the
//!   fetches, and a generation counter lets the waiters reuse the result, success *or* failure,
//!   instead of fetching again): 100 concurrent deliveries cause one token request.
//! - **Refresh margin**: a token is refreshed `min(30 s, 10 % of its lifetime)` before it
//!   expires. Inside that window the first attempt refreshes while the others keep using the
//!   still-valid token. Lifetimes count from when the token request was *sent*. A response
//!   without `expires_in` is treated as valid for an hour (or until a 401); a longer one than
//!   [`MAX_TOKEN_LIFETIME`] (a day) is cut to it, so an absurd `expires_in` (up to
//!   `u64::MAX` seconds) can neither overflow the clock nor pin a token forever. `expires_in`
//!   that is negative, fractional or not a number makes the response unparseable (an error).
//! - **401**: the endpoint drops the token the subscriber rejected (only if it is still the
//!   cached one, so a burst of 401s causes one refresh) and resends once with a fresh token.
//! - The token request has its own timeout (the subscriber's, capped at [`MAX_TOKEN_TIMEOUT`]),
//!   reads at most 64 KiB, goes through the same client (same SSRF guard) and is authenticated
//!   with HTTP Basic `client_id:client_secret` (RFC 6749 §2.3.1). A token endpoint that answers
//!   that without a token (a 400/401, or a response that does not parse) is asked once more
//!   within the same timeout with the credentials in the form body instead
//!   (`client_secret_post`, which some servers require); if that works, the subscriber keeps
//!   using it. Other statuses, connection errors and timeouts are not retried this way.
//! - A failure is reported as `oauth2 token request failed: <short reason>`; neither the secret
//!   nor any token ever appears in it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, USER_AGENT};
use http::HeaderValue;
use http_body_util::BodyExt;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use tokio::time::{timeout_at, Instant};
use url::Url;

use herald_core::{BoxFuture, Secret, SubscriberId};

use super::{sensitive, AuthHeader, AuthProvider};
use crate::client::{Body, Hyper};
use crate::guard::{self, Blocked};
use crate::outcome::{deadline_after, describe, human};
use crate::{endpoint, DeliveryError, HttpClient};

/// The longest a token request may take.
pub const MAX_TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Refresh this long before expiry at most…
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// …or this share of the lifetime, whichever is shorter (so short-lived tokens stay useful).
const REFRESH_SHARE: u32 = 10;
/// The longest lifetime a token is trusted for, whatever its `expires_in` says.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A failed refresh while the old token is still valid is retried after this long.
const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(1);
/// The largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// OAuth2 client-credentials auth: `Authorization: Bearer <token>`.
pub struct OAuth2ClientCredentials {
    /// Sends the client credentials as HTTP Basic.
    oauth: TokenClient,
    /// Sends them in the form body (`client_secret_post`).
    oauth_in_body: TokenClient,
    /// Whether the token endpoint refused Basic and took the credentials in the body.
    credentials_in_body: AtomicBool,
    scopes: Vec<Scope>,
    transport: TokenTransport,
    timeout: Duration,
    /// Set when the token URL is an IP literal the SSRF guard refuses.
    blocked: Option<Blocked>,
    client_id: String,
    token_host: String,
    cache: Mutex<Cache>,
    /// Held by the one task fetching a token.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    token: Option<CachedToken>,
    /// Bumped after every fetch, successful or not.
    generation: u64,
    /// The outcome of the latest fetch when it failed (reused by the attempts that waited for it).
    last_error: Option<String>,
}

#[derive(Clone)]
struct CachedToken {
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

impl CachedToken {
    /// A token fetched by a request sent at `sent_at`, valid for `lifetime` (already bounded by
    /// [`token_lifetime`]); the clock arithmetic is checked all the same.
    fn new(header: HeaderValue, sent_at: Instant, lifetime: Duration) -> Self {
        let margin = REFRESH_MARGIN.min(lifetime / REFRESH_SHARE);
        Self {
            header,
            refresh_at: deadline_after(sent_at, lifetime.saturating_sub(margin)),
            expires_at: deadline_after(sent_at, lifetime),
        }
    }
}

/// How long a token is used: its `expires_in`, an hour without one, at most a day.
fn token_lifetime(expires_in: Option<Duration>) -> Duration {
    expires_in
        .unwrap_or(DEFAULT_LIFETIME)
        .min(MAX_TOKEN_LIFETIME)
}

impl OAuth2ClientCredentials {
    /// Prepares the client; no request is made until the first attempt.
    pub fn new(
        subscriber: &SubscriberId,
        client: &HttpClient,
        token_url: &Url,
        client_id: &str,
        client_secret: &Secret,
        scopes: &[String],
        timeout: Duration,
    ) -> Result<Self, DeliveryError> {
        endpoint::check_scheme(subscriber, token_url, "auth.token_url", client.security())?;
        let blocked = if client.security().allow_private_networks {
            None
        } else {
            guard::check_literal(token_url)
        };
        let oauth = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
            .set_token_uri(TokenUrl::from_url(token_url.clone()));
        let oauth_in_body = oauth.clone().set_auth_type(AuthType::RequestBody);
        Ok(Self {
            oauth,
            oauth_in_body,
            credentials_in_body: AtomicBool::new(false),
            scopes: scopes.iter().cloned().map(Scope::new).collect(),
            transport: TokenTransport {
                http: client.pool(),
                timeout,
            },
            timeout,
            blocked,
            client_id: client_id.to_owned(),
            token_host: token_url.host_str().unwrap_or_default().to_owned(),
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bearer header value, from the cache or from one shared fetch.
    async fn bearer(&self) -> Result<HeaderValue, DeliveryError> {
        let (seen, lock) = {
            let now = Instant::now();
            let cache = self.cache();
            match &cache.token {
                Some(t) if now < t.refresh_at => return Ok(t.header.clone()),
                // In the refresh window: whoever gets the lock refreshes, the rest keep using
                // the still-valid token.
                Some(t) if now < t.expires_at => match self.fetching.try_lock() {
                    Ok(lock) => (cache.generation, Some(lock)),
                    Err(_) => return Ok(t.header.clone()),
                },
                _ => (cache.generation, None),
            }
        };
        let lock = match lock {
            Some(lock) => lock,
            None => self.fetching.lock().await,
        };
        self.fetch_locked(lock, seen).await
    }

    /// With the fetch lock held: reuse what another task fetched since `seen`, or fetch.
    async fn fetch_locked(
        &self,
        _lock: tokio::sync::MutexGuard<'_, ()>,
        seen: u64,
    ) -> Result<HeaderValue, DeliveryError> {
        {
            let now = Instant::now();
            let cache = self.cache();
            if let Some(t) = &cache.token {
                if now < t.refresh_at {
                    return Ok(t.header.clone());
                }
            }
            if cache.generation != seen {
                if let Some(err) = &cache.last_error {
                    return Err(DeliveryError::TokenRequest(err.clone()));
                }
                if let Some(t) = cache.token.as_ref().filter(|t| now < t.expires_at) {
                    return Ok(t.header.clone());
                }
            }
        }
        let fetched = self.fetch().await;
        let mut cache = self.cache();
        cache.generation = cache.generation.wrapping_add(1);
        match fetched {
            Ok(token) => {
                let header = token.header.clone();
                cache.token = Some(token);
                cache.last_error = None;
                Ok(header)
            }
            Err(reason) => {
                tracing::warn!(client_id = %self.client_id, token_host = %self.token_host,
                    error = %reason, "oauth2 token request failed");
                let now = Instant::now();
                // Keep a still-valid token, but do not retry the refresh on every attempt.
                if let Some(t) = cache.token.as_mut().filter(|t| now < t.expires_at) {
                    t.refresh_at = deadline_after(now, RETRY_REFRESH_AFTER).min(t.expires_at);
                    let header = t.header.clone();
                    cache.last_error = None;
                    return Ok(header);
                }
                cache.token = None;
                cache.last_error = Some(reason.clone());
                Err(DeliveryError::TokenRequest(reason))
            }
        }
    }

    /// One token request, with the credentials as HTTP Basic or in the form body.
    async fn request_token(
        &self,
        in_body: bool,
        deadline: Instant,
    ) -> Result<BasicTokenResponse, TokenFailure> {
        let client = if in_body {
            &self.oauth_in_body
        } else {
            &self.oauth
        };
        let request = client
            .exchange_client_credentials()
            .add_scopes(self.scopes.iter().cloned());
        match timeout_at(deadline, request.request_async(&self.transport)).await {
            Err(_) => Err(TokenFailure::Other(format!(
                "timeout after {}",
                human(self.timeout)
            ))),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err @ RequestTokenError::Request(_))) => {
                Err(TokenFailure::Other(describe_token_error(err)))
            }
            Ok(Err(err)) => Err(TokenFailure::Refused(describe_token_error(err))),
        }
    }

    /// One token fetch: a request with the credentials the endpoint is known to take, and, if
    /// HTTP Basic was refused, one more with them in the body, both within `self.timeout`. The
    /// error is the short reason (without the "oauth2 …" prefix).
    async fn fetch(&self) -> Result<CachedToken, String> {
        if let Some(blocked) = &self.blocked {
            return Err(blocked.to_string());
        }
        let sent_at = Instant::now();
        let deadline = deadline_after(sent_at, self.timeout);
        let in_body = self.credentials_in_body.load(Ordering::Relaxed);
        let response = match self.request_token(in_body, deadline).await {
            Ok(response) => response,
            // A 400/401 to HTTP Basic: some endpoints only take client_secret_post.
            Err(TokenFailure::Refused(reason)) if !in_body => {
                match self.request_token(true, deadline).await {
                    Ok(response) => {
                        self.credentials_in_body.store(true, Ordering::Relaxed);
                        tracing::info!(client_id = %self.client_id, token_host = %self.token_host,
                            "the token endpoint refused HTTP Basic client credentials and took them in the request body; using that from now on");
                        response
                    }
                    // Report the answer to the standard method.
                    Err(_) => return Err(reason),
                }
            }
            Err(TokenFailure::Refused(reason) | TokenFailure::Other(reason)) => return Err(reason),
        };
        let value = HeaderValue::try_from(format!("Bearer {}", response.access_token().secret()))
            .map_err(|_| "the access token is not a valid header value".to_owned())?;
        let lifetime = token_lifetime(response.expires_in());
        tracing::debug!(client_id = %self.client_id, lifetime_s = lifetime.as_secs(),
            "oauth2 token fetched");
        Ok(CachedToken::new(sensitive(value), sent_at, lifetime))
    }
}

/// Why a token request failed: `Refused` when the endpoint answered without a token (a 400/401
/// error document, or a response that does not parse), `Other` for connection errors, other
/// statuses and timeouts.
enum TokenFailure {
    Refused(String),
    Other(String),
}

impl AuthProvider for OAuth2ClientCredentials {
    fn header(&self) -> BoxFuture<'_, Result<Option<AuthHeader>, DeliveryError>> {
        Box::pin(async move {
            let value = self.bearer().await?;
            Ok(Some(AuthHeader {
                name: AUTHORIZATION,
                value,
            }))
        })
    }

    fn on_unauthorized(&self, rejected: &AuthHeader) -> bool {
        let mut cache = self.cache();
        if cache
            .token
            .as_ref()
            .is_some_and(|t| t.header == rejected.value)
        {
            cache.token = None;
        }
        true
    }

    fn can_refresh(&self) -> bool {
        true
    }
}

impl fmt::Debug for OAuth2ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2ClientCredentials")
            .field("token_host", &self.token_host)
            .field("client_id", &self.client_id)
            .field("client_secret", &"**REDACTED**")
            .field("scopes", &self.scopes.len())
            .finish_non_exhaustive()
    }
}

/// The oauth2 crate's HTTP transport, over the shared client.
struct TokenTransport {
    http: Hyper,
    timeout: Duration,
}

impl<'c> AsyncHttpClient<'c> for TokenTransport {
    type Error = TokenTransportError;
    type Future = BoxFuture<'c, Result<HttpResponse, TokenTransportError>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

impl TokenTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TokenTransportError> {
        let deadline = deadline_after(Instant::now(), self.timeout);
        let timed_out = || TokenTransportError(format!("timeout after {}", human(self.timeout)));
        let (mut parts, body) = request.into_parts();
        parts.headers.insert(
            USER_AGENT,
            HeaderValue::from_static(herald_core::USER_AGENT),
        );
        let request = http::Request::from_parts(parts, Body::new(Bytes::from(body)));
        let response = timeout_at(deadline, self.http.request(request))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| TokenTransportError(describe(&e)))?;
        let (parts, mut body) = response.into_parts();
        // 200 is a token, 400/401 a standard error document; anything else is reported as is.
        if !matches!(parts.status.as_u16(), 200 | 400 | 401) {
            return Err(TokenTransportError(format!(
                "token endpoint answered HTTP {}",
                parts.status.as_u16()
            )));
        }
        let mut collected = Vec::new();
        loop {
            let frame = timeout_at(deadline, body.frame())
                .await
                .map_err(|_| timed_out())?;
            let Some(frame) = frame else { break };
            let frame = frame
                .map_err(|e| TokenTransportError(format!("reading the token response: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if collected.len() + data.len() > MAX_TOKEN_RESPONSE {
                    return Err(TokenTransportError(
                        "token response larger than 64 KiB".to_owned(),
                    ));
                }
                collected.extend_from_slice(data);
            }
        }
        Ok(http::Response::from_parts(parts, collected))
    }
}

/// The transport error handed to the oauth2 crate: already a short, safe text.
#[derive(Debug)]
struct TokenTransportError(String);

impl fmt::Display for TokenTransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenTransportError {}

/// A short reason for a failed token request. Response bodies are never quoted (a half-parsed
/// body could hold a token).
fn describe_token_error(err: RequestTokenError<TokenTransportError, BasicErrorResponse>) -> String {
    match err {
        RequestTokenError::ServerResponse(e) => {
            format!("token endpoint refused: {}", e.error())
        }
        RequestTokenError::Request(e) => e.0,
        RequestTokenError::Parse(_, _) => "unparseable token response".to_owned(),
        RequestTokenError::Other(text) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_30s_or_a_tenth_of_the_lifetime() {
        let margin = |secs: u64| REFRESH_MARGIN.min(Duration::from_secs(secs) / REFRESH_SHARE);
        assert_eq!(margin(3600), Duration::from_secs(30));
        assert_eq!(margin(100), Duration::from_secs(10));
        assert_eq!(margin(1), Duration::from_millis(100));
        assert_eq!(margin(0), Duration::ZERO);
    }

    #[test]
    fn absurd_lifetimes_are_bounded_and_never_overflow_the_clock() {
        assert_eq!(token_lifetime(None), DEFAULT_LIFETIME);
        assert_eq!(
            token_lifetime(Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
        assert_eq!(
            token_lifetime(Some(Duration::from_secs(u64::MAX))),
            MAX_TOKEN_LIFETIME
        );
        let header = HeaderValue::from_static("Bearer t");
        let now = Instant::now();
        // Unbounded lifetimes are bounded by `fetch`; `new` survives them anyway.
        let t = CachedToken::new(header.clone(), now, Duration::MAX);
        assert!(t.refresh_at > now && t.expires_at >= t.refresh_at);
        let t = CachedToken::new(header.clone(), now, MAX_TOKEN_LIFETIME);
        assert_eq!(t.expires_at, now + MAX_TOKEN_LIFETIME);
        assert_eq!(t.refresh_at, now + MAX_TOKEN_LIFETIME - REFRESH_MARGIN);
        let t = CachedToken::new(header, now, Duration::ZERO);
        assert_eq!((t.refresh_at, t.expires_at), (now, now));
    }
}
