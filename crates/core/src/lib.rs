//! Herald's shared vocabulary.
//!
//! Every other crate depends on this one and on nothing upstream of it. It holds:
//!
//! - [`address`]: the one SSRF classification of IP addresses, shared by the config loader and
//!   the delivery guard;
//! - [`display_url`]: [`DisplayUrl`], how a URL is shown (no user info, no query string);
//! - [`ids`]: event, delivery and subscriber identifiers;
//! - [`secret`]: [`Secret`], the only way credentials travel through Herald (its `Debug` and
//!   `Display` print `**REDACTED**`);
//! - [`time`]: [`UnixMillis`], the timestamp stored on disk;
//! - [`subscriber`]: the validated, typed settings of one subscriber (what `herald-config`
//!   produces and what delivery and dispatch consume);
//! - [`cluster`]: [`ClusterState`], what the nodes of a PostgreSQL cluster share (heartbeats,
//!   rate-limit tokens, the error-rate throttle);
//! - [`store`]: the [`DeliveryStore`] trait, the seam between the dispatcher and a storage
//!   engine (sled is the default, in `herald-queue`; PostgreSQL in `herald-postgres`);
//! - [`spans`]: [`SpanSink`], where the API and the dispatcher report their finished `ingest`
//!   and `attempt` spans (exported over OTLP by the binary, SPEC §10);
//! - [`webhook_secret`]: the one rule for Standard Webhooks secrets, shared by the config
//!   loader and the signer.
//!
//! ```
//! use herald_core::{Secret, SubscriberId};
//! let id = SubscriberId::new("acme").unwrap();
//! let secret = Secret::new("whsec_abc");
//! assert_eq!(format!("{id} {secret:?}"), "acme **REDACTED**");
//! ```

pub mod address;
pub mod cluster;
pub mod display_url;
pub mod ids;
pub mod secret;
pub mod spans;
pub mod store;
pub mod subscriber;
pub mod throttle;
pub mod time;
pub mod traceparent;
pub mod webhook_secret;

pub use address::{blocked_range, BlockedRange};
pub use cluster::{ClusterState, NodeInfo, ThrottleState, NODE_VISIBLE_FOR_MS};
pub use display_url::DisplayUrl;
pub use ids::{DeliveryId, EventId, InvalidId, SubscriberId};
pub use secret::Secret;
pub use spans::{AttemptOutcome, AttemptSpan, IngestSpan, SpanSink};
pub use store::{
    AttemptRecord, BoxFuture, ClaimRequest, ClaimedDelivery, DeliveryDetails, DeliveryPage,
    DeliveryRecord, DeliveryStatus, DeliveryStore, EnqueueReceipt, EventDelivery, EventDetails,
    EventPage, EventQuery, LeaseToken, ListQuery, NewEvent, Outcome, PurgeStats, QueueCounts,
    ReceiptDelivery, ReplayRequest, ReplayResult, RetryBudget, StoreError, StoreListener,
};
pub use subscriber::{
    AuthConfig, EventFilter, OrderingMode, RateLimitConfig, RetryPolicy, SecurityPolicy,
    SigningConfig, SigningScheme, SigningSecret, SubscriberConfig, ThrottleConfig,
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, MAX_IN_FLIGHT_LIMIT,
};
pub use throttle::{throttle_step_ms, ThrottleBucket, ThrottleWindow, THROTTLE_BUCKETS};
pub use time::UnixMillis;
pub use traceparent::Traceparent;

/// `herald/<version>`, sent as `user-agent` on every delivery.
pub const USER_AGENT: &str = concat!("herald/", env!("CARGO_PKG_VERSION"));
