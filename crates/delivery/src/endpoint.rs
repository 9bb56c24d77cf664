//! [`Endpoint`]: one subscriber's delivery target, and [`Endpoint::attempt`], one attempt.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::time::{timeout_at, Instant};
use url::Url;

use herald_core::{DeliveryId, SecurityPolicy, SubscriberConfig, SubscriberId, UnixMillis};

use crate::auth::{self, AuthHeader, AuthProvider, MAX_TOKEN_TIMEOUT};
use crate::client::{Body, Hyper};
use crate::guard::{self, Blocked};
use crate::outcome::{self, describe, human, Verdict};
use crate::signing::{self, SignInput, Signer};
use crate::{DeliveryError, HttpClient};

/// `webhook-id`: the delivery id, the same on every retry.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`: unix seconds of this attempt.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-attempt`: 1, 2, 3, …
pub const WEBHOOK_ATTEMPT: HeaderName = HeaderName::from_static("webhook-attempt");

/// `traceparent`: W3C Trace Context of the attempt.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What to deliver in one attempt.
#[derive(Debug, Clone)]
pub struct AttemptRequest {
    /// The delivery (sent as `webhook-id`).
    pub delivery_id: DeliveryId,
    /// The number of this attempt, 1 for the first (sent as `webhook-attempt`).
    pub attempt: u32,
    /// The stored payload, sent byte for byte and never copied.
    pub payload: Bytes,
    /// The W3C `traceparent` of this attempt (the event's trace, this attempt's span), sent
    /// as `traceparent` when set.
    pub traceparent: Option<String>,
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// Success, failure or gone.
    pub verdict: Verdict,
    /// The final response's status, if one arrived.
    pub status_code: Option<u16>,
    /// A short text for anything but success: `HTTP 500`, `timeout after 10s`,
    /// `connection refused`, `redirect (302) not followed`,
    /// `blocked: 127.0.0.1 is a loopback address`, `oauth2 token request failed: …`.
    pub error: Option<String>,
    /// When the attempt started (its `webhook-timestamp` is this, in seconds).
    pub started_at: UnixMillis,
    /// How long it took, token fetch and one 401 resend included.
    pub duration: Duration,
    /// The receiver's `Retry-After` on a 429 or 503 (capped at 24 h): the least delay before the
    /// next attempt.
    pub retry_after: Option<Duration>,
}

/// One subscriber as a delivery target.
///
/// Built once per config (re)load with [`Endpoint::new`], which validates everything that can be
/// checked up front (URL scheme, header names and values, signing secrets) and precomputes what
/// every attempt shares (the static headers, the signing keys, the auth header or token cache).
/// Share it with `Arc`; [`Endpoint::attempt`] takes `&self` and runs concurrently.
pub struct Endpoint {
    subscriber: SubscriberId,
    url: Url,
    /// `url` as the request target, converted once.
    uri: Uri,
    timeout: Duration,
    client: Hyper,
    /// `content-type`, `user-agent` and the subscriber's static headers.
    static_headers: HeaderMap,
    auth: Arc<dyn AuthProvider>,
    signer: Option<Arc<dyn Signer>>,
    /// Set when the URL's host is an IP literal the SSRF guard refuses.
    blocked: Option<Blocked>,
    /// Whether the auth provider can fix a 401 (OAuth2): then a 401 is resent once.
    refreshable: bool,
}

impl Endpoint {
    /// Prepares a subscriber's endpoint.
    ///
    /// Fails when the URL is `http://` and `allow_http` is off, the scheme is not http(s), a
    /// static header is not valid HTTP, or a signing secret cannot be decoded. An IP-literal URL
    /// in a refused range is *not* an error here: each attempt fails with
    /// `blocked: … is a … address`, so the reason shows up in the delivery's history.
    pub fn new(cfg: &SubscriberConfig, client: &HttpClient) -> Result<Self, DeliveryError> {
        let security = client.security();
        check_scheme(&cfg.id, &cfg.url, "url", security)?;
        let uri = request_uri(&cfg.id, &cfg.url, "url")?;
        let blocked = if security.allow_private_networks {
            None
        } else {
            guard::check_literal(&cfg.url)
        };

        let mut static_headers = HeaderMap::with_capacity(cfg.headers.len() + 2);
        for (name, value) in &cfg.headers {
            let invalid = |part, source: Box<dyn std::error::Error + Send + Sync>| {
                DeliveryError::InvalidHeader {
                    subscriber: cfg.id.to_string(),
                    name: name.clone(),
                    part,
                    source,
                }
            };
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid("name", Box::new(e)))?;
            let header_value =
                HeaderValue::from_str(value).map_err(|e| invalid("value", Box::new(e)))?;
            static_headers.append(header_name, header_value);
        }
        // Protocol headers win over static ones of the same name.
        static_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        static_headers.insert(
            USER_AGENT,
            HeaderValue::from_static(herald_core::USER_AGENT),
        );

        let auth = auth::build(&cfg.id, &cfg.auth, client, cfg.timeout)?;
        let refreshable = auth.can_refresh();
        let signer = match &cfg.signing {
            Some(signing) => Some(signing::build(&cfg.id, signing)?),
            None => None,
        };
        Ok(Self {
            subscriber: cfg.id.clone(),
            url: cfg.url.clone(),
            uri,
            timeout: cfg.timeout,
            client: client.pool(),
            static_headers,
            auth,
            signer,
            blocked,
            refreshable,
        })
    }

    /// The subscriber this endpoint delivers to.
    pub fn subscriber(&self) -> &SubscriberId {
        &self.subscriber
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The longest [`Endpoint::attempt`] can take: two token fetches and two requests for
    /// OAuth2 (the 401 resend), one request otherwise, plus a second of slack. Leases must
    /// outlast this.
    pub fn max_attempt_duration(&self) -> Duration {
        let one = if self.refreshable {
            self.timeout
                .min(MAX_TOKEN_TIMEOUT)
                .saturating_add(self.timeout)
        } else {
            self.timeout
        };
        let rounds = if self.refreshable { 2 } else { 1 };
        one.saturating_mul(rounds)
            .saturating_add(Duration::from_secs(1))
    }

    /// Delivers the payload once. Never panics and never returns an error: every problem is a
    /// [`Verdict::Failure`] with a short text.
    ///
    /// The stages, in order:
    /// 1. SSRF check of an IP-literal host (names are checked by the client's resolver);
    /// 2. headers: static ones, then `webhook-id`, `webhook-timestamp`, `webhook-attempt`;
    /// 3. signature headers;
    /// 4. the auth header (may fetch an OAuth2 token);
    /// 5. `POST` with the subscriber's timeout (connect to last body byte);
    /// 6. on a 401 that the auth provider can fix (OAuth2): stages 4–5 once more;
    /// 7. verdict from the status; `Retry-After` on 429/503; at most 4 KiB of the body read.
    pub async fn attempt(&self, request: AttemptRequest) -> AttemptResult {
        let started_at = UnixMillis::now();
        let clock = tokio::time::Instant::now();
        let limit = self.max_attempt_duration();
        let outcome = match tokio::time::timeout(limit, self.run(&request, started_at)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failed(format!("timeout after {}", human(limit))),
        };
        let duration = clock.elapsed();
        tracing::debug!(
            subscriber = %self.subscriber,
            delivery = %request.delivery_id,
            attempt = request.attempt,
            status = outcome.status_code,
            verdict = ?outcome.verdict,
            error = outcome.error.as_deref(),
            duration_ms = duration.as_millis() as u64,
            "delivery attempt"
        );
        AttemptResult {
            verdict: outcome.verdict,
            status_code: outcome.status_code,
            error: outcome.error,
            started_at,
            duration,
            retry_after: outcome.retry_after,
        }
    }

    async fn run(&self, request: &AttemptRequest, started_at: UnixMillis) -> Outcome {
        if let Some(blocked) = &self.blocked {
            return Outcome::failed(blocked.to_string());
        }

        let id = request.delivery_id.to_string();
        let timestamp = started_at.as_secs();
        let mut headers = self.static_headers.clone();
        match HeaderValue::from_str(&id) {
            Ok(value) => headers.insert(WEBHOOK_ID, value),
            Err(_) => return Outcome::failed("delivery id is not a valid header".to_owned()),
        };
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(WEBHOOK_ATTEMPT, HeaderValue::from(request.attempt));
        if let Some(tp) = request
            .traceparent
            .as_deref()
            .and_then(|tp| HeaderValue::from_str(tp).ok())
        {
            headers.insert(TRACEPARENT, tp);
        }

        if let Some(signer) = &self.signer {
            let input = SignInput {
                delivery_id: &id,
                timestamp,
                attempt: request.attempt,
                body: &request.payload,
            };
            if let Err(e) = signer.sign(&input, &mut headers) {
                return Outcome::failed(e.to_string());
            }
        }

        let mut resent = false;
        loop {
            let auth_header = match self.auth.header().await {
                Ok(header) => header,
                Err(e) => return Outcome::failed(e.to_string()),
            };
            if let Some(AuthHeader { name, value }) = &auth_header {
                headers.insert(name.clone(), value.clone());
            }
            // Keep a copy only while a 401 resend is still possible.
            let may_resend = !resent && self.refreshable;
            let to_send = if may_resend {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            // The subscriber's timeout runs from here to the last body byte read.
            let deadline = outcome::deadline_after(Instant::now(), self.timeout);
            let mut http_request = http::Request::new(Body::new(request.payload.clone()));
            *http_request.method_mut() = Method::POST;
            *http_request.uri_mut() = self.uri.clone();
            *http_request.headers_mut() = to_send;
            let response = match timeout_at(deadline, self.client.request(http_request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Outcome::failed(describe(&e)),
                Err(_) => return Outcome::failed(format!("timeout after {}", human(self.timeout))),
            };
            let (parts, body) = response.into_parts();
            if parts.status == StatusCode::UNAUTHORIZED && may_resend {
                if let Some(rejected) = &auth_header {
                    if self.auth.on_unauthorized(rejected) {
                        let _ = timeout_at(deadline, outcome::drain(body)).await;
                        resent = true;
                        continue;
                    }
                }
            }
            return Outcome::from_response(parts, body, deadline).await;
        }
    }
}

/// `url` as an `http::Uri`, the form the client sends.
pub(crate) fn request_uri(
    subscriber: &SubscriberId,
    url: &Url,
    what: &'static str,
) -> Result<Uri, DeliveryError> {
    url.as_str().parse().map_err(|_| DeliveryError::InvalidUrl {
        subscriber: subscriber.to_string(),
        what,
    })
}

/// Refuses URL schemes the policy does not allow.
pub(crate) fn check_scheme(
    subscriber: &SubscriberId,
    url: &Url,
    what: &'static str,
    security: SecurityPolicy,
) -> Result<(), DeliveryError> {
    match url.scheme() {
        "https" => {}
        "http" if security.allow_http => {}
        "http" => {
            return Err(DeliveryError::HttpNotAllowed {
                subscriber: subscriber.to_string(),
                what,
            })
        }
        other => {
            return Err(DeliveryError::UnsupportedScheme {
                subscriber: subscriber.to_string(),
                what,
                scheme: other.to_owned(),
            })
        }
    }
    if url.host().is_none() {
        return Err(DeliveryError::MissingHost {
            subscriber: subscriber.to_string(),
            what,
        });
    }
    Ok(())
}

/// The parts of an [`AttemptResult`] the request decides.
struct Outcome {
    verdict: Verdict,
    status_code: Option<u16>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

impl Outcome {
    fn failed(error: String) -> Self {
        Self {
            verdict: Verdict::Failure,
            status_code: None,
            error: Some(error),
            retry_after: None,
        }
    }

    /// The verdict from the status; the body is drained (at most 4 KiB, until `deadline`) so
    /// the connection can be reused.
    async fn from_response(
        parts: http::response::Parts,
        body: Incoming,
        deadline: Instant,
    ) -> Self {
        let status = parts.status;
        let (verdict, error) = outcome::judge_status(status);
        let retry_after = outcome::retry_after(status, &parts.headers, SystemTime::now());
        // The status has arrived, so the verdict stands even if the body is slow.
        let _ = timeout_at(deadline, outcome::drain(body)).await;
        Self {
            verdict,
            status_code: Some(status.as_u16()),
            error,
            retry_after,
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("subscriber", &self.subscriber)
            .field("url", &RedactedUrl(&self.url))
            .field("timeout", &self.timeout)
            .field("static_headers", &self.static_headers.len())
            .field("auth", &self.auth)
            .field("signer", &self.signer)
            .field("blocked", &self.blocked.as_ref().map(ToString::to_string))
            .finish()
    }
}

/// A URL without its password and query (either may carry credentials).
struct RedactedUrl<'a>(&'a Url);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        write!(f, "\"{}://", url.scheme())?;
        if !url.username().is_empty() {
            write!(f, "{}:**@", url.username())?;
        }
        write!(f, "{}", url.host_str().unwrap_or_default())?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", url.path())?;
        if url.query().is_some() {
            write!(f, "?**")?;
        }
        write!(f, "\"")
    }
}
