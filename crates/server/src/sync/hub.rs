//! The registry of open documents and connections: finds or starts a document's room task,
//! unloads idle rooms without losing a joining connection, and closes the sockets of credentials
//! that stopped being valid: at once for device revocations (logout, device deletion, password
//! reset) announced by the accounts module, and within half a second for anything else the
//! database says (a blocked user, an expired session, a missed announcement).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_core::token::TokenHash;
use concord_store::Store;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::room::{self, RoomEvent};
use super::socket::{CloseReason, Closer};
use super::writer::Writer;
use crate::accounts::RevokedDevice;
use crate::app::LiveStats;
use crate::clock;
use crate::config::SyncSettings;

/// Events queued per room before connections wait; backpressure for clients that write fast.
const ROOM_QUEUE: usize = 1024;
/// How often open sockets' tokens are checked again; revocation closes them within this time.
const REVALIDATE_INTERVAL: Duration = Duration::from_millis(500);

/// A document's identity: its workspace (which belongs to one user) and its full name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocKey {
    pub workspace_id: String,
    pub name: String,
}

struct RoomEntry {
    /// Tells this room's task from a later one for the same document.
    generation: u64,
    tx: mpsc::Sender<RoomEvent>,
}

struct ConnEntry {
    token: TokenHash,
    device_id: String,
    closer: Arc<Closer>,
}

pub struct Hub {
    pub(super) store: Arc<dyn Store>,
    pub(super) stats: Arc<LiveStats>,
    pub(super) settings: SyncSettings,
    pub(super) writer: Writer,
    /// Locked only for map operations, never across an await.
    rooms: Mutex<HashMap<DocKey, RoomEntry>>,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    /// Source of connection ids and room generations.
    next_id: AtomicU64,
}

impl Hub {
    /// Creates the hub and starts its writer and credential watcher (which stops at `shutdown`).
    pub fn start(
        store: Arc<dyn Store>,
        stats: Arc<LiveStats>,
        settings: SyncSettings,
        revocations: broadcast::Receiver<RevokedDevice>,
        shutdown: CancellationToken,
    ) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            writer: Writer::spawn(store.clone()),
            store,
            stats,
            settings,
            rooms: Mutex::default(),
            conns: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(watch_credentials(Arc::downgrade(&hub), revocations, shutdown));
        hub
    }

    /// The queue of the document's room, starting the room if it is not running.
    pub(super) fn room(self: &Arc<Self>, key: &DocKey) -> mpsc::Sender<RoomEvent> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = rooms.get(key).filter(|e| !e.tx.is_closed()) {
            return entry.tx.clone();
        }
        let generation = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        rooms.insert(key.clone(), RoomEntry { generation, tx: tx.clone() });
        tokio::spawn(room::run(self.clone(), key.clone(), generation, rx));
        tx
    }

    /// Removes the room if nothing is queued for it. Returns whether it was removed; a connection
    /// that took the room's queue just before sees its join fail and asks again.
    pub(super) fn unload_if_idle(&self, key: &DocKey, generation: u64, rx: &mpsc::Receiver<RoomEvent>) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if !rx.is_empty() {
            return false;
        }
        if rooms.get(key).is_some_and(|e| e.generation == generation) {
            rooms.remove(key);
        }
        true
    }

    pub(super) fn forget_room(&self, key: &DocKey, generation: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(key).is_some_and(|e| e.generation == generation) {
            rooms.remove(key);
        }
    }

    /// Closes every open document of a deleted workspace.
    pub async fn close_workspace(&self, workspace_id: &str) {
        let queues: Vec<mpsc::Sender<RoomEvent>> = {
            let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
            rooms.iter().filter(|(key, _)| key.workspace_id == workspace_id).map(|(_, e)| e.tx.clone()).collect()
        };
        for queue in queues {
            // An error means the room has already stopped.
            let _ = queue.send(RoomEvent::Close).await;
        }
    }

    pub(super) fn register(&self, token: TokenHash, device_id: String, closer: Arc<Closer>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, ConnEntry { token, device_id, closer });
        id
    }

    fn close_device(&self, device_id: &str) {
        for entry in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if entry.device_id == device_id {
                entry.closer.close(CloseReason::Revoked);
            }
        }
    }

    pub(super) fn unregister(&self, conn: u64) {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn);
    }

    /// Closes the sockets whose token no longer authenticates, or whose device was revoked or
    /// user blocked since they connected.
    async fn revalidate(&self) {
        let mut by_token: HashMap<TokenHash, Vec<Arc<Closer>>> = HashMap::new();
        for entry in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            by_token.entry(entry.token).or_default().push(entry.closer.clone());
        }
        let now = clock::now();
        for (token, closers) in by_token {
            let valid = match self.store.authenticate(&token, now).await {
                Ok(found) => found.is_some_and(|p| p.device.revoked_at.is_none() && !p.user.blocked),
                Err(err) => {
                    tracing::warn!(error = %err, "re-checking a WebSocket token failed");
                    continue;
                }
            };
            if !valid {
                closers.iter().for_each(|c| c.close(CloseReason::Revoked));
            }
        }
    }
}

async fn watch_credentials(
    hub: std::sync::Weak<Hub>,
    mut revocations: broadcast::Receiver<RevokedDevice>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(REVALIDATE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced = true;
    loop {
        let revoked = tokio::select! {
            _ = tick.tick() => None,
            notice = revocations.recv(), if announced => match notice {
                Ok(notice) => Some(notice),
                // Missed notices are caught by the next database check.
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => {
                    announced = false;
                    None
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Some(hub) = hub.upgrade() else { return };
        match revoked {
            Some(notice) => hub.close_device(&notice.device_id),
            None => hub.revalidate().await,
        }
    }
}
