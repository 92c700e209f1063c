//! The registry of open documents: finds or starts a document's room task, and unloads idle rooms
//! without losing a joining connection. (Which connections may stay open is `crate::live`'s.) It
//! also hands what the bus hears about a document to its room, if one is open here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_store::Store;
use tokio::sync::oneshot;

use super::queue;
use super::room::{self, Applied, ApplyError, Change, Remote, RoomEvent};
use super::socket::CloseReason;
use super::writer::Writer;
use crate::app::LiveStats;
use crate::bus::Fanout;
use crate::bus::codec::{Message, NodeId};
use crate::config::SyncSettings;

/// Events queued per room before connections wait; backpressure for clients that write fast.
const ROOM_QUEUE: usize = 1024;
/// Rooms asked in turn to apply one HTTP update: one may be unloading as the update arrives, and
/// the next is fresh, so a third attempt only fails if the document cannot be loaded at all.
const APPLY_ATTEMPTS: usize = 3;

/// A document's identity: its workspace (which belongs to one user) and its full name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocKey {
    pub workspace_id: String,
    pub name: String,
}

/// What a delete removes, which no room may hold open while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deleting {
    Doc(DocKey),
    /// Workspaces (a user's, when the user goes) with every document in them.
    Workspaces(Vec<String>),
}

impl Deleting {
    fn covers(&self, key: &DocKey) -> bool {
        match self {
            Deleting::Doc(doc) => doc == key,
            Deleting::Workspaces(ids) => ids.contains(&key.workspace_id),
        }
    }

    /// How the rooms it closes close their connections.
    fn reason(&self) -> CloseReason {
        match self {
            Deleting::Doc(_) => CloseReason::DocumentDeleted,
            Deleting::Workspaces(_) => CloseReason::WorkspaceDeleted,
        }
    }
}

#[derive(Default)]
struct Rooms {
    open: HashMap<DocKey, RoomEntry>,
    /// Deletes under way (one entry each; deletes are rare, so a list): no room starts for what
    /// they cover, so no connection that arrived before a delete recreates a document after it.
    deleting: Vec<Deleting>,
}

struct RoomEntry {
    /// Tells this room's task from a later one for the same document.
    generation: u64,
    tx: queue::Sender<RoomEvent>,
    /// Set when a bus event for the room found its queue full and was dropped ([`tell`]).
    missed: Arc<AtomicBool>,
}

/// What the bus's events reach a room through: its queue, and the flag that says one was dropped.
#[derive(Clone)]
struct RoomQueue {
    tx: queue::Sender<RoomEvent>,
    missed: Arc<AtomicBool>,
}

impl RoomEntry {
    fn queue(&self) -> RoomQueue {
        RoomQueue { tx: self.tx.clone(), missed: self.missed.clone() }
    }
}

pub struct Hub {
    pub(super) store: Arc<dyn Store>,
    pub(super) stats: Arc<LiveStats>,
    pub(super) settings: SyncSettings,
    pub(super) writer: Writer,
    /// Where rooms publish what other nodes' rooms of their documents must hear.
    pub(super) bus: Arc<Fanout>,
    /// Locked only for map operations, never across an await.
    rooms: Mutex<Rooms>,
    /// Source of connection ids and room generations.
    next_id: AtomicU64,
    /// Told of every commit, for `document.updated` webhooks; never waits.
    pub(super) webhooks: crate::webhooks::Notifier,
}

impl Hub {
    /// Creates the hub and starts its writer.
    pub fn start(
        store: Arc<dyn Store>,
        stats: Arc<LiveStats>,
        settings: SyncSettings,
        bus: Arc<Fanout>,
        webhooks: crate::webhooks::Notifier,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            writer: Writer::spawn(store.clone()),
            bus,
            store,
            stats,
            settings,
            rooms: Mutex::default(),
            next_id: AtomicU64::new(1),
            webhooks,
        })
    }

    /// The queue of the document's room, starting the room if it is not running; while the
    /// document (or its workspace) is being deleted, the close reason that delete gives.
    pub(super) fn room(self: &Arc<Self>, key: &DocKey) -> Result<queue::Sender<RoomEvent>, CloseReason> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(delete) = rooms.deleting.iter().find(|d| d.covers(key)) {
            return Err(delete.reason());
        }
        if let Some(entry) = rooms.open.get(key).filter(|e| !e.tx.is_closed()) {
            return Ok(entry.tx.clone());
        }
        let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = queue::channel(ROOM_QUEUE);
        let missed = Arc::new(AtomicBool::new(false));
        rooms.open.insert(key.clone(), RoomEntry { generation, tx: tx.clone(), missed: missed.clone() });
        tokio::spawn(room::run(self.clone(), key.clone(), generation, rx, missed));
        Ok(tx)
    }

    /// Removes the room if nothing is queued for it. Returns whether it was removed; a connection
    /// that took the room's queue just before sees its join fail and asks again.
    pub(super) fn unload_if_idle(&self, key: &DocKey, generation: u64, rx: &queue::Receiver<RoomEvent>) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if !rx.is_empty() {
            return false;
        }
        if rooms.open.get(key).is_some_and(|e| e.generation == generation) {
            rooms.open.remove(key);
        }
        true
    }

    pub(super) fn forget_room(&self, key: &DocKey, generation: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.open.get(key).is_some_and(|e| e.generation == generation) {
            rooms.open.remove(key);
        }
    }

    /// Applies a change from the HTTP API (an update, or a restore) through the document's room
    /// (starting it if needed), as a connection's update: stored in the room's group commit and
    /// relayed to its connections before this returns.
    pub(crate) async fn apply(self: &Arc<Self>, key: &DocKey, change: Change) -> Result<Applied, ApplyError> {
        for _ in 0..APPLY_ATTEMPTS {
            let (done, answer) = oneshot::channel();
            let room = self.room(key).map_err(|_| ApplyError::Deleted)?;
            if room.send(RoomEvent::Apply { change: Box::new(change.clone()), done }).await.is_err() {
                continue;
            }
            // A room that unloads (or fails to load) before taking the event drops it unanswered,
            // having applied nothing: ask a fresh room.
            if let Ok(answer) = answer.await {
                return answer;
            }
        }
        Err(ApplyError::Unavailable)
    }

    /// Runs `delete` (the store's delete of a document or of workspaces) with what it deletes
    /// closed: their open rooms close their connections (1000, "document deleted" or
    /// "workspace deleted") and stop before `delete` runs, and no room starts for them until
    /// `delete` is done. Without this, a connection that arrived just before the delete, whose
    /// room loads just after it, would recreate the document; and a room's append racing the
    /// delete would find its document gone and close with 1011. Afterwards the bus tells the
    /// other nodes, whose rooms of it then find it gone in the database and close the same way.
    pub(crate) async fn deleting<T>(&self, what: Deleting, delete: impl Future<Output = T>) -> T {
        let queues: Vec<queue::Sender<RoomEvent>> = {
            let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.deleting.push(what.clone());
            let covered: Vec<DocKey> = rooms.open.keys().filter(|key| what.covers(key)).cloned().collect();
            covered.iter().filter_map(|key| rooms.open.remove(key)).map(|e| e.tx).collect()
        };
        // Cleared however this ends, a cancelled request included.
        let _gate = DeleteGate { hub: self, what: &what };
        for queue in &queues {
            // An error means the room has already stopped.
            let _ = queue.send(RoomEvent::Close(what.reason())).await;
        }
        for queue in queues {
            // `closed` waits for the room to drop its queue: a load or a commit in flight is over
            // by then.
            queue.closed().await;
        }
        let deleted = delete.await;
        let announced: Vec<(String, Option<String>)> = match &what {
            Deleting::Doc(doc) => vec![(doc.workspace_id.clone(), Some(doc.name.clone()))],
            Deleting::Workspaces(ids) => ids.iter().map(|id| (id.clone(), None)).collect(),
        };
        for (workspace_id, name) in announced {
            self.bus.publish(&Message::Deleted { workspace_id, name });
        }
        deleted
    }

    /// Asks every open document to compact itself if nothing was written to it for `idle_for`
    /// (the maintenance job; closed documents compacted when they closed). Returns how many were
    /// asked. A room whose queue is full is busy, not idle, and is skipped.
    pub fn compact_idle(&self, idle_for: Duration) -> usize {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.open.values().filter(|e| e.tx.try_send(RoomEvent::CompactIfIdle { idle_for }).is_ok()).count()
    }

    /// Hands a document message from another node to the document's room, if it is open here (a
    /// document nobody here has open needs nothing: it loads from the database when opened).
    pub fn remote(&self, from: NodeId, message: Message) {
        let (doc, event) = match message {
            Message::DocUpdates { doc, first, last, updates } => {
                let event = Remote::Updates { doc_id: doc.doc_id.clone(), first, last, updates };
                (doc, event)
            }
            Message::Awareness { doc, conn, frame } => {
                (doc, Remote::Awareness { node: from, conn: room::remote_conn(from, conn), frame: frame.into() })
            }
            Message::AwarenessQuery { doc } => (doc, Remote::AwarenessQuery),
            Message::Stateless { doc, body } => (doc, Remote::Stateless(body.into())),
            Message::Deleted { workspace_id, name } => {
                self.deleted_elsewhere(&workspace_id, name.as_deref());
                return;
            }
            Message::Head { .. } | Message::DeviceRevoked { .. } | Message::CatchUp | Message::Heartbeat => return,
        };
        let key = DocKey { workspace_id: doc.workspace_id, name: doc.name };
        let queue = {
            let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.open.get(&key).map(RoomEntry::queue)
        };
        if let Some(queue) = queue {
            tell(queue, event);
        }
    }

    /// Another node deleted a document (or, without a name, a workspace): its rooms here check
    /// the database (the message is only a hint) and, finding the document gone, close their
    /// connections as the delete would have here.
    fn deleted_elsewhere(&self, workspace_id: &str, name: Option<&str>) {
        let reason = if name.is_some() { CloseReason::DocumentDeleted } else { CloseReason::WorkspaceDeleted };
        for queue in self.queues(|key| key.workspace_id == workspace_id && name.is_none_or(|name| key.name == name)) {
            tell(queue, Remote::Deleted(reason));
        }
    }

    /// Another node died (`bus::liveness`): every room drops the awareness of its connections.
    pub fn node_gone(&self, node: NodeId) {
        for queue in self.queues(|_| true) {
            tell(queue, Remote::NodeGone(node));
        }
    }

    /// Has every open room read what it lacks from the database (bus messages may be lost).
    pub fn catch_up_all(&self) {
        for queue in self.queues(|_| true) {
            tell(queue, Remote::CatchUp);
        }
    }

    /// The queues of the open rooms whose document `covers` selects, taken under the lock and
    /// used after it (sending may wait).
    fn queues(&self, covers: impl Fn(&DocKey) -> bool) -> Vec<RoomQueue> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.open.iter().filter(|(key, _)| covers(key)).map(|(_, e)| e.queue()).collect()
    }

    /// A fresh id for a connection.
    pub(super) fn connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Queues a bus event for a room without holding up the bus listener. A room whose queue is full
/// is busy, and what does not fit is not queued elsewhere (a task per event would grow without
/// bound under a flood): what the database holds (updates, a catch-up) sets the room's `missed`
/// flag, and the room reads what it lacks once it has worked through its queue; presence and
/// stateless messages, stored nowhere, are dropped as the bus may drop them (clients renew their
/// awareness); only the rare events a room must hear (a delete, a node's death) wait in a task.
/// Order does not matter: a room applies a message only when it continues what it holds, and
/// catches up otherwise.
fn tell(room: RoomQueue, event: Remote) {
    let event = match room.tx.try_send(RoomEvent::Remote(Box::new(event))) {
        Err(queue::TrySendError::Full(RoomEvent::Remote(event))) => *event,
        // Queued, or the room stopped and there is nobody left to tell.
        _ => return,
    };
    match event {
        Remote::Updates { .. } | Remote::CatchUp => room.missed.store(true, Ordering::Release),
        Remote::Awareness { .. } | Remote::AwarenessQuery | Remote::Stateless(_) => {
            metrics::counter!("concord_bus_received_dropped_total").increment(1);
        }
        owed @ (Remote::Deleted(_) | Remote::NodeGone(_)) => {
            tokio::spawn(async move {
                let _ = room.tx.send(RoomEvent::Remote(Box::new(owed))).await;
            });
        }
    }
}

/// Ends one delete of [`Hub::deleting`] when dropped.
struct DeleteGate<'a> {
    hub: &'a Hub,
    what: &'a Deleting,
}

impl Drop for DeleteGate<'_> {
    fn drop(&mut self) {
        let mut rooms = self.hub.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = rooms.deleting.iter().position(|d| d == self.what) {
            rooms.deleting.swap_remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(event: Option<RoomEvent>) -> Remote {
        match event {
            Some(RoomEvent::Remote(remote)) => *remote,
            _ => panic!("expected a bus event"),
        }
    }

    /// A busy room's full queue: updates set its `missed` flag instead of waiting anywhere,
    /// presence is dropped, and only an owed event (a node's death) waits to be delivered.
    #[tokio::test]
    async fn a_full_room_queue_holds_no_bus_event_it_can_do_without() {
        let (tx, mut rx) = queue::channel(1);
        let room = RoomQueue { tx, missed: Arc::new(AtomicBool::new(false)) };
        tell(room.clone(), Remote::CatchUp);
        assert!(!room.missed.load(Ordering::Acquire), "it fitted");
        tell(room.clone(), Remote::Updates { doc_id: "d".into(), first: 1, last: 1, updates: None });
        assert!(room.missed.load(Ordering::Acquire), "the room will read it from the database");
        tell(room.clone(), Remote::AwarenessQuery);
        tell(room.clone(), Remote::NodeGone(NodeId([1; 16])));

        assert!(matches!(taken(rx.recv().await), Remote::CatchUp));
        assert!(matches!(taken(rx.recv().await), Remote::NodeGone(_)), "the owed event, once there was room");
        drop(room);
        assert!(rx.recv().await.is_none(), "nothing else was queued or is waiting");
    }
}
