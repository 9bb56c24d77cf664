//! The PostgreSQL engine passes the whole storage conformance suite (`herald-conformance`), each
//! case on a fresh database; a reopen is a new `PgStore` with the same node id.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use herald_core::DeliveryStore;

use herald_postgres::testing::TestDb;

struct Postgres;

#[async_trait::async_trait]
impl herald_conformance::Engine for Postgres {
    type Handle = TestDb;

    async fn create(&self) -> (Arc<dyn DeliveryStore>, TestDb) {
        let db = TestDb::create().await;
        (Arc::new(db.store("conformance").await), db)
    }

    async fn reopen(&self, db: &TestDb) -> Arc<dyn DeliveryStore> {
        Arc::new(db.store("conformance").await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    herald_conformance::run_all(&Postgres).await;
}
