//! Wake-ups from every node: a dedicated `LISTEN` connection relayed to the
//! [`StoreListener`](herald_core::StoreListener), debounced, with polling as a backstop.
//!
//! Writers `NOTIFY herald_work, '<subscriber>'` (enqueue, release, retry, redrive, replay) and
//! `NOTIFY herald_paused, '<subscriber>'` (pause, resume) inside their transaction, so the
//! server sends them at COMMIT. This task relays them; when its connection is lost it
//! reconnects, and then tells the listener that every subscriber may have changed (anything
//! may have happened meanwhile). Independently, once a second, the subscribers with due work
//! are announced: a lost notification delays work by a second at most.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald_core::{SubscriberId, UnixMillis};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, warn};

use crate::error::db;
use crate::{ms, Inner};

/// Notifications arriving within this time are delivered together, each subscriber once.
const DEBOUNCE: Duration = Duration::from_millis(2);
/// How long to wait before reconnecting the LISTEN connection.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

pub(crate) async fn run(inner: Arc<Inner>, config: tokio_postgres::Config) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if tx
                                    .send((n.channel().to_owned(), n.payload().to_owned()))
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return,
                        }
                    }
                });
                if let Err(e) = client
                    .batch_execute("LISTEN herald_work; LISTEN herald_paused")
                    .await
                {
                    warn!(error = %db(&inner.target, e), "LISTEN failed; retrying");
                    driver.abort();
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    continue;
                }
                announce_everything(&inner).await;
                while let Some(first) = rx.recv().await {
                    tokio::time::sleep(DEBOUNCE).await;
                    let mut work = BTreeSet::new();
                    let mut changed = BTreeSet::new();
                    let mut add = |(channel, payload): (String, String)| {
                        if channel == "herald_paused" {
                            changed.insert(payload);
                        } else {
                            work.insert(payload);
                        }
                    };
                    add(first);
                    while let Ok(n) = rx.try_recv() {
                        add(n);
                    }
                    if let Some(l) = inner.listener() {
                        for s in changed.iter().filter_map(|s| SubscriberId::new(s).ok()) {
                            l.subscriber_changed(&s);
                        }
                        for s in work.iter().filter_map(|s| SubscriberId::new(s).ok()) {
                            l.work_available(&s);
                        }
                    }
                }
                // The connection ended.
                drop(client);
                warn!(
                    hosts = %inner.target.hosts,
                    "the LISTEN connection to PostgreSQL was lost; reconnecting"
                );
            }
            Err(e) => {
                debug!(error = %db(&inner.target, e), "LISTEN connection failed; retrying");
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// After a (re)connect: every subscriber's pause may have changed and work may be due.
async fn announce_everything(inner: &Inner) {
    let Some(l) = inner.listener() else {
        return;
    };
    let Ok(client) = inner.conn().await else {
        return;
    };
    if let Ok(rows) = client.query("SELECT id FROM herald_subscribers", &[]).await {
        for r in rows {
            if let Ok(s) = SubscriberId::new(r.get::<_, &str>(0)) {
                l.subscriber_changed(&s);
            }
        }
    }
    drop(client);
    poll_due(inner).await;
}

/// Announces the subscribers with claimable work now (one index probe per subscriber).
pub(crate) async fn poll_due(inner: &Inner) {
    let Some(l) = inner.listener() else {
        return;
    };
    let Ok(client) = inner.conn().await else {
        return;
    };
    let Ok(stmt) = client
        .prepare_cached(
            "SELECT s.id FROM herald_subscribers s
             WHERE EXISTS (SELECT 1 FROM herald_deliveries d
                           WHERE d.subscriber = s.id AND d.status < 2 AND d.ready_at <= $1)",
        )
        .await
    else {
        return;
    };
    if let Ok(rows) = client.query(&stmt, &[&ms(UnixMillis::now())]).await {
        for r in rows {
            if let Ok(s) = SubscriberId::new(r.get::<_, &str>(0)) {
                l.work_available(&s);
            }
        }
    }
}
