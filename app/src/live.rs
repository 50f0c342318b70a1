//! Live updates: a counter that goes up whenever the server reports a change, so resources keyed
//! on it load again. The server forwards Postgres notifications over Server-Sent Events.

use leptos::prelude::*;

/// The SSE endpoint every page listens to.
pub const EVENTS_URL: &str = "/api/v1/events";

/// A signal that changes each time something the pages show changed on the server. It does not
/// change during server rendering.
pub fn use_live_changes() -> ReadSignal<u64> {
    let (changes, set_changes) = signal(0u64);
    #[cfg(feature = "hydrate")]
    {
        use futures::StreamExt;
        use gloo_net::eventsource::futures::EventSource;
        Effect::new(move |_| {
            let Ok(mut source) = EventSource::new(EVENTS_URL) else {
                return;
            };
            let (Ok(changed), Ok(ready)) = (source.subscribe("change"), source.subscribe("ready"))
            else {
                return;
            };
            // `ready` arrives on every (re)connection. Whatever changed before it was missed: on
            // a reconnection, and on the first connection too, since the page was rendered (on
            // the server, or by an earlier load) before this stream was listening.
            let mut events = futures::stream::select(changed, ready);
            leptos::task::spawn_local(async move {
                while events.next().await.is_some() {
                    set_changes.update(|n| *n += 1);
                }
            });
            let source = send_wrapper::SendWrapper::new(source);
            on_cleanup(move || source.take().close());
        });
    }
    let _ = set_changes;
    changes
}
