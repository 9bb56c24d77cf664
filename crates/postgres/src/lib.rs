//! Herald's PostgreSQL storage engine: every daemon pointed at one database is a node of one
//! cluster (SPEC §8).
//!
//! [`PgStore`] implements [`DeliveryStore`](herald_core::DeliveryStore) and
//! [`ClusterState`](herald_core::ClusterState) on tokio-postgres with a deadpool pool:
//!
//! - **Schema**: embedded, versioned migrations ([`migrate`]), applied by [`PgStore::connect`];
//!   a schema newer than the binary is refused ([`PgError::SchemaTooNew`]).
//! - **Ingest** is group-committed: concurrent `enqueue` calls are gathered by one task into one
//!   transaction of multi-row `UNNEST` inserts, committed with `synchronous_commit = on`, and
//!   answered after COMMIT. Idempotency keys are a unique index (`ON CONFLICT DO NOTHING`, then
//!   the winner's receipt is read back).
//! - **Claims** take the subscriber's turn with `FOR UPDATE SKIP LOCKED` on its row, count its
//!   unexpired leases in a separate statement (the cluster-wide cap), then lease the due rows
//!   with `FOR UPDATE SKIP LOCKED` inside a CTE with the `LIMIT`. Every claim gets a new fencing
//!   token from a sequence.
//! - **Outcomes** are batched by one task (one statement per flush), fenced by the lease token,
//!   and kept in memory (bounded) when the database is unreachable, to be written when it
//!   returns.
//! - **Counts** by state are kept in the transaction of every change, spread over 16 rows
//!   per subscriber (one per connection's shard, summed when read), so a subscriber's
//!   concurrent ingest, claims and outcomes never wait for each other's COMMIT on one hot row.
//! - **Wake-ups**: `NOTIFY` in the committing transaction, relayed from a dedicated `LISTEN`
//!   connection to the [`StoreListener`], with polling every second
//!   as a backstop.
//! - **Vacuum**: when autovacuum is off or behind, one node vacuums the hot tables once a
//!   tenth of their rows are dead (`vacuum`), so claims do not slow down over dead entries.
//! - **Nodes**: a heartbeat row per node; a node restarted with the same id releases its
//!   previous leases at connect.

mod cluster;
mod enqueue;
mod error;
mod migrate;
mod notify;
mod outcomes;
mod store;
mod vacuum;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use herald_core::{StoreError, StoreListener, SubscriberId, UnixMillis};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;
use tracing::info;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::PgError;
pub use migrate::{migrate, SCHEMA_VERSION};
pub use store::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// How to reach the database and who this node is.
#[derive(Clone)]
pub struct PgOptions {
    url: herald_core::Secret,
    /// Connections in the pool (SPEC §8 `pool_size`, default 16).
    pub pool_size: usize,
    /// This node's id (`[cluster] node_id`).
    pub node_id: String,
    /// How long to wait for a connection before answering `Unavailable`.
    pub connect_timeout: Duration,
}

impl PgOptions {
    /// Options for `url` (a `postgres://user:password@host:port/db` URL or a key=value
    /// string), with a pool of 16 and a node id of host name + process id.
    pub fn new(url: &str) -> Self {
        Self {
            url: herald_core::Secret::new(url),
            pool_size: 16,
            node_id: default_node_id(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Sets the node id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Sets the pool size (at least 2: the collector tasks hold one each while they write).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(2);
        self
    }
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"**REDACTED**")
            .field("pool_size", &self.pool_size)
            .field("node_id", &self.node_id)
            .finish()
    }
}

/// The default node id: the host name and the process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "herald".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Where the database is, for messages: host(s), port and database, never the password.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) hosts: String,
    pub(crate) dbname: String,
    pub(crate) password: Option<Vec<u8>>,
}

impl Target {
    fn of(config: &tokio_postgres::Config) -> Self {
        let ports = config.get_ports();
        let hosts = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let port = ports
                    .get(i)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                match h {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect::<Vec<_>>();
        let hosts = if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        };
        Self {
            hosts,
            dbname: config
                .get_dbname()
                .or(config.get_user())
                .unwrap_or("postgres")
                .to_owned(),
            password: config.get_password().map(<[u8]>::to_vec),
        }
    }

    /// `text` with the password (if any) cut out, for error messages from the driver.
    pub(crate) fn redact(&self, text: &str) -> String {
        match self.password.as_deref().map(String::from_utf8_lossy) {
            Some(p) if !p.is_empty() => text.replace(p.as_ref(), "**REDACTED**"),
            _ => text.to_owned(),
        }
    }
}

/// Internal counters (tests and metrics).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) enqueue_transactions: AtomicU64,
    pub(crate) outcome_flushes: AtomicU64,
    pub(crate) outcomes_buffered: AtomicU64,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) target: Target,
    pub(crate) node_id: String,
    pub(crate) started_at: UnixMillis,
    pub(crate) listener: RwLock<Option<Arc<dyn StoreListener>>>,
    pub(crate) known_subscribers: Mutex<HashSet<SubscriberId>>,
    pub(crate) stats: Stats,
    pub(crate) in_flight: AtomicU64,
}

impl Inner {
    /// A pooled connection, or `Unavailable`.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| error::pool(&self.target, e))
    }

    pub(crate) fn listener(&self) -> Option<Arc<dyn StoreListener>> {
        self.listener.read().clone()
    }

    pub(crate) fn tell_work<'a>(&self, subscribers: impl IntoIterator<Item = &'a SubscriberId>) {
        if let Some(l) = self.listener() {
            for s in subscribers {
                l.work_available(s);
            }
        }
    }
}

/// The PostgreSQL [`DeliveryStore`](herald_core::DeliveryStore). Cheap to share behind an
/// `Arc`; dropping it stops its background tasks.
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
    pub(crate) enqueue_tx: mpsc::UnboundedSender<enqueue::Job>,
    pub(crate) outcome_tx: mpsc::UnboundedSender<outcomes::Job>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("hosts", &self.inner.target.hosts)
            .field("database", &self.inner.target.dbname)
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) fn parse_config(url: &str) -> Result<tokio_postgres::Config, PgError> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|_| PgError::InvalidUrl)
}

impl PgStore {
    /// Connects, applies the migrations, registers this node (releasing the leases a previous
    /// run with the same node id left) and starts the background tasks. Must be called within
    /// a Tokio runtime.
    pub async fn connect(options: PgOptions) -> Result<Self, PgError> {
        let mut config = parse_config(options.url.expose())?;
        let target = Target::of(&config);
        // Every commit waits for the WAL flush, whatever the server's default: `202` and
        // an outcome's acknowledgement mean durable.
        // A node that stops mid-transaction (frozen by SIGSTOP, a stalled VM, a network
        // partition with the socket still open) would otherwise hold its row locks for as long
        // as its connection lives: a claim's lock on a subscriber's row makes every other node
        // skip that subscriber. Herald's transactions never wait on anything but their own
        // statements, so one idle for 10 s belongs to a node that is gone: the server ends it
        // and its locks are free.
        config.options("-c synchronous_commit=on -c idle_in_transaction_session_timeout=10000");
        config.application_name("herald");
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));

        migrate::migrate_config(&config, &target).await?;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| PgError::Other(e.to_string()))?;

        let inner = Arc::new(Inner {
            pool,
            target: target.clone(),
            node_id: options.node_id.clone(),
            started_at: UnixMillis::now(),
            listener: RwLock::new(None),
            known_subscribers: Mutex::new(HashSet::new()),
            stats: Stats::default(),
            in_flight: AtomicU64::new(0),
        });
        let released = cluster::register_node(&inner)
            .await
            .map_err(|e| PgError::from_store(&target, e))?;
        if released > 0 {
            info!(
                node_id = %inner.node_id,
                released, "released the leases this node held before its restart"
            );
        }

        let (enqueue_tx, enqueue_rx) = mpsc::unbounded_channel();
        let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(enqueue::run(inner.clone(), enqueue_rx)),
            tokio::spawn(outcomes::run(inner.clone(), outcome_rx)),
            tokio::spawn(notify::run(inner.clone(), config)),
            tokio::spawn(cluster::run_heartbeat(inner.clone())),
            tokio::spawn(vacuum::run(inner.clone())),
        ];
        Ok(Self {
            inner,
            enqueue_tx,
            outcome_tx,
            tasks,
        })
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.inner.node_id
    }

    /// Transactions the ingest collector has committed (group commit: far fewer than the
    /// `enqueue` calls under concurrency).
    pub fn enqueue_transactions(&self) -> u64 {
        self.inner
            .stats
            .enqueue_transactions
            .load(Ordering::Relaxed)
    }

    /// Outcome flushes written (each one statement for any number of outcomes).
    pub fn outcome_flushes(&self) -> u64 {
        self.inner.stats.outcome_flushes.load(Ordering::Relaxed)
    }

    /// Outcomes held in memory because the database was unreachable, not yet written.
    pub fn outcomes_buffered(&self) -> u64 {
        self.inner.stats.outcomes_buffered.load(Ordering::Relaxed)
    }

    /// The pool, for tests and tools that need a raw connection.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }
}

/// Milliseconds as stored (bigint); times past `i64::MAX` saturate.
pub(crate) fn ms(t: UnixMillis) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A stored bigint as a time (negative reads as the epoch).
pub(crate) fn unms(v: i64) -> UnixMillis {
    UnixMillis(u64::try_from(v).unwrap_or(0))
}
