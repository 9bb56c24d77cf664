//! Set-up shared by the criterion benches.

use tokio::runtime::Runtime;

/// The runtime every bench drives its futures on: two workers, like the machine's two cores.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
