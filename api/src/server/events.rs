//! `/events`: durable changes as Server-Sent Events.

use super::auth::Caller;
use super::error::ApiError;
use super::extract::Q;
use super::Shared;
use axum::extract::State;
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    process: Option<String>,
    instance: Option<u64>,
    /// Comma-separated event names, e.g. `task_opened,task_overdue,escalated`.
    types: Option<String>,
}

/// Stream events
///
/// Server-Sent Events: the engine's changes as they become durable, filtered. A live feed: a
/// client that falls too far behind gets a `lagged` event saying how many it missed, and the
/// history endpoint has the complete record.
#[utoipa::path(
    get,
    path = "/events",
    params(EventsQuery),
    responses(
        (status = 200, description = "text/event-stream of durable changes: each event named as the history entry (`task_opened`, `escalated`, ...), its data an `Event` (components/schemas/Event) as JSON; a `lagged` event says how many a slow client missed", content_type = "text/event-stream", body = String, example = json!("event: task_opened\nid: 1-2\ndata: {\"instance\":1,\"event\":\"task_opened\",...}\n\n"))
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    State(state): State<Shared>,
    _caller: Caller,
    Q(q): Q<EventsQuery>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_core::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let types: Option<Vec<String>> =
        q.types.map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let deliveries = durable_events(&state);
    let stream = async_stream::stream! {
        for await delivery in deliveries {
            match delivery {
                Delivery::Event(e) => {
                    if q.process.as_ref().is_some_and(|p| *p != e.process)
                        || q.instance.is_some_and(|i| i != e.instance.0)
                        || types.as_ref().is_some_and(|t| !t.iter().any(|name| e.event == name.as_str()))
                    {
                        continue;
                    }
                    let data = serde_json::to_string(&*e).unwrap_or_default();
                    yield Ok(Event::default().event(e.event.as_str()).id(format!("{}-{}", e.instance, e.seq)).data(data));
                }
                Delivery::Lagged(n) => yield Ok(Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))),
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What a listener to the engine's changes receives.
pub enum Delivery {
    /// A change, once durable.
    Event(std::sync::Arc<caseflow_engine::service::EngineEvent>),
    /// The listener fell this many changes behind the channel and missed them (the history
    /// has them all).
    Lagged(u64),
}

/// The engine's durable changes as a stream, for `/events` and the console's live updates
/// alike. It ends when the server begins to shut down, so that a stream does not hold the
/// shutdown open (its client reconnects elsewhere or later).
pub fn durable_events(state: &Shared) -> impl futures_core::Stream<Item = Delivery> {
    use tokio::sync::broadcast::error::RecvError;
    let mut rx = state.events.subscribe();
    let mut stopping = state.stopping.subscribe();
    async_stream::stream! {
        loop {
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = stopping.wait_for(|s| *s) => break,
            };
            match received {
                Ok(e) => yield Delivery::Event(e),
                Err(RecvError::Lagged(n)) => yield Delivery::Lagged(n),
                Err(RecvError::Closed) => break,
            }
        }
    }
}
