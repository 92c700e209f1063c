//! One task per open document. It owns the sans-IO [`concord_core::yjs::Room`], takes events from
//! the document's connections in batches, persists each batch's updates through the group-commit
//! writer, and only then sends the batch's frames: nothing is relayed that is not on disk.
//!
//! The task loads the document when it starts, compacts it when the updates stored after the
//! snapshot pass the threshold (and, whatever their size, when the maintenance job finds it idle
//! or its last connection leaves), hibernates it when the maintenance job finds it idle, and ends (unloading the document) once its last connection
//! has left and everything is flushed.
//!
//! With several nodes, the room publishes on the bus what it committed (with the seqs the store
//! gave it) and its connections' awareness, and takes the same from the document's rooms on
//! other nodes, relaying it to its connections without storing it again. It holds every update
//! through `last_seq`; whatever does not continue that (a gap, an update left out for size, a
//! bus that lost messages) makes it read what it lacks from the database. Why that loses nothing
//! is argued in `crate::bus`.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use concord_core::share::Access;
use concord_core::yjs::{ConnId, Effects, Room};
use concord_core::{history, hocuspocus};
use concord_store::NewDocUpdate;
use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::hub::{DocKey, Hub};
use super::queue;
use super::socket::{CloseReason, Closer};
use super::writer::AppendFailed;
use crate::bus::codec::{DocRef, Message, NodeId};
use crate::clock;

/// Stored bytes from which a document is rebuilt off the async runtime (see [`load`]).
const BLOCKING_LOAD_BYTES: usize = 1 << 20;
/// Events taken per batch at most; bounds how long one batch holds frames back.
const MAX_EVENTS_PER_BATCH: usize = 512;
/// The shortest wait for an awareness sweep, so that a wall clock behind tokio's cannot make a
/// room wake again and again for a state that is not quite due.
const SWEEP_AT_LEAST: Duration = Duration::from_secs(1);
/// Update bytes a bus message carries at most: a commit of more (a paste, an import) is announced
/// by its seqs alone, and the rooms that hear it read it from the database. Typing commits a few
/// hundred bytes, so nearly every message is applied straight from the bus, while no message
/// holds Redis (or each node's queue) up with megabytes.
const BUS_UPDATE_BYTES: usize = 64 * 1024;
/// The y-protocols message type of awareness, which is what the room's broadcast frames that are
/// not document updates hold (each frame holds one message: see `concord_core::yjs::room`).
const MSG_AWARENESS: u8 = 1;
/// The y-protocols frame "query awareness": answered with every live awareness state.
const QUERY_AWARENESS: &[u8] = &[3];
/// The connection id under which the room answers an awareness query from another node; no
/// connection has it (ids start at 1).
const NO_CONN: ConnId = 0;

/// What a connection tells its room. Kept to a frame's size (the rare, larger variants are
/// boxed): a busy room's queue holds up to a thousand of them.
pub(super) enum RoomEvent {
    Join {
        conn: ConnId,
        peer: Box<Peer>,
    },
    Frame {
        conn: ConnId,
        data: Bytes,
    },
    Leave {
        conn: ConnId,
    },
    /// A Hocuspocus stateless message (its body, without key), for the document's other
    /// Hocuspocus connections.
    Stateless {
        conn: ConnId,
        body: Bytes,
    },
    /// An update from the document HTTP API, as a connection's would be applied; answered once
    /// its batch has committed (and its frames are queued for every connection), or failed.
    Apply {
        change: Box<Change>,
        done: oneshot::Sender<Result<Applied, ApplyError>>,
    },
    /// The document (or its workspace) was deleted: close every connection and stop.
    Close(CloseReason),
    /// Compact now if nothing was written for `idle_for` and anything is stored after the
    /// snapshot (the idle-compaction maintenance job).
    CompactIfIdle {
        idle_for: Duration,
    },
    /// What another node's room of this document (or the bus itself) says.
    Remote(Box<Remote>),
}

// A frame event (a connection id and `Bytes`) and the enum's tag; see [`RoomEvent`].
const _: () = assert!(std::mem::size_of::<RoomEvent>() <= 48);

/// What the bus brings a room (see `crate::bus::codec::Message`).
pub(super) enum Remote {
    /// Another node committed seqs `first..=last` of document `doc_id` (the bytes if small).
    Updates { doc_id: String, first: i64, last: i64, updates: Option<Vec<Vec<u8>>> },
    /// Awareness of another node's connection, under this room's name for it ([`remote_conn`]).
    Awareness { node: NodeId, conn: ConnId, frame: Bytes },
    /// A room of the document opened elsewhere and asks for the awareness states.
    AwarenessQuery,
    /// A Hocuspocus stateless message for this room's Hocuspocus connections.
    Stateless(Bytes),
    /// Messages may have been lost: read from the database whatever the room lacks.
    CatchUp,
    /// Another node deleted the document (or its workspace): check the database, and if it is
    /// gone close every connection for this reason.
    Deleted(CloseReason),
    /// The node died: its connections' awareness states go now, not at their timeout.
    NodeGone(NodeId),
}

/// The room's connection id for connection `conn` of node `node`: awareness states are kept per
/// connection (with per-connection limits), so each remote connection gets an id of its own.
/// The top bit keeps it clear of this node's ids, which count up from 1.
pub(super) fn remote_conn(node: NodeId, conn: u64) -> ConnId {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (node, conn).hash(&mut hasher);
    hasher.finish() | 1 << 63
}

/// A change to a document that comes from no connection. Cheap to clone (reference counted).
#[derive(Clone)]
pub(crate) enum Change {
    /// A Yjs update (lib0 v1), as a connection would send it.
    Update(Bytes),
    /// Make the document equal to this state (a version's): the room computes the update from
    /// its current document, so edits that arrived meanwhile are reverted too.
    Restore(Bytes),
}

/// What an [`RoomEvent::Apply`] did, once committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    /// False when the document already held the update (or yrs holds it for a missing
    /// predecessor): nothing was stored or relayed.
    pub changed: bool,
    /// The seq of the document's newest stored update.
    pub seq: i64,
}

/// Why an [`RoomEvent::Apply`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    #[error("{0}")]
    Invalid(concord_core::yjs::ProtocolError),
    #[error("the document could not be stored")]
    Storage,
    #[error("the document could not be opened")]
    Unavailable,
    #[error("the document is being deleted")]
    Deleted,
    #[error("{0}")]
    Corrupt(String),
}

/// The wire protocol a connection speaks, which decides how its frames are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// y-protocols frames as they are (y-websocket, Diaryx, pycrdt).
    YWebsocket,
    /// y-protocols messages from Hocuspocus frames (key stripped by the socket, which also
    /// prefixes it to what it sends): acknowledged, and answered with the server's SyncStep1.
    Hocuspocus,
}

/// A connection as the room sees it.
pub(super) struct Peer {
    /// Frames waiting for the socket. When the client does not read, this fills up and the
    /// client is disconnected (1013) rather than buffered for without limit.
    pub tx: queue::Sender<Bytes>,
    /// Bytes in `tx`, shared with the socket task, which subtracts what it has sent.
    pub queued: Arc<AtomicUsize>,
    /// Most bytes that may wait in `tx`; one frame is always accepted into an empty queue, so a
    /// large document's first SyncStep2 never counts as slowness.
    pub max_queued: usize,
    pub closer: Arc<Closer>,
    pub protocol: Protocol,
    /// Whether the connection may change the document (a read-only share may not).
    pub access: Access,
}

impl Peer {
    fn send(&self, frame: &Bytes) {
        let before = self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        let over = before > 0 && before + frame.len() > self.max_queued;
        if over || self.tx.try_send(frame.clone()).is_err() {
            self.queued.fetch_sub(frame.len(), Ordering::Relaxed);
            // A closed channel means the socket is already gone; closing again is harmless.
            self.closer.close(CloseReason::TooSlow);
        }
    }
}

/// The loaded document and where its stored state stands.
struct Loaded {
    room: Room,
    doc_id: concord_store::DocId,
    /// Seq of the newest stored update this room holds with every one before it; compaction
    /// covers everything up to it. Document seqs are gap-free per document (`DocStore`), so a
    /// batch numbered past `last_seq + 1` means another node appended in between (storage: pg).
    last_seq: i64,
    /// Bus messages name the document by this, with the store id.
    bus_ref: DocRef,
    /// Bytes of updates stored after the snapshot.
    pending_bytes: usize,
    /// When an update was last stored (or the document loaded), for idle compaction.
    last_write: Instant,
    /// The room may lack updates after `last_seq` (another node appended them, or the bus lost
    /// messages): no compaction, and it catches up from the database after the current batch.
    behind: bool,
    /// How the connections close when the document turns out to be gone (an append or a
    /// catch-up finds it deleted through another node): what that node's delete said, if heard
    /// (else [`why_gone`] asks the database).
    gone: Option<CloseReason>,
    /// When the newest version was taken (unix seconds), if there is one.
    last_version_at: Option<i64>,
    /// Whether anything was stored since that version (at load: whether updates follow the
    /// snapshot, which is as close as storage tells).
    changed_since_version: bool,
}

pub(super) async fn run(
    hub: Arc<Hub>,
    key: DocKey,
    generation: u64,
    mut rx: queue::Receiver<RoomEvent>,
    missed: Arc<AtomicBool>,
) {
    hub.stats.rooms.fetch_add(1, Ordering::Relaxed);
    // Boxed, like the rarer steps in `serve`: a task's allocation holds its future's largest state,
    // and one that holds only what waiting for events needs keeps idle rooms small (Y1).
    match Box::pin(load(&hub, &key)).await {
        Ok(mut doc) => serve(&hub, &key, generation, &mut rx, &missed, &mut doc).await,
        // Connections waiting in the queue see their channel close and report the failure.
        Err(err) => {
            tracing::error!(workspace = %key.workspace_id, doc = %key.name, error = %err, "loading document failed")
        }
    }
    hub.forget_room(&key, generation);
    hub.stats.rooms.fetch_sub(1, Ordering::Relaxed);
}

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Store(#[from] concord_store::StoreError),
    #[error("stored state does not decode: {0}")]
    Corrupt(#[from] concord_core::yjs::ProtocolError),
}

async fn load(hub: &Hub, key: &DocKey) -> Result<Loaded, LoadError> {
    let stored = hub.store.load_doc(&key.workspace_id, &key.name, clock::now()).await?;
    let pending_bytes = stored.updates.iter().map(Vec::len).sum();
    let rebuild = |stored: &concord_store::StoredDoc| {
        Room::load(stored.snapshot.as_deref(), stored.updates.iter().map(Vec::as_slice))
    };
    let (room, stored) = if stored.snapshot.as_ref().map_or(0, Vec::len) + pending_bytes < BLOCKING_LOAD_BYTES {
        (rebuild(&stored), stored)
    } else {
        // Rebuilding megabytes takes tens of milliseconds: on a blocking thread, so the runtime's
        // two workers keep serving every other document meanwhile.
        tokio::task::spawn_blocking(move || (rebuild(&stored), stored)).await.expect("loading does not panic")
    };
    let room = room?;
    let last_version_at = hub.store.versions_of(&stored.id).await?.first().map(|v| v.created_at);
    let bus_ref =
        DocRef { workspace_id: key.workspace_id.clone(), name: key.name.clone(), doc_id: stored.id.to_string() };
    Ok(Loaded {
        room,
        doc_id: stored.id,
        last_seq: stored.last_seq,
        bus_ref,
        pending_bytes,
        last_write: Instant::now(),
        behind: false,
        gone: None,
        last_version_at,
        changed_since_version: !stored.updates.is_empty(),
    })
}

async fn serve(
    hub: &Hub,
    key: &DocKey,
    generation: u64,
    rx: &mut queue::Receiver<RoomEvent>,
    missed: &AtomicBool,
    doc: &mut Loaded,
) {
    let mut peers: HashMap<ConnId, Peer> = HashMap::new();
    // Other nodes' connections whose awareness this room holds, by node, to drop them when the
    // node dies.
    let mut remote_conns: HashMap<NodeId, HashSet<ConnId>> = HashMap::new();
    // Armed only while the room holds awareness, for the moment its oldest entry expires: a room
    // whose clients hold no presence, or renew it in time, never wakes for a sweep (the idle CPU
    // of thousands of rooms was mostly these wake-ups, every 5 s each).
    let mut sweep: Option<Pin<Box<Sleep>>> = None;
    let mut events = Vec::new();
    // Other nodes' rooms of this document answer with their connections' awareness.
    hub.bus.publish(&Message::AwarenessQuery { doc: doc.bus_ref.clone() });
    let publishing = hub.bus.enabled();
    loop {
        sweep = arm_sweep(sweep, doc.room.next_sweep(), clock::now());
        let mut swept = Effects::default();
        tokio::select! {
            received = rx.recv_many(&mut events, MAX_EVENTS_PER_BATCH) => if received == 0 { return },
            () = async { sweep.as_mut().expect("armed").await }, if sweep.is_some() => {
                // Spent: the next loop arms a fresh one for whatever is due then.
                sweep = None;
                swept = doc.room.sweep(clock::now());
            }
        }
        let mut batch = vec![(None, swept)];
        let mut stateless = Vec::new();
        let now = clock::now();
        let mut poisoned = false;
        let mut idle = false;
        let mut acks = Vec::new();
        // Awareness frames of this node's connections, for the bus: (connection, frame).
        let mut awareness = Vec::new();
        // Taken whole, so that between batches (idle) the room holds no buffer of events.
        let mut batched = std::mem::take(&mut events).into_iter();
        while let Some(event) = batched.next() {
            // Events after a poisoning frame are dropped with the room; their connections see
            // their channels close and reconnect to the reloaded document.
            if poisoned {
                break;
            }
            match event {
                RoomEvent::Join { conn, peer } => {
                    let reply = doc.room.connect(conn);
                    peers.insert(conn, *peer);
                    batch.push((Some(conn), Effects { reply, ..Effects::default() }));
                }
                // Frames of a connection already closed for misbehaving are dropped.
                RoomEvent::Frame { conn, data } if peers.contains_key(&conn) => {
                    metrics::counter!("concord_yjs_frames_received_total").increment(1);
                    let peer = &peers[&conn];
                    let received = match (peer.protocol, peer.access) {
                        (Protocol::YWebsocket, Access::ReadWrite) => doc.room.receive(conn, &data, now),
                        (Protocol::YWebsocket, Access::ReadOnly) => {
                            doc.room.receive_read_only(conn, &data, now).map(|(effects, _)| effects)
                        }
                        (Protocol::Hocuspocus, access) => hocuspocus::receive(&mut doc.room, conn, &data, access, now),
                    };
                    match received {
                        Ok(effects) => {
                            if publishing {
                                awareness.extend(awareness_of(&effects).map(|frame| (conn, frame)));
                            }
                            batch.push((Some(conn), effects))
                        }
                        Err(err) => {
                            tracing::warn!(conn, doc = %key.name, error = %err, "closing connection after a malformed frame");
                            if let Some(peer) = peers.remove(&conn) {
                                peer.closer.close(CloseReason::Protocol(err.close_code()));
                            }
                            batch.push((Some(conn), doc.room.disconnect(conn, now)));
                            poisoned = err.poisons_room();
                        }
                    }
                }
                RoomEvent::Frame { .. } => {}
                RoomEvent::Stateless { conn, body } if peers.contains_key(&conn) => {
                    hub.bus.publish(&Message::Stateless { doc: doc.bus_ref.clone(), body: body.to_vec() });
                    stateless.push((conn, body))
                }
                RoomEvent::Stateless { .. } => {}
                RoomEvent::Leave { conn } => {
                    peers.remove(&conn);
                    let effects = doc.room.disconnect(conn, now);
                    if publishing {
                        awareness.extend(awareness_of(&effects).map(|frame| (conn, frame)));
                    }
                    batch.push((Some(conn), effects));
                }
                RoomEvent::Apply { change, done } => match apply(&mut doc.room, *change) {
                    Ok(effects) => {
                        acks.push((done, !effects.persist.is_empty()));
                        batch.push((None, effects));
                    }
                    Err(err) => {
                        poisoned = matches!(&err, ApplyError::Invalid(err) if err.poisons_room());
                        let _ = done.send(Err(err));
                    }
                },
                RoomEvent::Close(reason) => {
                    close_all(&peers, reason);
                    rx.close();
                    refuse_joins(batched.chain(std::iter::from_fn(|| rx.try_recv())), reason);
                    return;
                }
                RoomEvent::CompactIfIdle { idle_for } => idle = doc.last_write.elapsed() >= idle_for,
                RoomEvent::Remote(remote) => match *remote {
                    Remote::Updates { doc_id, first, last, updates } if doc_id == doc.doc_id.as_str() => {
                        match receive_updates(doc, first, last, updates) {
                            Ok(effects) => batch.push((None, effects)),
                            Err(err) => {
                                tracing::error!(doc = %key.name, error = %err, "another node's stored update does not apply");
                                poisoned = true;
                            }
                        }
                    }
                    // A document deleted and created again under the same name: not this one.
                    Remote::Updates { .. } => {}
                    Remote::Awareness { node, conn, frame } if frame.first() == Some(&MSG_AWARENESS) => {
                        // What the room says back to the sender stays here: the other node's
                        // room already told its connections.
                        if let Ok(effects) = doc.room.receive(conn, &frame, now) {
                            remote_conns.entry(node).or_default().insert(conn);
                            batch.push((None, Effects { broadcast: effects.broadcast, ..Effects::default() }));
                        }
                    }
                    Remote::Awareness { .. } => {}
                    Remote::AwarenessQuery => {
                        if let Ok(effects) = doc.room.receive(NO_CONN, QUERY_AWARENESS, now) {
                            awareness.extend(effects.reply.iter().map(|frame| (NO_CONN, frame.to_vec())));
                        }
                    }
                    // Sent as from no connection, so every Hocuspocus connection here gets it.
                    Remote::Stateless(body) => stateless.push((NO_CONN, body)),
                    Remote::CatchUp => doc.behind = true,
                    Remote::Deleted(reason) => {
                        doc.gone = Some(reason);
                        doc.behind = true;
                    }
                    // Relayed to this node's connections only: every node judges the death itself.
                    Remote::NodeGone(node) => {
                        for conn in remote_conns.remove(&node).unwrap_or_default() {
                            let effects = doc.room.disconnect(conn, now);
                            batch.push((None, Effects { broadcast: effects.broadcast, ..Effects::default() }));
                        }
                    }
                },
            }
        }
        for (conn, frame) in awareness {
            hub.bus.publish(&Message::Awareness { doc: doc.bus_ref.clone(), conn, frame });
        }
        if let Err(failed) = Box::pin(persist(hub, key, doc, &mut batch)).await {
            // Gone: deleted through another node (this node's deletes close the room first).
            let gone = matches!(failed, AppendFailed::Gone);
            for (done, _) in acks {
                let _ = done.send(Err(if gone { ApplyError::Deleted } else { ApplyError::Storage }));
            }
            let reason = if gone { Box::pin(why_gone(hub, key, doc.gone)).await } else { CloseReason::StorageFailed };
            end(&peers, rx, reason);
            return;
        }
        dispatch(&peers, batch);
        relay_stateless(&peers, stateless);
        // A bus message that found the queue full was dropped (`hub::tell`): read what it held.
        if missed.swap(false, Ordering::AcqRel) {
            doc.behind = true;
        }
        if doc.behind && !poisoned {
            match Box::pin(catch_up(hub, doc, &peers)).await {
                Caught::Up => {}
                Caught::Corrupt => poisoned = true,
                Caught::Gone => {
                    for (done, _) in acks {
                        let _ = done.send(Err(ApplyError::Deleted));
                    }
                    end(&peers, rx, Box::pin(why_gone(hub, key, doc.gone)).await);
                    return;
                }
            }
        }
        for (done, changed) in acks {
            let _ = done.send(Ok(Applied { changed, seq: doc.last_seq }));
        }
        Box::pin(take_version(hub, doc, false, None)).await;
        if poisoned {
            // The updates applied before the poisoning frame were whole and are now stored; the
            // document in memory may not be. Everyone reconnects to a copy loaded from storage.
            tracing::warn!(doc = %key.name, "document poisoned by a refused update; reloading it from storage");
            close_all(&peers, CloseReason::Reloading);
            return;
        }
        // An idle document, or one being closed, is compacted whatever its size: the next load
        // then reads one snapshot instead of replaying every update.
        let closing = peers.is_empty();
        if doc.pending_bytes > hub.settings.compact_bytes || ((idle || closing) && doc.pending_bytes > 0) {
            Box::pin(compact(hub, doc)).await;
        }
        // An idle document, once compacted, hibernates: its connections stay, but the room keeps
        // the document encoded until an event needs it (see `concord_core::yjs::room`), which
        // for a real document is a fraction of yrs's in-memory size. A room that may lack updates
        // stays awake, so that it catches up on them.
        if idle && !doc.behind && doc.pending_bytes == 0 && !doc.room.is_hibernating() && doc.room.hibernate() {
            metrics::counter!("concord_yjs_hibernations_total").increment(1);
        }
        if closing && hub.unload_if_idle(key, generation, rx) {
            return;
        }
    }
}

/// How a room whose document is gone closes its connections: as the delete that other node
/// announced, or, when the room found it gone before hearing why (an append racing the bus),
/// as the database tells: the workspace too is gone, or only the document.
async fn why_gone(hub: &Hub, key: &DocKey, heard: Option<CloseReason>) -> CloseReason {
    if let Some(reason) = heard {
        return reason;
    }
    match hub.store.workspace_by_id(&key.workspace_id).await {
        Ok(None) => CloseReason::WorkspaceDeleted,
        _ => CloseReason::DocumentDeleted,
    }
}

/// The sweep timer for `due` (unix seconds, see [`Room::next_sweep`]), reusing `timer`; none
/// when nothing is due. A timer already set to fire sooner is kept: re-armed at every batch, a
/// room busier than one batch per [`SWEEP_AT_LEAST`] would push a due sweep back for ever and
/// keep a crashed client's cursor; firing early (a state was renewed since) only sweeps nothing.
fn arm_sweep(timer: Option<Pin<Box<Sleep>>>, due: Option<i64>, now: i64) -> Option<Pin<Box<Sleep>>> {
    let wait = Duration::from_secs(u64::try_from(due? - now).unwrap_or(0)).max(SWEEP_AT_LEAST);
    let at = tokio::time::Instant::now() + wait;
    Some(match timer {
        Some(timer) if timer.deadline() <= at => timer,
        Some(mut timer) => {
            timer.as_mut().reset(at);
            timer
        }
        None => Box::pin(tokio::time::sleep_until(at)),
    })
}

/// The awareness frames among what the room broadcasts, copied for the bus (they are small).
fn awareness_of(effects: &Effects) -> impl Iterator<Item = Vec<u8>> + '_ {
    effects.broadcast.iter().filter(|frame| frame.first() == Some(&MSG_AWARENESS)).map(|frame| frame.to_vec())
}

/// Another node's committed updates `first..=last`: applied and relayed (not stored: they are)
/// when they continue what the room holds and came with their bytes; otherwise the room is
/// behind and catches up from the database after this batch. Ones it holds already change
/// nothing, so a message that arrives twice, or after the catch-up that covered it, is harmless.
fn receive_updates(
    doc: &mut Loaded,
    first: i64,
    last: i64,
    updates: Option<Vec<Vec<u8>>>,
) -> Result<Effects, concord_core::yjs::ProtocolError> {
    let mut relayed = Effects::default();
    if last <= doc.last_seq {
        return Ok(relayed);
    }
    match updates {
        Some(updates) if first == doc.last_seq + 1 && !doc.behind => {
            for update in updates {
                relayed.broadcast.extend(doc.room.apply_update(&update)?.broadcast);
            }
            // Not counted in `pending_bytes`, nor as a change for history: the committing
            // node's room compacts for them and takes the versions.
            doc.last_seq = last;
        }
        _ => doc.behind = true,
    }
    Ok(relayed)
}

/// How a catch-up ended.
enum Caught {
    /// The room holds everything through the head (or the read failed: it stays behind and
    /// tries again after the next batch).
    Up,
    /// The stored state does not apply: the room must reload.
    Corrupt,
    /// The document was deleted (through another node: this node's deletes close the room
    /// before they run).
    Gone,
}

/// Reads what the room lacks after `last_seq` from the database, applies it, relays it to the
/// connections, and so holds everything through the head again (compaction may resume).
async fn catch_up(hub: &Hub, doc: &mut Loaded, peers: &HashMap<ConnId, Peer>) -> Caught {
    let tail = match hub.store.doc_updates_after(&doc.doc_id, doc.last_seq).await {
        Ok(Some(tail)) => tail,
        Ok(None) => return Caught::Gone,
        Err(err) => {
            tracing::warn!(doc_id = %doc.doc_id, error = %err, "catching up from the database failed");
            return Caught::Up;
        }
    };
    let mut relayed = Effects::default();
    for update in tail.snapshot.iter().chain(&tail.updates) {
        match doc.room.apply_update(update) {
            Ok(effects) => relayed.broadcast.extend(effects.broadcast),
            Err(err) => {
                tracing::error!(doc_id = %doc.doc_id, error = %err, "a stored update does not apply");
                return Caught::Corrupt;
            }
        }
    }
    metrics::counter!("concord_yjs_catch_ups_total").increment(1);
    doc.last_seq = doc.last_seq.max(tail.last_seq);
    doc.behind = false;
    dispatch(peers, vec![(None, relayed)]);
    Caught::Up
}

/// What a change from no connection does to the room.
fn apply(room: &mut Room, change: Change) -> Result<Effects, ApplyError> {
    match change {
        Change::Update(update) => room.apply_update(&update).map_err(ApplyError::Invalid),
        Change::Restore(version) => {
            let current = room.encode_state().map_err(ApplyError::Invalid)?;
            let update = history::restore_update(&current, &version).map_err(|e| ApplyError::Corrupt(e.to_string()))?;
            room.apply_update(&update).map_err(ApplyError::Invalid)
        }
    }
}

/// Takes an automatic version if one is due (see [`history::version_due`]); `state` is the
/// document's whole state when the caller has it already (compaction). A failure is logged and
/// tried again at the next batch: history never holds up sync.
async fn take_version(hub: &Hub, doc: &mut Loaded, compacting: bool, state: Option<&[u8]>) {
    let now = clock::now();
    let interval = hub.settings.history_interval_secs;
    if !history::version_due(doc.last_version_at, doc.changed_since_version, compacting, now, interval) {
        return;
    }
    let encoded;
    let state = match state {
        Some(state) => state,
        None => match doc.room.encode_state() {
            Ok(state) => {
                encoded = state;
                &encoded
            }
            Err(_) => return,
        },
    };
    match hub.store.add_version(&doc.doc_id, state, None, now, hub.settings.history_retention).await {
        Ok(_) => {
            doc.last_version_at = Some(now);
            doc.changed_since_version = false;
            metrics::counter!("concord_history_versions_total").increment(1);
        }
        Err(err) => tracing::error!(doc_id = %doc.doc_id, error = %err, "taking a version failed"),
    }
}

/// Appends every update of the batch in one group commit. On an error nothing of the batch may
/// be sent.
async fn persist(
    hub: &Hub,
    key: &DocKey,
    doc: &mut Loaded,
    batch: &mut [(Option<ConnId>, Effects)],
) -> Result<(), AppendFailed> {
    let at = clock::now();
    let updates: Vec<NewDocUpdate> = batch
        .iter_mut()
        .flat_map(|(_, effects)| std::mem::take(&mut effects.persist))
        .map(|data| NewDocUpdate { doc_id: doc.doc_id.clone(), data, at })
        .collect();
    if updates.is_empty() {
        return Ok(());
    }
    let bytes: usize = updates.iter().map(|u| u.data.len()).sum();
    let count = updates.len() as u64;
    // Copied only when a bus will carry them: a commit is announced with its bytes up to the bound.
    let carried =
        (hub.bus.enabled() && bytes <= BUS_UPDATE_BYTES).then(|| updates.iter().map(|u| u.data.clone()).collect());
    match hub.writer.append(updates).await {
        Ok(seqs) => {
            if let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) {
                hub.bus.publish(&Message::DocUpdates { doc: doc.bus_ref.clone(), first, last, updates: carried });
            }
            doc.last_write = Instant::now();
            metrics::counter!("concord_yjs_updates_persisted_total").increment(count);
            metrics::counter!("concord_yjs_persisted_bytes_total").increment(bytes as u64);
            // Past a gap the room lacks another node's update: `last_seq` stays where this room
            // holds everything (a snapshot through a later seq would delete what it lacks), and
            // the room stops compacting until it has caught up (after this batch).
            if seqs.first() == Some(&(doc.last_seq + 1)) {
                doc.last_seq = seqs.last().copied().unwrap_or(doc.last_seq);
            } else {
                doc.behind = true;
            }
            doc.pending_bytes += bytes;
            doc.changed_since_version = true;
            hub.webhooks.document_updated(key, seqs.last().copied().unwrap_or(doc.last_seq));
            Ok(())
        }
        Err(failed) => Err(failed),
    }
}

/// Sends each frame, encoded once and shared (`Bytes` clones are reference counts). The relay
/// counter is bumped once per batch: a metric lookup per delivery was a measurable share of a
/// large room's fan-out.
fn dispatch(peers: &HashMap<ConnId, Peer>, batch: Vec<(Option<ConnId>, Effects)>) {
    let mut relayed = 0u64;
    for (sender, effects) in batch {
        if let Some(peer) = sender.and_then(|conn| peers.get(&conn)) {
            for frame in effects.reply {
                peer.send(&frame);
            }
        }
        for frame in effects.broadcast {
            for (_, peer) in peers.iter().filter(|(conn, _)| Some(**conn) != sender) {
                peer.send(&frame);
                relayed += 1;
            }
        }
    }
    metrics::counter!("concord_yjs_frames_relayed_total").increment(relayed);
}

/// Stateless messages go to the other Hocuspocus connections only: y-websocket clients know no
/// such message.
fn relay_stateless(peers: &HashMap<ConnId, Peer>, messages: Vec<(ConnId, Bytes)>) {
    for (sender, body) in messages {
        let receivers = peers.iter().filter(|(conn, peer)| **conn != sender && peer.protocol == Protocol::Hocuspocus);
        let mut relayed = 0u64;
        for (_, peer) in receivers {
            peer.send(&body);
            relayed += 1;
        }
        metrics::counter!("concord_yjs_frames_relayed_total").increment(relayed);
    }
}

async fn compact(hub: &Hub, doc: &mut Loaded) {
    if doc.behind {
        return;
    }
    let snapshot = match doc.room.encode_state() {
        Ok(snapshot) => snapshot,
        // The stored updates stay as they are; the next SyncStep1 poisons the room the same way.
        Err(err) => {
            tracing::error!(doc_id = %doc.doc_id, error = %err, "compacting document failed");
            return;
        }
    };
    match hub.store.compact_doc(&doc.doc_id, &snapshot, doc.last_seq).await {
        // Not applied means a later compaction already covers it; either way nothing is pending.
        Ok(_) => {
            doc.pending_bytes = 0;
            metrics::counter!("concord_yjs_compactions_total").increment(1);
            take_version(hub, doc, true, Some(&snapshot)).await;
        }
        // The updates stay stored; the next batch tries again.
        Err(err) => tracing::error!(doc_id = %doc.doc_id, error = %err, "compacting document failed"),
    }
}

/// Joins queued behind a close hear its reason instead of finding the queue closed unanswered,
/// which would have them retry with a fresh room: one that could recreate a document being
/// deleted. (Joins sent after the queue closes fail at once and ask the hub, which refuses them
/// while the delete runs.)
fn refuse_joins(events: impl Iterator<Item = RoomEvent>, reason: CloseReason) {
    for event in events {
        if let RoomEvent::Join { peer, .. } = event {
            peer.closer.close(reason);
        }
    }
}

/// Closes every connection and stops taking events, refusing joins already queued with the same
/// reason (a join retried in a fresh room would recreate a deleted document).
fn end(peers: &HashMap<ConnId, Peer>, rx: &mut queue::Receiver<RoomEvent>, reason: CloseReason) {
    close_all(peers, reason);
    rx.close();
    refuse_joins(std::iter::from_fn(|| rx.try_recv()), reason);
}

fn close_all(peers: &HashMap<ConnId, Peer>, reason: CloseReason) {
    for peer in peers.values() {
        peer.closer.close(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy room re-arms its sweep at every batch: a sweep already due must not move later, or
    /// it never fires while events keep coming; one due sooner moves the timer earlier.
    #[tokio::test]
    async fn a_due_sweep_is_not_pushed_back_by_later_batches() {
        let now = clock::now();
        let due = arm_sweep(None, Some(now), now).expect("armed");
        let deadline = due.deadline();
        let again = arm_sweep(Some(due), Some(now), now).expect("armed");
        assert_eq!(again.deadline(), deadline, "kept, not pushed back");

        let later = arm_sweep(None, Some(now + 20), now).expect("armed");
        let sooner = arm_sweep(Some(later), Some(now + 5), now).expect("armed");
        assert!(sooner.deadline() < tokio::time::Instant::now() + Duration::from_secs(6), "moved earlier");
        assert!(arm_sweep(Some(sooner), None, now).is_none(), "nothing held, no timer");
    }
}
