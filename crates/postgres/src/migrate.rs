//! Embedded, versioned schema migrations.
//!
//! `herald_schema_version` holds one row per applied version. Migrating takes a
//! transaction-level advisory lock, so nodes starting together migrate one at a time; each
//! migration runs in that transaction with its version row.

use tokio_postgres::NoTls;
use tracing::info;

use crate::{parse_config, PgError, Target};

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_ordering.sql")),
    (3, include_str!("../migrations/0003_count_shards.sql")),
    (4, include_str!("../migrations/0004_vacuum.sql")),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i32 = 4;

/// Advisory lock key of migrations ("herald-m").
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64_2d6d;

/// Creates or migrates the schema of the database at `url` and returns the version it is at.
/// A schema newer than this binary is [`PgError::SchemaTooNew`]. What `herald migrate` runs.
pub async fn migrate(url: &str) -> Result<i32, PgError> {
    let config = parse_config(url)?;
    let target = Target::of(&config);
    migrate_config(&config, &target).await
}

pub(crate) async fn migrate_config(
    config: &tokio_postgres::Config,
    target: &Target,
) -> Result<i32, PgError> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| PgError::unreachable(target, &e))?;
    let driver = tokio::spawn(async move {
        // Ends when the client is dropped; an error here shows on the client's next call.
        let _ = connection.await;
    });
    let result = run(&mut client, target).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn run(client: &mut tokio_postgres::Client, target: &Target) -> Result<i32, PgError> {
    let fail = |e: tokio_postgres::Error| match crate::error::db(target, e) {
        herald_core::StoreError::Unavailable(reason) => PgError::Unreachable {
            hosts: target.hosts.clone(),
            dbname: target.dbname.clone(),
            reason,
        },
        other => PgError::Migration {
            hosts: target.hosts.clone(),
            dbname: target.dbname.clone(),
            reason: other.to_string(),
        },
    };
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS herald_schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(fail)?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM herald_schema_version",
            &[],
        )
        .await
        .map_err(fail)?;
    let current: i32 = row.get(0);
    if current > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO herald_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(fail)?;
        info!(version, database = %target.dbname, "applied schema migration");
    }
    tx.commit().await.map_err(fail)?;
    Ok(SCHEMA_VERSION)
}
