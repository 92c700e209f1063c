//! `GET /api/v1/sync/events`: Server-Sent Events telling a device its scope's new head as soon as
//! a push commits, so clients pull at once instead of polling.
//!
//! The fan-out is in-process: one `watch` channel per scope that has listeners. A watch channel
//! holds only the latest head, so a slow listener skips intermediate heads instead of queueing
//! them, which is all a client needs (it pulls from its own cursor anyway). With several nodes,
//! pushes committed on others arrive over the bus (`crate::bus`), which also has every watched
//! head re-read from the database whenever its messages may have been lost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use concord_store::Scope;
use futures_util::Stream;
use tokio::sync::watch;

use crate::api::oplog::sync_scope;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{Auth, token_hash};
use crate::live::{Kind, Lease};

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(events))
}

/// The latest head of each scope somebody listens to.
#[derive(Default)]
pub struct ScopeEvents {
    channels: Mutex<HashMap<Scope, watch::Sender<i64>>>,
}

impl ScopeEvents {
    /// A receiver of the scope's head. Subscribe before reading the head from the store, then
    /// [`ScopeEvents::publish`] it, so no commit can fall between the read and the subscription.
    pub fn subscribe(&self, scope: &Scope) -> watch::Receiver<i64> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(scope.clone()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// The scopes somebody listens to, so their heads can be read again after bus messages may
    /// have been lost (`crate::bus`).
    pub fn watched(&self) -> Vec<Scope> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.iter().filter(|(_, sender)| sender.receiver_count() > 0).map(|(scope, _)| scope.clone()).collect()
    }

    /// Announces `head` unless a higher head was announced already (pushes may finish their
    /// announcements out of order). Channels nobody listens to any more are dropped here.
    pub fn publish(&self, scope: &Scope, head: i64) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sender) = channels.get(scope) else { return };
        if sender.receiver_count() == 0 {
            channels.remove(scope);
            return;
        }
        sender.send_if_modified(|current| {
            let newer = head > *current;
            if newer {
                *current = head;
            }
            newer
        });
    }
}

/// What an open stream waits on.
struct Listener {
    heads: watch::Receiver<i64>,
    /// Ends when the stream's credentials do (see [`crate::live`]); frees its place when dropped.
    lease: Lease,
}

/// Streams `event: head` with `{"server_sequence": N}`: first the current head, then each new
/// one. The stream ends when the server shuts down (so open streams never hold up a graceful
/// exit), and when its credentials end: at once when its device is revoked, within half a second
/// when its user is blocked or its token expires, as the WebSockets do. A user holding
/// `SYNC_MAX_STREAMS_PER_USER` streams already gets 429 `too_many_streams`.
#[utoipa::path(get, path = "/api/v1/sync/events", tag = "op log", security(("device_token" = []), ("token_query" = [])), responses((status = 200, description = "server-sent events `head`, whose data is `{\"server_sequence\": n}` (each event an object of `event` and `data`)", body = Object, content_type = "text/event-stream"), crate::openapi::Authed, crate::openapi::Common))]
async fn events(
    State(state): State<AppState>,
    Auth(principal): Auth,
    parts: axum::http::request::Parts,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let scope = sync_scope(&principal)?;
    let token = token_hash(&parts)?;
    let lease = state.live.open(Kind::EventStream, &principal, token).map_err(|over| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("too many open event streams for this user ({over}); close one first"),
        )
    })?;
    let mut heads = state.events.subscribe(&scope);
    state.events.publish(&scope, state.store.head(&scope).await?);
    heads.mark_changed();
    let listener = Listener { heads, lease };
    let stream = futures_util::stream::unfold(listener, move |mut listener| {
        let shutdown = state.shutdown.clone();
        async move {
            tokio::select! {
                changed = listener.heads.changed() => {
                    changed.ok()?;
                    let head = *listener.heads.borrow_and_update();
                    let event = Event::default().event("head").data(format!("{{\"server_sequence\":{head}}}"));
                    Some((Ok(event), listener))
                }
                () = listener.lease.ended().cancelled() => None,
                () = shutdown.cancelled() => None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_monotonic_and_forgets_abandoned_scopes() {
        let hub = ScopeEvents::default();
        let scope = Scope { user_id: "u".into(), vault_id: "v".into() };
        let mut rx = hub.subscribe(&scope);
        hub.publish(&scope, 5);
        hub.publish(&scope, 3);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 5);
        hub.publish(&scope, 5);
        assert!(!rx.has_changed().unwrap(), "an older or equal head is not news");
        // Another scope hears nothing.
        let other = hub.subscribe(&Scope { user_id: "u".into(), vault_id: "w".into() });
        hub.publish(&scope, 9);
        assert_eq!(*other.borrow(), 0);
        drop(rx);
        hub.publish(&scope, 10);
        assert_eq!(hub.channels.lock().unwrap().len(), 1, "the abandoned scope's channel is gone");
    }
}
