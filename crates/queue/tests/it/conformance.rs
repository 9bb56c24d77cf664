//! The shared conformance suite, run against sled.

use std::sync::Arc;

use herald_core::DeliveryStore;
use herald_queue::{conformance, SledStore};
use parking_lot::Mutex;

#[test]
fn sled_store_passes_the_conformance_suite() {
    let dirs = Mutex::new(Vec::new());
    conformance::run_all(&|| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), super::support::options()).unwrap();
        dirs.lock().push(dir);
        Arc::new(store) as Arc<dyn DeliveryStore>
    });
}
