//! A fresh database per test, on the server of `HERALD_TEST_DATABASE_URL`.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use herald_postgres::{PgOptions, PgStore};
use tokio_postgres::NoTls;

pub struct TestDb {
    pub admin: String,
    pub name: String,
    pub url: String,
}

pub fn base_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "HERALD_TEST_DATABASE_URL is not set. These tests need a PostgreSQL server: set it \
             to a URL of a role that may CREATE DATABASE, e.g. \
             `export HERALD_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres` \
             (scripts/test starts a throwaway server and sets it)"
        )
    })
}

/// `url` with its database name replaced.
fn with_db(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let scheme_end = main.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match main[scheme_end..].find('/') {
        Some(i) => &main[..scheme_end + i],
        None => main,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl TestDb {
    pub async fn new() -> Self {
        let admin = base_url();
        let name = format!("herald_t_{:016x}", rand::random::<u64>());
        admin_client(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_db(&admin, &name);
        Self { admin, name, url }
    }

    pub fn options(&self, node: &str) -> PgOptions {
        PgOptions::new(&self.url).node_id(node).pool_size(8)
    }

    pub async fn store(&self, node: &str) -> PgStore {
        PgStore::connect(self.options(node)).await.unwrap()
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // A runtime of its own: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
