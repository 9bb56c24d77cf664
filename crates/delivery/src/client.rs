//! [`HttpClient`]: the HTTP settings every subscriber shares, and a connection pool per subscriber.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use herald_core::SecurityPolicy;

use crate::guard::Resolver;
use crate::DeliveryError;

/// Idle keep-alive connections a subscriber keeps per host: enough for one at the
/// `max_in_flight` ceiling (500) to reuse every connection it opened.
pub const MAX_IDLE_PER_HOST: usize = 512;

/// How long an idle pooled connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// TCP keep-alive probes on idle connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// HTTP/2 PING interval and how long to wait for its answer.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body: the stored payload (or a token request), sent in one piece.
pub(crate) type Body = Full<Bytes>;

/// A pooled hyper client: one per subscriber endpoint (and one per OAuth2 token source).
pub(crate) type Hyper = Client<Connector, Body>;

type Connector = HttpsConnector<HttpConnector<Resolver>>;

/// The HTTP settings shared by all subscribers; each [`Endpoint`](crate::Endpoint) gets its
/// own connection pool from it.
///
/// Pools are per subscriber so that nothing on the delivery path is locked across
/// subscribers (a pool has one mutex for its checkouts) and a subscriber's connections are
/// its own. The TLS configuration and resolver are shared. Configured for webhook delivery:
///
/// - keep-alive pooling, up to [`MAX_IDLE_PER_HOST`] idle connections per host and
///   subscriber, closed after [`POOL_IDLE_TIMEOUT`]; a config reload starts new pools (the old
///   ones finish their requests and close);
/// - HTTP/1.1 and HTTP/2 (negotiated by ALPN) over rustls, certificates checked by the
///   platform verifier;
/// - redirects are never followed (a 3xx is a failed attempt), nothing is retried (except a
///   request that never left because its pooled connection had just closed), no proxy is used;
/// - unless `allow_private_networks`, every name is resolved through the SSRF guard
///   (see [`guard`](crate::guard)).
///
/// Timeouts are per attempt (each [`Endpoint`](crate::Endpoint) applies its subscriber's), so
/// the client itself has none.
///
/// hyper's client is used directly rather than through reqwest: reqwest's layers (redirect and
/// retry policies, default-header merging, URL re-parsing per request) cost a third of the
/// delivery path's CPU, measured while draining a backlog through 500 connections.
#[derive(Clone)]
pub struct HttpClient {
    connector: Connector,
    security: SecurityPolicy,
}

impl HttpClient {
    /// Builds the shared client for the given `[security]` policy.
    pub fn new(security: SecurityPolicy) -> Result<Self, DeliveryError> {
        let mut tcp =
            HttpConnector::new_with_resolver(Resolver::new(!security.allow_private_networks));
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        let connector = HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| DeliveryError::Client(format!("tls setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(Self {
            connector,
            security,
        })
    }

    /// The policy this client was built with.
    pub fn security(&self) -> SecurityPolicy {
        self.security
    }

    /// A new connection pool with the shared settings.
    pub(crate) fn pool(&self) -> Hyper {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .http2_keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
            .http2_adaptive_window(true)
            .build(self.connector.clone())
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}
