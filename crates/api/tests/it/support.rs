//! The API under test: the real router over a sled store and a dispatcher, on 127.0.0.1.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald_api::{router, ApiOptions, ApiState};
use herald_core::{DeliveryStore, SecurityPolicy, SubscriberConfig, SubscriberId};
use herald_delivery::HttpClient;
use herald_dispatcher::Dispatcher;
use herald_queue::{SledOptions, SledStore};

/// Serves the API with `options` over a sled store in `dir` and one subscriber `a`, paused so
/// that nothing is delivered; returns the base URL and the store.
pub(crate) async fn serve_paused(
    dir: &Path,
    options: ApiOptions,
) -> (String, Arc<dyn DeliveryStore>) {
    let store: Arc<dyn DeliveryStore> =
        Arc::new(SledStore::open(dir, SledOptions::default()).unwrap());
    let client = HttpClient::new(SecurityPolicy {
        allow_http: true,
        allow_private_networks: true,
    })
    .unwrap();
    let sub = SubscriberConfig {
        timeout: Duration::from_secs(1),
        ..SubscriberConfig::new(
            SubscriberId::new("a").unwrap(),
            url::Url::parse("http://127.0.0.1:9/hook").unwrap(),
        )
    };
    let dispatcher = Dispatcher::start(Arc::clone(&store), client, vec![sub])
        .await
        .unwrap();
    dispatcher.pause("a", "API test").await.unwrap();
    let state = ApiState::new(dispatcher, options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    (format!("http://{addr}"), store)
}
