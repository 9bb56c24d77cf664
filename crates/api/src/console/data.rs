//! Every read and action of the console, in one place: the only file that calls the store and
//! the dispatcher, so a change of their interfaces is adapted here alone. Each function returns
//! the API's view structs, so pages show exactly what the JSON API shows.

use herald_core::{DeliveryId, DeliveryStatus, ListQuery, SubscriberId, UnixMillis};

use crate::error::ApiError;
use crate::views::{DeliveryView, SubscriberView};
use crate::ApiState;

/// A subscriber's figures as `GET /v1/subscribers` shows them, plus the age of its oldest due
/// delivery and its delivered count (for the sparkline).
pub(crate) struct SubscriberRow {
    pub(crate) view: SubscriberView,
    /// Milliseconds since the oldest pending delivery became due (0: none is waiting).
    pub(crate) oldest_pending_ms: u64,
}

/// A page of a subscriber's deliveries.
pub(crate) struct DeliveryList {
    pub(crate) items: Vec<DeliveryView>,
    pub(crate) next_cursor: Option<String>,
}

/// Every configured subscriber.
pub(crate) fn subscribers(state: &ApiState) -> Vec<SubscriberRow> {
    let now = UnixMillis::now();
    state
        .inner
        .dispatcher
        .stats()
        .iter()
        .map(|stats| SubscriberRow {
            view: SubscriberView::from(stats),
            oldest_pending_ms: oldest_pending_ms(state, &stats.id, now),
        })
        .collect()
}

/// One subscriber.
pub(crate) fn subscriber(state: &ApiState, id: &str) -> Result<SubscriberRow, ApiError> {
    let stats = state.inner.dispatcher.stats_of(id)?;
    Ok(SubscriberRow {
        view: SubscriberView::from(&stats),
        oldest_pending_ms: oldest_pending_ms(state, &stats.id, UnixMillis::now()),
    })
}

/// How long the earliest due pending delivery has waited (0 when none is due); the store keeps
/// due times in an index, so this is one lookup.
fn oldest_pending_ms(state: &ApiState, id: &SubscriberId, now: UnixMillis) -> u64 {
    match state.inner.store.next_due(id) {
        Ok(Some(due)) if due.0 < now.0 => now.0 - due.0,
        _ => 0,
    }
}

/// A page of a subscriber's deliveries (all states, or one), in creation order.
pub(crate) fn deliveries(
    state: &ApiState,
    subscriber: &str,
    status: Option<DeliveryStatus>,
    limit: usize,
    cursor: Option<DeliveryId>,
) -> Result<DeliveryList, ApiError> {
    let subscriber = SubscriberId::new(subscriber)
        .map_err(|_| ApiError::not_found("unknown_subscriber", "no such subscriber"))?;
    let page = state.inner.store.list(&ListQuery {
        subscriber: Some(subscriber),
        status,
        limit,
        cursor,
    })?;
    Ok(DeliveryList {
        items: page.deliveries.iter().map(DeliveryView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
}

/// One delivery with its attempts, `None` when unknown (or not an id at all).
pub(crate) fn delivery(state: &ApiState, id: &str) -> Result<Option<DeliveryView>, ApiError> {
    let Ok(id) = id.parse::<DeliveryId>() else {
        return Ok(None);
    };
    Ok(state.inner.store.get(id)?.as_ref().map(DeliveryView::from))
}

/// Whether `id` is a configured subscriber.
pub(crate) fn is_configured(state: &ApiState, id: &str) -> bool {
    state.inner.dispatcher.contains(id)
}

/// Pause with a reason.
pub(crate) fn pause(state: &ApiState, id: &str, reason: &str) -> Result<(), ApiError> {
    Ok(state.inner.dispatcher.pause(id, reason)?)
}

/// Resume.
pub(crate) fn resume(state: &ApiState, id: &str) -> Result<(), ApiError> {
    Ok(state.inner.dispatcher.resume(id)?)
}

/// Every dead delivery of a subscriber back to pending; how many.
pub(crate) async fn redrive(state: &ApiState, id: &str) -> Result<u64, ApiError> {
    let sub = SubscriberId::new(id)
        .map_err(|_| ApiError::not_found("unknown_subscriber", "no such subscriber"))?;
    let n = state.inner.store.redrive(&sub, UnixMillis::now())?;
    state.inner.store.sync().await?;
    state.inner.dispatcher.notify(&sub);
    Ok(n)
}

/// One dead delivery back to pending; its subscriber.
pub(crate) async fn retry(state: &ApiState, id: &str) -> Result<String, ApiError> {
    let id = id
        .parse::<DeliveryId>()
        .map_err(|_| ApiError::not_found("not_found", "no such delivery"))?;
    let record = state.inner.store.retry_dead(id, UnixMillis::now())?;
    state.inner.store.sync().await?;
    state.inner.dispatcher.notify(&record.subscriber);
    Ok(record.subscriber.to_string())
}
