//! The bus between nodes on one PostgreSQL: a node tells the others what it committed (document
//! updates, vault heads), what its clients' presence is (awareness) and which credentials ended,
//! so clients on every node hear it at once.
//!
//! - `codec`: the messages and their bytes (pure).
//! - `queue`: what was heard, waiting for the listener, and what is to be published, waiting
//!   for the publisher (both bounded).
//! - `liveness`: which other nodes are alive, from their heartbeats (pure).
//! - `redis_pubsub`: the implementation on Redis pub/sub (`REDIS_URL`).
//!
//! # The database log is the truth, the bus only a hint
//!
//! Nothing is acknowledged because of the bus, and nothing is stored only on it. Every document
//! update is committed to the database, numbered by the document's gap-free seq
//! (`concord_store::DocStore`), before its bus message is published. A room knows the seq through
//! which it holds every update (`last_seq`); a message that continues it is applied, and anything
//! else makes the room read what it lacks from the database (`doc_updates_after`):
//! - a message that was lost shows as a gap at the next message of that document, or
//! - as the subscription ending: the node then polls the database for every open room each
//!   [`POLL_WHILE_DOWN`] until it is subscribed again, and catches up once more at that moment
//!   (what was published while it was away is gone: Redis pub/sub keeps nothing);
//! - a room's own append numbered past another node's update is a gap too.
//!
//! So a lost, late, duplicated or reordered message costs latency (until the next message, the
//! reconnection or the next poll), never data, and a node without the bus still serves every
//! document correctly from the database. Event streams re-read the heads they watch at the same
//! moments. Revocations lost on the bus are caught by each node's own database re-check
//! (`crate::live`, every 500 ms). A message a node failed to *publish* (Redis gone at that
//! moment, though the others may be subscribed again already) is made up for by a
//! [`Message::CatchUp`] the node publishes as soon as it can again: every node then catches up.
//! Dropped messages are counted in `concord_bus_dropped_total`. A node that hears faster than it
//! handles drops what finds its queue full (bounded in messages and bytes: `queue`), counts it in
//! `concord_bus_received_dropped_total`, and catches up from the database, as after a lost
//! subscription: its memory stays bounded however fast the others talk.

pub mod codec;
mod liveness;
mod queue;
pub mod redis_pubsub;

use std::time::Duration;

use concord_store::Scope;
use tokio::sync::broadcast;

use self::codec::{Message, NodeId, Topic};
pub use self::queue::Inbox;
use crate::app::AppState;

/// While the bus is down, how often every open room and event stream reads what it missed.
pub const POLL_WHILE_DOWN: Duration = Duration::from_secs(1);
/// Received messages waiting for the listener at most; past it (or [`HEARD_BYTES`]) new ones are
/// dropped and the listener catches up from the database (`queue`). A typing commit's message is
/// a few hundred bytes: this is seconds of a busy deployment's traffic.
const HEARD_QUEUE: usize = 4096;
/// Bytes of received messages waiting for the listener at most: 256 of the largest (a commit's
/// 64 KiB of updates), and what bounds the node's memory when large messages arrive faster than
/// it handles them.
const HEARD_BYTES: usize = 16 << 20;
/// How often each node says it is alive (`liveness`).
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often to say so at most while this node keeps dropping received messages.
const DROPPED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Carries messages to every node. Publishing never waits: a message that cannot be sent is
/// dropped (see the module docs for why that is safe).
pub trait Bus: Send + Sync {
    fn publish(&self, topic: Topic, payload: Vec<u8>);
}

/// What the subscription reports.
#[derive(Debug)]
pub enum Heard {
    /// A message published by some node (this one included), as bytes.
    Message(Vec<u8>),
    /// Subscribed (again): messages published meanwhile are lost; catch up from the database.
    Missed,
    /// The subscription is lost; nothing is heard until the next [`Heard::Missed`].
    Down,
    /// This many messages were dropped because the listener was behind (`queue`): catch up.
    Dropped(u64),
}

/// This node's end of the bus: its id and, when configured, the bus.
pub struct Fanout {
    node: NodeId,
    bus: Option<Box<dyn Bus>>,
}

impl Fanout {
    /// No bus: one node alone; publishing does nothing.
    pub fn none() -> Fanout {
        Fanout { node: NodeId::random(), bus: None }
    }

    pub fn enabled(&self) -> bool {
        self.bus.is_some()
    }

    pub fn publish(&self, message: &Message) {
        if let Some(bus) = &self.bus {
            bus.publish(message.topic(), codec::encode(self.node, message));
        }
    }

    /// Announces a vault's new head after a push committed.
    pub fn head(&self, scope: &Scope, head: i64) {
        self.publish(&Message::Head { user_id: scope.user_id.clone(), vault_id: scope.vault_id.clone(), head });
    }
}

/// The configured bus and what it hears; `None` for the latter without `REDIS_URL`.
pub fn start(
    redis_url: Option<&str>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(Fanout, Option<Inbox>), redis_pubsub::BadUrl> {
    let Some(url) = redis_url else { return Ok((Fanout::none(), None)) };
    let (heard, receiver) = queue::bounded(HEARD_QUEUE, HEARD_BYTES);
    let node = NodeId::random();
    let notice = (Message::CatchUp.topic(), codec::encode(node, &Message::CatchUp));
    let bus = redis_pubsub::RedisBus::start(url, heard, notice, shutdown)?;
    Ok((Fanout { node, bus: Some(Box::new(bus)) }, Some(receiver)))
}

/// Starts delivering what the bus hears to this node's rooms, event streams and connections,
/// and publishing this node's revocations.
pub fn spawn_listener(state: &AppState, heard: Inbox) {
    tokio::spawn(listen(state.clone(), heard));
    tokio::spawn(forward_revocations(state.clone(), state.accounts.revocations.subscribe()));
    tokio::spawn(heartbeat(state.clone()));
}

async fn heartbeat(state: AppState) {
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = beat.tick() => state.bus.publish(&Message::Heartbeat),
            () = state.shutdown.cancelled() => return,
        }
    }
}

async fn listen(state: AppState, mut heard: Inbox) {
    // Down until first subscribed: rooms opened before that poll like any others.
    let mut down = true;
    let mut dropped_logged: Option<tokio::time::Instant> = None;
    let mut liveness = liveness::Liveness::default();
    let mut poll = tokio::time::interval(POLL_WHILE_DOWN);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = heard.heard() => match next {
                None => return,
                Some(Heard::Message(bytes)) => match codec::decode(&bytes) {
                    Ok((from, Message::Heartbeat)) if from == state.bus.node => {
                        for dead in liveness.beat() {
                            tracing::info!(node = %uuid::Uuid::from_bytes(dead.0), "a node fell silent; dropping its connections' awareness");
                            state.sync.node_gone(dead);
                        }
                    }
                    Ok((from, _)) if from == state.bus.node => {}
                    Ok((from, message)) => {
                        liveness.heard(from);
                        match message {
                            Message::CatchUp => catch_up(&state).await,
                            message => deliver(&state, from, message),
                        }
                    }
                    Err(err) => {
                        metrics::counter!("concord_bus_undecodable_total").increment(1);
                        tracing::warn!(error = %err, "dropping a bus message this node cannot read");
                    }
                },
                Some(Heard::Missed) => {
                    down = false;
                    liveness.forgive();
                    catch_up(&state).await;
                }
                Some(Heard::Down) => down = true,
                Some(Heard::Dropped(count)) => {
                    liveness.forgive();
                    if dropped_logged.is_none_or(|at| at.elapsed() >= DROPPED_LOG_INTERVAL) {
                        dropped_logged = Some(tokio::time::Instant::now());
                        tracing::warn!(count, "this node fell behind the bus and dropped messages; catching up from the database");
                    }
                    catch_up(&state).await;
                }
            },
            _ = poll.tick(), if down => catch_up(&state).await,
            () = state.shutdown.cancelled() => return,
        }
    }
}

fn deliver(state: &AppState, from: NodeId, message: Message) {
    match message {
        Message::Head { user_id, vault_id, head } => state.events.publish(&Scope { user_id, vault_id }, head),
        Message::DeviceRevoked { device_id } => state.live.end_device(&device_id),
        // Handled by `listen`, which can wait for the database or knows the nodes.
        Message::CatchUp | Message::Heartbeat => {}
        doc_message => state.sync.remote(from, doc_message),
    }
}

/// Everything this node may have missed: every open room reads its document's tail, every
/// watched vault's head is read again.
async fn catch_up(state: &AppState) {
    state.sync.catch_up_all();
    for scope in state.events.watched() {
        match state.store.head(&scope).await {
            Ok(head) => state.events.publish(&scope, head),
            Err(err) => tracing::warn!(error = %err, "re-reading a vault head failed"),
        }
    }
}

async fn forward_revocations(state: AppState, mut revocations: broadcast::Receiver<crate::accounts::RevokedDevice>) {
    loop {
        tokio::select! {
            notice = revocations.recv() => match notice {
                Ok(notice) => state.bus.publish(&Message::DeviceRevoked { device_id: notice.device_id }),
                // Other nodes' database re-checks catch what lagging drops here.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = state.shutdown.cancelled() => return,
        }
    }
}
