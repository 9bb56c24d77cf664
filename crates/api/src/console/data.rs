//! Every read and action of the console, in one place: the only file that calls the store and
//! the dispatcher, so a change of their interfaces is adapted here alone. Each function returns
//! the API's view structs, so pages show exactly what the JSON API shows.

use herald_core::{
    DeliveryId, DeliveryStatus, EventId, ListQuery, ReplayRequest, SubscriberId, UnixMillis,
};

use crate::error::ApiError;
use crate::views::{DeliveryView, EventView, SubscriberView};
use crate::ApiState;

/// A subscriber's figures as `GET /v1/subscribers` shows them, plus the age of its oldest due
/// delivery.
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

/// A delivery with the payload of its event (when the event is still stored).
pub(crate) struct DeliveryPage {
    pub(crate) delivery: DeliveryView,
    pub(crate) payload: Option<Vec<u8>>,
}

fn subscriber_id(id: &str) -> Result<SubscriberId, ApiError> {
    SubscriberId::new(id).map_err(|_| {
        ApiError::not_found(
            "unknown_subscriber",
            format!("No subscriber with id {id:?} is configured."),
        )
    })
}

/// Every configured subscriber.
pub(crate) async fn subscribers(state: &ApiState) -> Result<Vec<SubscriberRow>, ApiError> {
    let now = UnixMillis::now();
    let stats = state.inner.dispatcher.stats().await?;
    let mut rows = Vec::with_capacity(stats.len());
    for s in &stats {
        rows.push(SubscriberRow {
            view: SubscriberView::from(s),
            oldest_pending_ms: oldest_pending_ms(state, &s.id, now).await,
        });
    }
    Ok(rows)
}

/// One subscriber.
pub(crate) async fn subscriber(state: &ApiState, id: &str) -> Result<SubscriberRow, ApiError> {
    let stats = state.inner.dispatcher.stats_of(id).await?;
    Ok(SubscriberRow {
        view: SubscriberView::from(&stats),
        oldest_pending_ms: oldest_pending_ms(state, &stats.id, UnixMillis::now()).await,
    })
}

/// How long the earliest due pending delivery has waited (0 when none is due); the store keeps
/// due times in an index, so this is one lookup.
async fn oldest_pending_ms(state: &ApiState, id: &SubscriberId, now: UnixMillis) -> u64 {
    match state.inner.store.next_due(id).await {
        Ok(Some(due)) if due.0 < now.0 => now.0 - due.0,
        _ => 0,
    }
}

/// A page of a subscriber's deliveries (all states, or one), in creation order.
pub(crate) async fn deliveries(
    state: &ApiState,
    subscriber: &str,
    status: Option<DeliveryStatus>,
    limit: usize,
    cursor: Option<DeliveryId>,
) -> Result<DeliveryList, ApiError> {
    let page = state
        .inner
        .store
        .list(&ListQuery {
            subscriber: Some(subscriber_id(subscriber)?),
            status,
            limit,
            cursor,
        })
        .await?;
    Ok(DeliveryList {
        items: page.deliveries.iter().map(DeliveryView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
}

/// One delivery with its attempts and its event's payload; `None` when unknown (or not an id).
pub(crate) async fn delivery(state: &ApiState, id: &str) -> Result<Option<DeliveryPage>, ApiError> {
    let Ok(id) = id.parse::<DeliveryId>() else {
        return Ok(None);
    };
    let Some(details) = state.inner.store.get(id).await? else {
        return Ok(None);
    };
    let payload = state
        .inner
        .store
        .get_event(details.record.event_id)
        .await?
        .map(|e| e.payload.to_vec());
    Ok(Some(DeliveryPage {
        delivery: DeliveryView::from(&details),
        payload,
    }))
}

/// One event with its deliveries; `None` when unknown (or not an id).
pub(crate) async fn event(state: &ApiState, id: &str) -> Result<Option<EventView>, ApiError> {
    let Ok(id) = id.parse::<EventId>() else {
        return Ok(None);
    };
    state
        .inner
        .store
        .get_event(id)
        .await?
        .as_ref()
        .map(|e| EventView::new(e, true))
        .transpose()
}

/// Whether `id` is a configured subscriber.
pub(crate) fn is_configured(state: &ApiState, id: &str) -> bool {
    state.inner.dispatcher.contains(id)
}

/// Pause with a reason.
pub(crate) async fn pause(state: &ApiState, id: &str, reason: &str) -> Result<(), ApiError> {
    Ok(state.inner.dispatcher.pause(id, reason).await?)
}

/// Resume.
pub(crate) async fn resume(state: &ApiState, id: &str) -> Result<(), ApiError> {
    Ok(state.inner.dispatcher.resume(id).await?)
}

/// Every dead delivery of a subscriber back to pending; how many.
pub(crate) async fn redrive(state: &ApiState, id: &str) -> Result<u64, ApiError> {
    Ok(state.inner.dispatcher.redrive(&subscriber_id(id)?).await?)
}

/// One dead delivery back to pending.
pub(crate) async fn retry(state: &ApiState, id: &str) -> Result<(), ApiError> {
    let id = id
        .parse::<DeliveryId>()
        .map_err(|_| ApiError::not_found("not_found", "No such delivery."))?;
    state.inner.dispatcher.retry(id).await?;
    Ok(())
}

/// A replay over a window (SPEC §10); with `dry_run` only counts. Returns (matched, replayed).
pub(crate) async fn replay(
    state: &ApiState,
    subscriber: &str,
    since: UnixMillis,
    until: Option<UnixMillis>,
    statuses: Vec<DeliveryStatus>,
    dry_run: bool,
) -> Result<(u64, u64), ApiError> {
    let result = state
        .inner
        .dispatcher
        .replay(&ReplayRequest {
            subscriber: subscriber_id(subscriber)?,
            since,
            until,
            statuses,
            event_types: Vec::new(),
            dry_run,
            now: UnixMillis::now(),
        })
        .await?;
    Ok((result.matched, result.replayed))
}
