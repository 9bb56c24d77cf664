//! Test support (feature `testing`): a throwaway database per test on the server of
//! `HERALD_TEST_DATABASE_URL`, shared by this crate's tests, the dispatcher's and the
//! end-to-end suite. Without the variable the tests that need it fail, never skip.

use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::{PgOptions, PgStore};

/// The server the PostgreSQL tests use (`HERALD_TEST_DATABASE_URL`, a role that may
/// `CREATE DATABASE`; `scripts/test` starts a throwaway server and sets it).
///
/// # Panics
/// When the variable is unset or empty: a test that needs PostgreSQL fails without it.
#[must_use]
pub fn server_url() -> String {
    match std::env::var("HERALD_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "HERALD_TEST_DATABASE_URL is not set. The PostgreSQL tests need a server: run \
             scripts/test (it starts a throwaway one), or export \
             HERALD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
        ),
    }
}

/// `url` (a `postgres://` URL) with its database name replaced by `db`; the query string is
/// kept.
#[must_use]
pub fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let authority_at = main.find("://").map_or(0, |i| i + 3);
    let server = match main[authority_at..].find('/') {
        Some(i) => &main[..authority_at + i],
        None => main,
    };
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

/// Connects with `url` and drives the connection on a task of the current runtime.
///
/// # Errors
/// When the server cannot be reached or refuses the login.
pub async fn client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A fresh database (`herald_t_<random>`), dropped (with `FORCE`) when this is dropped.
pub struct TestDb {
    /// The server's URL, as given by [`server_url`].
    pub admin_url: String,
    /// The database's name.
    pub name: String,
    /// The database's URL.
    pub url: String,
}

// Not derived: the URLs may hold a password.
impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// Creates a fresh database on the server of [`server_url`].
    ///
    /// # Panics
    /// Without a server, or when it refuses `CREATE DATABASE`.
    pub async fn create() -> Self {
        Self::create_on(server_url()).await
    }

    /// Creates a fresh database on the server of `admin_url` (a role that may
    /// `CREATE DATABASE`).
    ///
    /// # Panics
    /// When the server cannot be reached or refuses `CREATE DATABASE`.
    pub async fn create_on(admin_url: String) -> Self {
        let name = format!("herald_t_{}", Uuid::now_v7().simple());
        client(&admin_url)
            .await
            .expect("connect to the PostgreSQL server of the tests")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE on the PostgreSQL server of the tests");
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// Options for a node `node` on this database (a small pool: tests open many).
    #[must_use]
    pub fn options(&self, node: &str) -> PgOptions {
        PgOptions::new(&self.url).node_id(node).pool_size(8)
    }

    /// A store (node `node`) on this database, migrated.
    ///
    /// # Panics
    /// When it cannot connect or migrate.
    pub async fn store(&self, node: &str) -> PgStore {
        PgStore::connect(self.options(node))
            .await
            .expect("PgStore::connect on the test database")
    }

    /// A client of this database.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn client(&self) -> tokio_postgres::Client {
        client(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// Runs `sql` (one or more statements) in this database.
    ///
    /// # Panics
    /// When it fails.
    pub async fn exec(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .expect("SQL in the test database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside the test's runtime: a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(c) = client(&admin).await {
                        let _ = c.batch_execute(&sql).await;
                    }
                });
            }
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_the_name_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h:1/db?sslmode=disable", "x"),
            "postgres://h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
