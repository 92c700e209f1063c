//! One WebSocket connection: joins its document's room, pumps frames both ways, keeps the
//! connection alive with pings, and closes it with the precise code when something ends it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use concord_core::share::Access;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tungstenite::protocol::CloseFrame;

use super::hub::{DocKey, Hub};
use super::queue;
use super::room::{Peer, Protocol, RoomEvent};
use super::ws::{self, Message, Sink, WebSocket};
use crate::live::Lease;

/// Frames queued for one client at most (bytes are bounded too, see [`Peer`]). A client this far
/// behind is not reading, and is disconnected (1013) instead of growing the server's memory.
const OUTBOUND_QUEUE: usize = 1024;
/// Bytes queued for one client at most, in multiples of the largest message a client may send.
const QUEUED_FRAMES_OF_MAX_SIZE: usize = 4;
/// Frames taken from the room's queue into one write and one flush at most: under load a
/// connection catches up with one wake-up and one system call instead of one per frame.
const FRAMES_PER_WRITE: usize = 64;
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Silence after which a peer is dead: three missed pongs. With the ping interval this closes a
/// dead connection within 60 s.
pub(super) const DEAD_AFTER: Duration = Duration::from_secs(45);
/// How long closing may wait for a client, per step.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Joining retries if the room unloads at the very moment of joining.
const JOIN_ATTEMPTS: usize = 3;

/// Why the server ends a connection; each maps to one close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The client broke RFC 6455 (1002), sent bytes that are not y-protocols (1007) or a text
    /// frame (1003).
    Protocol(u16),
    TooBig,
    TooSlow,
    Revoked,
    WorkspaceDeleted,
    /// Deleted through the document HTTP API.
    DocumentDeleted,
    StorageFailed,
    /// The document is being reloaded from storage; clients should reconnect.
    Reloading,
    DeadPeer,
    ShuttingDown,
    /// A Hocuspocus socket queued too much before authenticating (Hocuspocus's own 4205).
    PendingQueueFull,
    /// A Hocuspocus socket held no authenticated document for too long (Hocuspocus's 4408).
    Unauthenticated,
}

impl CloseReason {
    pub(super) fn frame(self) -> CloseFrame {
        let (code, reason) = match self {
            CloseReason::Protocol(1003) => (1003, "binary y-protocols frames only"),
            CloseReason::Protocol(1002) => (1002, "protocol error"),
            CloseReason::Protocol(code) => (code, "malformed frame"),
            CloseReason::TooBig => (1009, "frame too large"),
            CloseReason::TooSlow => (1013, "client too slow"),
            CloseReason::Revoked => (1008, "credentials no longer valid"),
            CloseReason::WorkspaceDeleted => (1000, "workspace deleted"),
            CloseReason::DocumentDeleted => (1000, "document deleted"),
            CloseReason::StorageFailed => (1011, "storage failure"),
            // 1012, "service restart": the registered code that tells a client to reconnect.
            CloseReason::Reloading => (1012, "document reloading"),
            CloseReason::DeadPeer => (1001, "ping timeout"),
            CloseReason::ShuttingDown => (1001, "server shutting down"),
            CloseReason::PendingQueueFull => (4205, "Reset Connection"),
            CloseReason::Unauthenticated => (4408, "Connection Timeout"),
        };
        CloseFrame { code: code.into(), reason: reason.into() }
    }
}

/// Lets the room or the credential watcher end a connection from outside its task.
#[derive(Debug)]
pub(super) struct Closer {
    /// The first reason wins; later ones are ignored.
    reason: OnceLock<CloseReason>,
    /// A child of the connection's lease: the credential watcher cancels it without a reason.
    cancelled: CancellationToken,
}

impl Closer {
    fn of(lease: &Lease) -> Closer {
        Closer::new(lease.ended().child_token())
    }

    /// A closer cancelled through `cancelled` (a Hocuspocus socket, whose documents each hold
    /// their own lease, cancels it when any of them ends).
    pub(super) fn new(cancelled: CancellationToken) -> Closer {
        Closer { reason: OnceLock::new(), cancelled }
    }

    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.cancelled.cancel();
    }

    pub(super) async fn cancelled(&self) {
        self.cancelled.cancelled().await
    }

    pub(super) fn reason(&self) -> Option<CloseReason> {
        let revoked = self.cancelled.is_cancelled().then_some(CloseReason::Revoked);
        self.reason.get().copied().or(revoked)
    }
}

/// Keeps `/api/status` true however the connection ends.
pub(super) struct Counted(Arc<Hub>);

impl Counted {
    pub(super) fn new(hub: &Arc<Hub>) -> Counted {
        hub.stats.connections.fetch_add(1, Ordering::Relaxed);
        Counted(hub.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn serve(
    hub: Arc<Hub>,
    socket: WebSocket,
    key: DocKey,
    access: Access,
    lease: Lease,
    shutdown: CancellationToken,
) {
    let _counted = Counted::new(&hub);
    let closer = Arc::new(Closer::of(&lease));
    let conn = hub.connection_id();
    let reason = pump(&hub, socket, &key, access, conn, &closer, &shutdown).await;
    drop(lease);
    if let Some(reason) = reason {
        tracing::info!(conn, doc = %key.name, ?reason, "closed WebSocket");
    }
}

/// Runs the connection until it ends; returns the server's reason, if the server ended it.
async fn pump(
    hub: &Arc<Hub>,
    socket: WebSocket,
    key: &DocKey,
    access: Access,
    conn: u64,
    closer: &Arc<Closer>,
    shutdown: &CancellationToken,
) -> Option<CloseReason> {
    let (mut sink, mut stream) = socket.split();
    let Joined { room, greeting, mut outbound, queued } =
        // Boxed, like every step but the wait for the next event: a task's allocation holds its
        // future's largest state, and the idle wait needs little (Y1).
        match Box::pin(join(hub, key, conn, closer, Protocol::YWebsocket, access)).await {
            Ok(joined) => joined,
            Err(reason) => {
                let _ = sink.send(Message::Close(Some(reason.frame()))).await;
                return Some(reason);
            }
        };
    if sink.send(Message::Binary(greeting)).await.is_err() {
        let _ = room.send(RoomEvent::Leave { conn }).await;
        return None;
    }
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut last_heard = Instant::now();
    let limit = hub.settings.send_timeout;
    // Empty while idle: the capacity a batch needed (up to 2 KiB of `Bytes`) is given back after
    // each write, so thousands of idle sockets hold none of it (Y1).
    let mut frames = Vec::new();
    let reason = loop {
        tokio::select! {
            taken = outbound.recv_many(&mut frames, FRAMES_PER_WRITE) => {
                // The room dropped this connection: either it closed it (the closer says why)
                // or the room itself stopped.
                if taken == 0 {
                    break closer.reason().or(Some(CloseReason::StorageFailed));
                }
                queued.fetch_sub(frames.iter().map(Bytes::len).sum(), Ordering::Relaxed);
                if let Err(end) = Box::pin(deliver(&mut sink, Outgoing::Binary(&mut frames), closer, shutdown, limit)).await {
                    break end;
                }
                frames = Vec::new();
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Binary(data))) => {
                        // A room that stopped after closing this connection (a delete) said why;
                        // the frame may have raced the close.
                        if room.send(RoomEvent::Frame { conn, data }).await.is_err() {
                            break closer.reason().or(Some(CloseReason::StorageFailed));
                        }
                    }
                    Some(Ok(Message::Text(_))) => break Some(CloseReason::Protocol(1003)),
                    // tungstenite has queued the pong. Sending it before reading on means a client
                    // that pings and never reads is no longer read either: its pongs cannot pile
                    // up in the write buffer, and it is closed once one waits past the timeout.
                    Some(Ok(Message::Ping(_))) => {
                        if let Err(end) = Box::pin(deliver(&mut sink, Outgoing::Pong, closer, shutdown, limit)).await {
                            break end;
                        }
                    }
                    // Raw frames are never read: tungstenite reassembles them.
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite has queued the echo of the client's close frame (1002 for an
                        // invalid code); it must reach the client before the socket drops.
                        let _ = tokio::time::timeout(CLOSE_GRACE, sink.flush()).await;
                        break None;
                    }
                    None => break None,
                    Some(Err(err)) => break read_error(&err),
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= DEAD_AFTER {
                    break Some(CloseReason::DeadPeer);
                }
                if let Err(end) = Box::pin(deliver(&mut sink, Outgoing::Ping, closer, shutdown, limit)).await {
                    break end;
                }
            }
            () = closer.cancelled() => break closer.reason(),
            () = shutdown.cancelled() => break Some(CloseReason::ShuttingDown),
        }
    };
    let _ = room.send(RoomEvent::Leave { conn }).await;
    if let Some(reason) = reason {
        // Bounded: a peer that does not read must not keep this task alive.
        let sent = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(reason.frame())))).await;
        // Wait for the client's Close reply, as RFC 6455 asks: dropping the socket while the
        // client's data is unread makes the kernel reset the connection, and the client may
        // then never read our close code. Not for a client that did not even take the close
        // frame: it is not reading, and reading it would queue pongs again.
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(CLOSE_GRACE, async { while let Some(Ok(_)) = stream.next().await {} }).await;
        }
    }
    reason
}

/// A connection's place in its room.
pub(super) struct Joined {
    pub room: queue::Sender<RoomEvent>,
    /// The room's first frame for this connection (its SyncStep1).
    pub greeting: Bytes,
    pub outbound: queue::Receiver<Bytes>,
    /// Bytes waiting in `outbound`; this task subtracts each frame it takes.
    pub queued: Arc<AtomicUsize>,
}

/// Joins the document's room and waits for its greeting, so frames sent from now on reach a room
/// that knows this connection. The error is why the connection cannot stay: the document is
/// being deleted, or it could not be opened.
pub(super) async fn join(
    hub: &Arc<Hub>,
    key: &DocKey,
    conn: u64,
    closer: &Arc<Closer>,
    protocol: Protocol,
    access: Access,
) -> Result<Joined, CloseReason> {
    for _ in 0..JOIN_ATTEMPTS {
        let room = hub.room(key)?;
        let (tx, mut outbound) = queue::channel(OUTBOUND_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let peer = Box::new(Peer {
            tx,
            queued: queued.clone(),
            max_queued: QUEUED_FRAMES_OF_MAX_SIZE * hub.settings.max_frame_bytes,
            closer: closer.clone(),
            protocol,
            access,
        });
        if room.send(RoomEvent::Join { conn, peer }).await.is_err() {
            continue;
        }
        // The room holds the only sender. If it unloaded (or failed to load) without taking the
        // join, the channel closes empty and we try again with a fresh room.
        if let Some(greeting) = outbound.recv().await {
            queued.fetch_sub(greeting.len(), Ordering::Relaxed);
            return Ok(Joined { room, greeting, outbound, queued });
        }
        // Closed by the room (a delete) rather than dropped unanswered.
        if let Some(reason) = closer.reason() {
            return Err(reason);
        }
    }
    Err(CloseReason::StorageFailed)
}

/// What [`deliver`] writes.
pub(super) enum Outgoing<'a> {
    /// Binary messages (taken out of the vector), written together and flushed once.
    Binary(&'a mut Vec<Bytes>),
    Ping,
    /// Only what tungstenite queued itself: the pong to a ping it read.
    Pong,
}

/// Writes `out` and flushes, waiting at most `limit` for the client to take it. Everything queued
/// for a socket is bounded this way: the room's queue by [`Peer`], tungstenite's write buffer by
/// never holding more than one batch of frames (large messages in fragments, see [`ws`]) and one
/// pong, because nothing more is read or sent until they are out. The error is the close
/// reason, or `None` if the socket is gone.
pub(super) async fn deliver(
    sink: &mut Sink,
    out: Outgoing<'_>,
    closer: &Closer,
    shutdown: &CancellationToken,
    limit: Duration,
) -> Result<(), Option<CloseReason>> {
    let write = async {
        match out {
            Outgoing::Binary(frames) => {
                for frame in frames.drain(..) {
                    ws::feed_binary(sink, frame).await?;
                }
                sink.flush().await
            }
            Outgoing::Ping => sink.send(Message::Ping(Bytes::new())).await,
            Outgoing::Pong => sink.flush().await,
        }
    };
    tokio::select! {
        written = tokio::time::timeout(limit, write) => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(CloseReason::TooSlow)),
        },
        // The room saw the client's queue overflow, or its credentials ended.
        () = closer.cancelled() => Err(closer.reason()),
        () = shutdown.cancelled() => Err(Some(CloseReason::ShuttingDown)),
    }
}

/// The close reason for a failed read: 1009 for a message over the configured maximum, 1002 for
/// a violation of RFC 6455 (an unmasked frame, reserved bits, an oversized or fragmented control
/// frame), 1007 for a text frame that is not UTF-8; `None` when the peer simply went away.
pub(super) fn read_error(err: &tungstenite::Error) -> Option<CloseReason> {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::Capacity(_) => Some(CloseReason::TooBig),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        tungstenite::Error::Protocol(_) => Some(CloseReason::Protocol(1002)),
        tungstenite::Error::Utf8(_) => Some(CloseReason::Protocol(1007)),
        _ => None,
    }
}
