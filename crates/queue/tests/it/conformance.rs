//! The shared conformance suite (`herald-conformance`), run against sled.

use std::sync::Arc;

use herald_core::DeliveryStore;
use herald_queue::SledStore;

/// sled as a conformance engine: a store in a temporary directory; reopen = open the same
/// directory again.
struct Sled;

#[async_trait::async_trait]
impl herald_conformance::Engine for Sled {
    type Handle = tempfile::TempDir;

    async fn create(&self) -> (Arc<dyn DeliveryStore>, Self::Handle) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), super::support::options()).unwrap();
        (Arc::new(store), dir)
    }

    async fn reopen(&self, dir: &Self::Handle) -> Arc<dyn DeliveryStore> {
        Arc::new(SledStore::open(dir.path(), super::support::options()).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_passes_the_conformance_suite() {
    herald_conformance::run_all(&Sled).await;
}
