//! Cluster coordination: what the nodes of one cluster share beyond the deliveries themselves.
//!
//! A shared engine (PostgreSQL, `herald-postgres`) implements [`ClusterState`]: node heartbeats
//! for `GET /v1/cluster`, a rate-limit token bucket per subscriber from which nodes reserve
//! small chunks, and one error-rate throttle per subscriber fed by every node's outcomes. An
//! embedded engine has no cluster: the dispatcher keeps those in memory.

use serde::Serialize;

use crate::{RateLimitConfig, StoreError, SubscriberId, ThrottleConfig, UnixMillis};

/// How long a node stays listed after its last heartbeat.
pub const NODE_VISIBLE_FOR_MS: u64 = 30_000;

/// One node of the cluster, as `GET /v1/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// The node's id (`[cluster] node_id`).
    pub id: String,
    /// When the node started.
    pub started_at: UnixMillis,
    /// Its last heartbeat.
    pub last_seen: UnixMillis,
    /// Requests it had in flight at its last heartbeat.
    pub in_flight: u64,
}

/// The cluster-wide state of one subscriber's error-rate throttle, after an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleState {
    /// The effective concurrency limit for the whole cluster.
    pub limit: u32,
    /// The cluster's limit just before this update. Only the node whose update changed the
    /// limit sees it differ from `limit`, so exactly one node reports (and alerts on) a change.
    pub previous_limit: u32,
    /// The failure share over the window (0 when nothing was attempted).
    pub error_rate: f64,
}

/// State shared by the nodes of a cluster.
#[async_trait::async_trait]
pub trait ClusterState: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Records that this node is alive with `in_flight` requests under way.
    async fn heartbeat(&self, in_flight: u64) -> Result<(), StoreError>;

    /// The nodes seen in the last [`NODE_VISIBLE_FOR_MS`] before `now`, by id.
    async fn nodes(&self, now: UnixMillis) -> Result<Vec<NodeInfo>, StoreError>;

    /// Takes up to `want` tokens from the subscriber's cluster-wide bucket (refilled at
    /// `limit.per_second`, holding at most `limit.burst`); returns how many were taken (0 when
    /// the bucket is empty). Tokens taken and not used are lost, never returned.
    async fn take_rate_tokens(
        &self,
        subscriber: &SubscriberId,
        limit: RateLimitConfig,
        want: u32,
        now: UnixMillis,
    ) -> Result<u32, StoreError>;

    /// Adds this node's outcome counts to the subscriber's cluster-wide throttle and returns
    /// the effective limit (AIMD: halved when the failure share over the window exceeds
    /// `config.error_rate` with at least `config.min_requests` attempts, else grown by
    /// `max(1, max/10)` per step up to `max`; at most one change per step, `window / 10`).
    async fn record_outcomes(
        &self,
        subscriber: &SubscriberId,
        config: &ThrottleConfig,
        max: u32,
        succeeded: u32,
        failed: u32,
        now: UnixMillis,
    ) -> Result<ThrottleState, StoreError>;
}
