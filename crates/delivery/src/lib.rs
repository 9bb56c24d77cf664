//! Herald's HTTP delivery: one attempt done right, and the retry schedule.
//!
//! The dispatcher decides *when* a delivery is attempted; this crate does the attempt itself
//! and says when to try again. It knows nothing about queues or storage.
//!
//! - [`HttpClient`]: the shared HTTP settings, and a keep-alive pool per subscriber (HTTP/1.1
//!   and HTTP/2 over rustls, no redirects, no automatic retries, the SSRF guard in its DNS
//!   resolver).
//! - [`Endpoint`]: one subscriber, built once per config (re)load: validated URL, precomputed
//!   static headers, signing keys, and auth (static header or shared OAuth2 token cache).
//! - [`Endpoint::attempt`]: one `POST`, judged as [`Verdict::Success`] (2xx),
//!   [`Verdict::Gone`] (410) or [`Verdict::Failure`] (anything else, with a short text).
//! - [`retry::next_attempt_at`]: the exponential schedule, from the attempt number (so the
//!   dispatcher can store it and it survives restarts).
//! - Seams: [`auth::AuthProvider`] (none, basic, api_key, oauth2) and [`signing::Signer`]
//!   (standard-webhooks, sha256-v1), one implementation per file.
//!
//! # The stages of an attempt
//!
//! In this order (see [`Endpoint::attempt`]):
//!
//! 1. **SSRF guard** for IP-literal hosts, unless `allow_private_networks` (names are checked
//!    on their resolved addresses by the client's resolver, at connect time). A refused target
//!    receives nothing.
//! 2. **Headers**: `content-type: application/json`, `user-agent: herald/<version>`, the
//!    subscriber's static headers, then `webhook-id` (the delivery id, stable across retries),
//!    `webhook-timestamp` (unix seconds of this attempt) and `webhook-attempt` (1, 2, 3, …).
//! 3. **Signature** headers over the exact body bytes.
//! 4. **Auth** header (for OAuth2 this may fetch a token: one request per subscriber at a time).
//! 5. **POST** of the stored payload `Bytes` (not copied), with the subscriber's `timeout` from
//!    connect to last body byte.
//! 6. **401 resend**: if the auth provider can refresh (OAuth2), the rejected token is dropped
//!    and stages 4–5 run once more.
//! 7. **Outcome**: the status decides the verdict; `Retry-After` (seconds or HTTP-date) on 429 or
//!    503 becomes [`AttemptResult::retry_after`]; at most 4 KiB of the body is read, so huge or
//!    dribbling bodies cannot hold the attempt.
//!
//! The whole attempt is also bounded by [`Endpoint::max_attempt_duration`], which a lease must
//! outlast.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(cfg: herald_core::SubscriberConfig) -> Result<(), herald_delivery::DeliveryError> {
//! use herald_core::{DeliveryId, SecurityPolicy, UnixMillis};
//! use herald_delivery::{retry, AttemptRequest, Endpoint, HttpClient, Verdict};
//!
//! let client = HttpClient::new(SecurityPolicy::default())?; // once, for all subscribers
//! let endpoint = Endpoint::new(&cfg, &client)?;            // once per config load
//!
//! let result = endpoint
//!     .attempt(AttemptRequest {
//!         delivery_id: DeliveryId::generate(),
//!         attempt: 1,
//!         payload: bytes::Bytes::from_static(br#"{"hello":"world"}"#),
//!         traceparent: None,
//!     })
//!     .await;
//! if result.verdict == Verdict::Failure {
//!     let created_at = result.started_at;
//!     let next = retry::next_attempt_at(
//!         &cfg.retry, 1, created_at, UnixMillis::now(), result.retry_after, &mut rand::rng(),
//!     );
//!     println!("failed ({:?}); next attempt at {next:?}", result.error);
//! }
//! # Ok(()) }
//! ```
//!
//! # Decisions worth knowing
//!
//! - **Signing secrets** (`standard-webhooks`): an optional `whsec_` prefix is stripped and the
//!   rest base64-decoded (padding optional), exactly like the official libraries. A secret that
//!   is not base64 is refused by [`Endpoint::new`]; it is never used as raw bytes, because no
//!   receiver library could verify that. `sha256-v1` uses the secret's UTF-8 bytes as is.
//! - **OAuth2 tokens** are cached per endpoint and refreshed `min(30 s, 10 % of the lifetime)`
//!   before expiry; a missing `expires_in` counts as one hour. See [`auth::OAuth2ClientCredentials`].
//! - **Response bodies** are not kept: at most 4 KiB is read (so small answers keep the
//!   connection pooled), longer ones are dropped unread. The verdict is decided by the status
//!   alone: a 2xx whose body dribbles in is still a success (the receiver has accepted), and
//!   the timeout still bounds the attempt.
//! - **`Retry-After`** is read on 429 and 503 only, and capped at 24 h.
//! - **An IP-literal URL in a refused range** is not a config error: every attempt fails with
//!   `blocked: …`, so the reason is visible in the delivery's history.
//! - **No proxy** is ever used: a proxy would resolve names itself, past the SSRF guard.
//!
//! # Secrets
//!
//! Credentials, signing secrets and tokens never appear in errors, attempt texts, logs or
//! `Debug` output; header values built from them are marked sensitive.

mod client;
mod endpoint;
mod error;
mod outcome;

pub mod auth;
pub mod guard;
pub mod retry;
pub mod signing;

pub use client::{HttpClient, MAX_IDLE_PER_HOST, POOL_IDLE_TIMEOUT};
pub use endpoint::{
    AttemptRequest, AttemptResult, Endpoint, TRACEPARENT, WEBHOOK_ATTEMPT, WEBHOOK_ID,
    WEBHOOK_TIMESTAMP,
};
pub use error::DeliveryError;
pub use outcome::{Verdict, MAX_DRAINED_BODY, MAX_RETRY_AFTER};
