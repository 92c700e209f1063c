//! The Hocuspocus endpoint: one WebSocket carrying any number of documents, each authenticated
//! by its own `Auth` message, for Tiptap's `@hocuspocus/provider`.
//!
//! Framing and per-key state are `concord_core::hocuspocus`'s; this task only pumps. Each
//! authenticated document joins the same room a y-websocket client of that document joins (so
//! both protocols see each other's edits and awareness, and share the group commit) and holds its
//! own `live` lease (so the per-user connection cap counts open documents, as it does for
//! y-websocket sockets, and a revoked token ends the socket). Its outbound queue, frame size cap,
//! send timeout and keepalive are those of `socket.rs`.
//!
//! Authentication runs inline, in frame order, before the next frame is read: a document's
//! queued frames then replay against a room that knows the connection, and nothing a provider
//! sends can overtake its own `Auth`. Its cost is one token lookup, and a room load the first
//! time a document opens.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use concord_core::hocuspocus::{self, Session, SessionError, Step};
use concord_core::share::Access;
use concord_core::token::TokenHash;
use concord_core::yjs::{ConnId, DocName};
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::hub::DocKey;
use super::opener::Opener;
use super::queue;
use super::room::{Protocol, RoomEvent};
use super::socket::{self, CLOSE_GRACE, CloseReason, Closer, Counted, DEAD_AFTER, Joined, Outgoing, PING_INTERVAL};
use super::ws::{self, Message, Sink, WebSocket};
use crate::app::AppState;
use crate::error::ApiError;
use crate::live::Lease;

/// How long a socket may hold no authenticated document (from its opening, or since its last
/// document closed) before it is closed with 4408; upstream's idle timeout. Checked at each
/// ping, so it takes effect within one more interval.
const UNAUTHENTICATED_FOR: Duration = Duration::from_secs(60);

/// `GET /hocuspocus` (and WebSocket upgrades of `/`, see [`root`]).
#[utoipa::path(get, path = "/hocuspocus", tag = "hocuspocus", responses(crate::openapi::Upgrade, (status = 400, description = "not a WebSocket upgrade", body = crate::openapi::ErrorBody), crate::openapi::Common))]
pub(super) async fn upgrade(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, _body) = request.into_parts();
    let ws = ws::Upgrade::from_parts(&mut parts)
        .ok_or_else(|| ApiError::bad_request("websocket_required", "this endpoint only accepts WebSocket upgrades"))?;
    let max = state.sync.settings.max_frame_bytes;
    Ok(ws.on_upgrade(super::READ_BUFFER_BYTES, max, move |socket| serve(state, socket)))
}

/// Middleware in front of every route: a WebSocket upgrade of `/` is a Hocuspocus provider
/// pointed at the server's base URL; anything else on `/` (the web page) passes on untouched.
pub async fn root(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/" && is_websocket_upgrade(request.headers()) {
        return upgrade(State(state), request).await.into_response();
    }
    next.run(request).await
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// One authenticated document of the socket.
struct OpenDoc {
    conn: ConnId,
    room: queue::Sender<RoomEvent>,
    /// Bytes waiting in the room's queue for this document (see `room::Peer`).
    queued: Arc<AtomicUsize>,
    /// This document's place among the user's open connections.
    _lease: Lease,
    /// Stops the task that turns the lease's end into the socket's.
    _watch: DropGuard,
}

/// Frames from every open document's room, tagged with its key and connection; `None` once
/// the room dropped the connection.
type Outbound = SelectAll<BoxStream<'static, (Arc<str>, ConnId, Option<Bytes>)>>;

struct Connection {
    state: AppState,
    closer: Arc<Closer>,
    session: Session,
    docs: HashMap<Arc<str>, OpenDoc>,
    outbound: Outbound,
    sink: Sink,
    /// The frame being sent, in the vector [`socket::deliver`] takes.
    sending: Vec<Bytes>,
}

async fn serve(state: AppState, socket: WebSocket) {
    let _counted = Counted::new(&state.sync);
    let (sink, mut stream) = socket.split();
    let closer = Arc::new(Closer::new(CancellationToken::new()));
    let mut connection = Connection {
        state,
        closer,
        session: Session::default(),
        docs: HashMap::new(),
        outbound: SelectAll::new(),
        sink,
        sending: Vec::with_capacity(1),
    };
    let reason = connection.pump(&mut stream).await;
    for doc in connection.docs.values() {
        let _ = doc.room.send(RoomEvent::Leave { conn: doc.conn }).await;
    }
    if let Some(reason) = reason {
        let sink = &mut connection.sink;
        let sent = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(reason.frame())))).await;
        // As in `socket.rs`: read the client's close reply, so its data is not reset unread.
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = stream.next().await {} }).await;
        }
        tracing::info!(documents = connection.docs.len(), ?reason, "closed Hocuspocus WebSocket");
    }
}

impl Connection {
    async fn pump(&mut self, stream: &mut ws::Stream) -> Option<CloseReason> {
        let shutdown = self.state.shutdown.clone();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let mut last_heard = Instant::now();
        let mut lonely_since = Some(Instant::now());
        loop {
            let end = tokio::select! {
                Some((key, conn, frame)) = self.outbound.next(), if !self.outbound.is_empty() => {
                    self.forward(&key, conn, frame).await
                }
                incoming = stream.next() => {
                    last_heard = Instant::now();
                    match incoming {
                        Some(Ok(Message::Binary(data))) => self.receive(data).await,
                        Some(Ok(Message::Text(_))) => Err(Some(CloseReason::Protocol(1003))),
                        // As in `socket.rs`: the pong goes out before anything more is read.
                        Some(Ok(Message::Ping(_))) => self.deliver(Outgoing::Pong).await,
                        Some(Ok(Message::Pong(_) | Message::Frame(_))) => Ok(()),
                        Some(Ok(Message::Close(_))) => {
                            let _ = tokio::time::timeout(CLOSE_GRACE, self.sink.flush()).await;
                            Err(None)
                        }
                        None => Err(None),
                        Some(Err(err)) => Err(socket::read_error(&err)),
                    }
                }
                _ = ping.tick() => self.keepalive(last_heard, &mut lonely_since).await,
                () = self.closer.cancelled() => Err(self.closer.reason()),
                () = shutdown.cancelled() => Err(Some(CloseReason::ShuttingDown)),
            };
            if let Err(reason) = end {
                return reason;
            }
            if self.docs.is_empty() {
                lonely_since.get_or_insert_with(Instant::now);
            } else {
                lonely_since = None;
            }
        }
    }

    async fn keepalive(
        &mut self,
        last_heard: Instant,
        lonely_since: &mut Option<Instant>,
    ) -> Result<(), Option<CloseReason>> {
        if last_heard.elapsed() >= DEAD_AFTER {
            return Err(Some(CloseReason::DeadPeer));
        }
        if lonely_since.is_some_and(|since| since.elapsed() >= UNAUTHENTICATED_FOR) {
            return Err(Some(CloseReason::Unauthenticated));
        }
        self.deliver(Outgoing::Ping).await?;
        // Providers count only application frames towards their 30 s reconnect timeout.
        if self.session.wants_ping() {
            self.send_binary(Bytes::from_static(hocuspocus::PING)).await?;
        }
        Ok(())
    }

    /// Sends one frame of a room to the client, behind its key.
    async fn forward(&mut self, key: &Arc<str>, conn: ConnId, frame: Option<Bytes>) -> Result<(), Option<CloseReason>> {
        // Frames of a document closed meanwhile (or reopened under a new connection) are stale.
        let Some(doc) = self.docs.get(key).filter(|doc| doc.conn == conn) else { return Ok(()) };
        let Some(frame) = frame else {
            // The room let go of an open document without closing it: it stopped.
            return Err(self.closer.reason().or(Some(CloseReason::StorageFailed)));
        };
        doc.queued.fetch_sub(frame.len(), Ordering::Relaxed);
        self.send(key, &frame).await
    }

    async fn send(&mut self, key: &str, body: &[u8]) -> Result<(), Option<CloseReason>> {
        self.send_binary(hocuspocus::frame(key, body).into()).await
    }

    async fn send_binary(&mut self, frame: Bytes) -> Result<(), Option<CloseReason>> {
        let mut sending = std::mem::take(&mut self.sending);
        sending.push(frame);
        let sent = self.deliver(Outgoing::Binary(&mut sending)).await;
        self.sending = sending;
        sent
    }

    async fn deliver(&mut self, out: Outgoing<'_>) -> Result<(), Option<CloseReason>> {
        let limit = self.state.sync.settings.send_timeout;
        socket::deliver(&mut self.sink, out, &self.closer, &self.state.shutdown, limit).await
    }

    /// Handles one client frame (and, after a successful Auth, the frames queued before it).
    async fn receive(&mut self, data: Bytes) -> Result<(), Option<CloseReason>> {
        let step = match self.session.receive(&data) {
            Ok(step) => step,
            Err(err) => {
                tracing::warn!(error = %err, "closing Hocuspocus WebSocket after a bad frame");
                return Err(Some(match err {
                    SessionError::Malformed(_) => CloseReason::Protocol(err.close_code()),
                    SessionError::QueueFull => CloseReason::PendingQueueFull,
                }));
            }
        };
        match step {
            Step::Nothing => Ok(()),
            Step::Authenticate { key, token } => {
                let (key, token) = (key.to_owned(), token.to_owned());
                self.authenticate(&key, &token).await
            }
            // The session calls a key open only after `authenticate` put it in `docs`.
            Step::Room { key, ydoc } => {
                let doc = &self.docs[key];
                let event = RoomEvent::Frame { conn: doc.conn, data: data.slice_ref(ydoc) };
                // Raced a close (a delete): the closer says why.
                doc.room.send(event).await.map_err(|_| self.closer.reason().or(Some(CloseReason::StorageFailed)))
            }
            Step::Stateless { key, payload } => {
                let doc = &self.docs[key];
                let event = RoomEvent::Stateless { conn: doc.conn, body: hocuspocus::stateless(payload).into() };
                // Raced a close (a delete): the closer says why.
                doc.room.send(event).await.map_err(|_| self.closer.reason().or(Some(CloseReason::StorageFailed)))
            }
            Step::Close { key } => {
                let key = key.to_owned();
                if let Some(doc) = self.docs.remove(key.as_str()) {
                    let _ = doc.room.send(RoomEvent::Leave { conn: doc.conn }).await;
                }
                self.send(&key, &hocuspocus::close("provider_initiated")).await
            }
        }
    }

    /// Opens the key's document if the token may open it, answering `Authenticated` (then
    /// replaying what the provider sent before), or `PermissionDenied` with the reason.
    async fn authenticate(&mut self, key: &str, token: &str) -> Result<(), Option<CloseReason>> {
        let (lease, doc_key, access) = match admit(&self.state, key, token).await {
            Ok(admitted) => admitted,
            Err(reason) => {
                self.session.denied(key);
                tracing::info!(%reason, "Hocuspocus authentication refused");
                return self.send(key, &hocuspocus::permission_denied(&reason)).await;
            }
        };
        let conn = self.state.sync.connection_id();
        let Joined { room, outbound, queued, .. } =
            socket::join(&self.state.sync, &doc_key, conn, &self.closer, Protocol::Hocuspocus, access)
                .await
                .map_err(Some)?;
        // The join's greeting, the room's SyncStep1, is not sent: a Hocuspocus server sends its
        // Step1 only in answer to the provider's (see `concord_core::hocuspocus::receive`).
        let watch = CancellationToken::new();
        let (ended, closer, stop) = (lease.ended().clone(), self.closer.clone(), watch.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = ended.cancelled() => closer.close(CloseReason::Revoked),
                () = stop.cancelled() => {}
            }
        });
        let key: Arc<str> = Arc::from(key);
        self.outbound.push(frames(key.clone(), conn, outbound));
        self.docs.insert(key.clone(), OpenDoc { conn, room, queued, _lease: lease, _watch: watch.drop_guard() });
        self.send(&key, &hocuspocus::authenticated(access)).await?;
        for frame in self.session.opened(&key) {
            Box::pin(self.receive(Bytes::from(frame))).await?;
        }
        Ok(())
    }
}

/// The checks of a y-websocket upgrade, in the same order: document name, token, the
/// user's open connections; then where the document lives. The error is the reason told to
/// the provider.
async fn admit(state: &AppState, key: &str, token: &str) -> Result<(Lease, DocKey, Access), String> {
    let name = DocName::parse(hocuspocus::doc_name(key)).map_err(|e| format!("invalid document name: {e}"))?;
    if token.is_empty() {
        return Err("a Concord token is required".into());
    }
    let hash = TokenHash::of(token);
    let opener = Opener::resolve(state, &hash).await.map_err(|e| e.message().to_owned())?;
    let lease = opener
        .lease(state, hash)
        .map_err(|over| format!("too many open documents for this user ({over}); close one first"))?;
    let workspace_id = opener.place(state, &name).await.map_err(|e| e.message().to_owned())?;
    Ok((lease, DocKey { workspace_id, name: name.as_str().to_owned() }, opener.access()))
}

fn frames(
    key: Arc<str>,
    conn: ConnId,
    rx: queue::Receiver<Bytes>,
) -> BoxStream<'static, (Arc<str>, ConnId, Option<Bytes>)> {
    futures_util::stream::unfold(Some(rx), move |rx| {
        let key = key.clone();
        async move {
            let mut rx = rx?;
            Some(match rx.recv().await {
                Some(frame) => ((key, conn, Some(frame)), Some(rx)),
                None => ((key, conn, None), None),
            })
        }
    })
    .boxed()
}
