//! Errors: what reaches callers, never with the database password.

use herald_core::StoreError;

use crate::Target;

/// A failure to open the PostgreSQL engine (connect or migrate). Its text names the host and
/// database, never the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The URL could not be parsed (it is not repeated: it may hold a password).
    #[error(
        "invalid database URL (expected postgres://user:password@host:5432/dbname; the URL is not shown because it may hold a password)"
    )]
    InvalidUrl,
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {hosts} (database {dbname:?}): {reason}")]
    Unreachable {
        /// host:port, comma-separated.
        hosts: String,
        /// The database name.
        dbname: String,
        /// The driver's reason, with any password cut out.
        reason: String,
    },
    /// The database holds a schema newer than this binary knows.
    #[error(
        "the database schema is version {found}, newer than this binary's {supported}: upgrade Herald on this node (refusing to run an old binary on a newer schema)"
    )]
    SchemaTooNew {
        /// The version found.
        found: i32,
        /// The newest version this binary knows.
        supported: i32,
    },
    /// A migration failed.
    #[error("migrating the schema of database {dbname:?} at {hosts} failed: {reason}")]
    Migration {
        /// host:port.
        hosts: String,
        /// The database name.
        dbname: String,
        /// What failed.
        reason: String,
    },
    /// Anything else.
    #[error("postgres: {0}")]
    Other(String),
}

impl PgError {
    pub(crate) fn unreachable(target: &Target, e: &dyn std::fmt::Display) -> Self {
        Self::Unreachable {
            hosts: target.hosts.clone(),
            dbname: target.dbname.clone(),
            reason: target.redact(&e.to_string()),
        }
    }

    pub(crate) fn from_store(target: &Target, e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => Self::Unreachable {
                hosts: target.hosts.clone(),
                dbname: target.dbname.clone(),
                reason,
            },
            other => Self::Other(target.redact(&other.to_string())),
        }
    }
}

/// SQLSTATE classes and codes that mean "not now, nothing changed, try again": the database
/// is not there (or not writable yet), or the transaction was rolled back by the server.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code == "57P01" // admin_shutdown
        || code == "57P02" // crash_shutdown
        || code == "57P03" // cannot_connect_now
        || code == "53300" // too_many_connections
        || code == "25006" // read_only_sql_transaction: a standby, until failover completes
        || code == "40001" // serialization_failure: rolled back, nothing changed
        || code == "40P01" // deadlock_detected: rolled back, nothing changed
}

/// Maps a driver error: lost connections and servers going away are `Unavailable`.
pub(crate) fn db(target: &Target, e: tokio_postgres::Error) -> StoreError {
    let text = target.redact(&e.to_string());
    if e.is_closed() {
        return StoreError::Unavailable(text);
    }
    if let Some(code) = e.code() {
        if is_unavailable_code(code.code()) {
            return StoreError::Unavailable(text);
        }
        return StoreError::Backend(text.into());
    }
    // No SQLSTATE: an I/O error, a timeout or a closed socket.
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return StoreError::Unavailable(text);
        }
        source = s.source();
    }
    if text.contains("connection") || text.contains("timed out") {
        return StoreError::Unavailable(text);
    }
    StoreError::Backend(text.into())
}

/// Maps a pool error: no connection to be had is `Unavailable`.
pub(crate) fn pool(target: &Target, e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(e) => db(target, e),
        P::Closed => StoreError::Closed,
        other => StoreError::Unavailable(format!(
            "no connection to PostgreSQL at {}: {}",
            target.hosts,
            target.redact(&other.to_string())
        )),
    }
}

/// A copy of an error for each of several waiters.
pub(crate) fn dup(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Closed => StoreError::Closed,
        StoreError::NotFound(id) => StoreError::NotFound(*id),
        StoreError::LeaseLost(id) => StoreError::LeaseLost(*id),
        other => StoreError::Backend(other.to_string().into()),
    }
}
