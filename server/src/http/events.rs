//! `GET /api/v1/events`: Server-Sent Events telling open pages that something changed.

use super::AppState;
use crate::live::Change;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;
use tokio_stream::wrappers::BroadcastStream;

/// Comment lines at this interval keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Log lines have their own per-job stream; pages reload on everything else.
    let changes = BroadcastStream::new(state.live.subscribe())
        .filter(|item| futures::future::ready(!matches!(item, Ok(change) if change.topic == "log")))
        .map(|item| {
            // A subscriber that lagged behind lost events: tell the page to reload everything.
            let change = item.unwrap_or_else(|_| Change::resync());
            Ok(Event::default()
                .event("change")
                .json_data(&change)
                .unwrap_or_else(|_| Event::default().event("change")))
        });
    let ready = stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let shutdown = state.shutdown.clone();
    let stream = ready
        .chain(changes)
        .take_until(async move { shutdown.cancelled().await });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
