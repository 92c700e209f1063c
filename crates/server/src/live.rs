//! Long-lived connections (Yjs WebSockets and operation-log event streams): how many one user may
//! hold open, and the one watcher that ends them when their credentials end.
//!
//! Every such connection holds a [`Lease`] for as long as it is open. The watcher ends leases at
//! once when the accounts module announces a revoked device (logout, device deletion, password
//! reset), and re-checks blocking and expiry, which have no announcement, with one database query
//! per interval for all open connections together: a thousand idle streams of one token cost what
//! one costs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use concord_core::token::TokenHash;
use concord_store::{Principal, Store};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::accounts::RevokedDevice;
use crate::clock;

/// How often open connections' credentials are checked again; a blocked user's or an expired
/// token's connections end within this time.
const RECHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The kinds of long-lived connection, each with its own per-user cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    WebSocket,
    EventStream,
}

/// How many connections of each kind one user may hold open.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub websockets: usize,
    pub event_streams: usize,
}

impl Kind {
    /// The gauge of open connections of this kind.
    fn gauge(self) -> metrics::Gauge {
        match self {
            Kind::WebSocket => metrics::gauge!("concord_websockets_open"),
            Kind::EventStream => metrics::gauge!("concord_event_streams_open"),
        }
    }
}

impl Caps {
    fn of(&self, kind: Kind) -> usize {
        match kind {
            Kind::WebSocket => self.websockets,
            Kind::EventStream => self.event_streams,
        }
    }
}

/// The user already holds `limit` connections of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("at most {limit} open at once")]
pub struct OverCap {
    pub limit: usize,
}

struct Entry {
    user_id: String,
    device_id: String,
    token: TokenHash,
    kind: Kind,
    ended: CancellationToken,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    /// Open connections per (user, kind); kept with `entries` under one lock, so a cap cannot
    /// be passed by connections opening at the same moment.
    per_user: HashMap<(String, Kind), usize>,
}

pub struct Live {
    store: Arc<dyn Store>,
    caps: Caps,
    /// Locked only for map operations, never across an await.
    registry: Mutex<Registry>,
}

/// One open connection's place in the registry; dropping it frees the place.
pub struct Lease {
    live: Arc<Live>,
    id: u64,
    ended: CancellationToken,
}

impl Lease {
    /// Cancelled when the connection's credentials stop being valid; the connection must end.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut registry = self.live.lock();
        if let Some(entry) = registry.entries.remove(&self.id) {
            entry.kind.gauge().decrement(1.0);
            let key = (entry.user_id, entry.kind);
            if let Some(count) = registry.per_user.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    registry.per_user.remove(&key);
                }
            }
        }
    }
}

impl Live {
    /// Creates the registry and starts its watcher, which stops at `shutdown`.
    pub fn start(
        store: Arc<dyn Store>,
        caps: Caps,
        revocations: broadcast::Receiver<RevokedDevice>,
        shutdown: CancellationToken,
    ) -> Arc<Live> {
        let live = Arc::new(Live { store, caps, registry: Mutex::default() });
        tokio::spawn(watch(Arc::downgrade(&live), revocations, shutdown));
        live
    }

    /// Registers a connection of `principal` authenticated by `token`, unless the user already
    /// holds as many of this kind as the cap allows.
    pub fn open(self: &Arc<Self>, kind: Kind, principal: &Principal, token: TokenHash) -> Result<Lease, OverCap> {
        let limit = self.caps.of(kind);
        let mut registry = self.lock();
        let count = registry.per_user.entry((principal.user.id.clone(), kind)).or_default();
        if *count >= limit {
            return Err(OverCap { limit });
        }
        *count += 1;
        registry.next_id += 1;
        let id = registry.next_id;
        let ended = CancellationToken::new();
        let entry = Entry {
            user_id: principal.user.id.clone(),
            device_id: principal.device.id.clone(),
            token,
            kind,
            ended: ended.clone(),
        };
        registry.entries.insert(id, entry);
        kind.gauge().increment(1.0);
        Ok(Lease { live: self.clone(), id, ended })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn end_device(&self, device_id: &str) {
        self.lock().entries.values().filter(|e| e.device_id == device_id).for_each(|e| e.ended.cancel());
    }

    /// Ends the connections whose token no longer authenticates a live device of an unblocked
    /// user: one query for every distinct token open.
    async fn recheck(&self) {
        let tokens: Vec<TokenHash> = {
            let registry = self.lock();
            let distinct: HashSet<TokenHash> = registry.entries.values().map(|e| e.token).collect();
            distinct.into_iter().collect()
        };
        if tokens.is_empty() {
            return;
        }
        let valid: HashSet<TokenHash> = match self.store.still_valid(&tokens, clock::now()).await {
            Ok(valid) => valid.into_iter().collect(),
            // A database error is not proof of revocation; the next interval asks again.
            Err(err) => {
                tracing::warn!(error = %err, "re-checking open connections' tokens failed");
                return;
            }
        };
        self.lock().entries.values().filter(|e| !valid.contains(&e.token)).for_each(|e| e.ended.cancel());
    }
}

async fn watch(live: Weak<Live>, mut revocations: broadcast::Receiver<RevokedDevice>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(RECHECK_INTERVAL);
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
        let Some(live) = live.upgrade() else { return };
        match revoked {
            Some(notice) => live.end_device(&notice.device_id),
            None => live.recheck().await,
        }
    }
}
