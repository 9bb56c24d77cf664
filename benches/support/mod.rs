//! Set-up shared by the criterion benches (each bench uses the parts it needs).
#![allow(dead_code)]

use std::net::SocketAddr;

use tokio::runtime::Runtime;

/// The benches measure with the allocator the `herald` binary ships with (see `src/main.rs`).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The runtime every bench drives its futures on: two workers, like the machine's two cores.
pub(crate) fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Serves `app` on a fresh loopback port (the in-process receiver of a bench); returns its
/// address.
pub(crate) async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}
