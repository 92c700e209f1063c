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
use concord_store::{Principal, ShareRecord, Store};
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

/// What a connection's token authenticates, and so what ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    /// A device of the user: revoked through the accounts feed, checked with `still_valid`.
    Device(String),
    /// A share (its id): revoked through [`Live::end_share`], checked with `live_share_tokens`.
    Share(String),
}

struct Entry {
    /// The user the connection counts against: the device's, or the share's owner.
    user_id: String,
    holder: Holder,
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
        self.insert(kind, &principal.user.id, Holder::Device(principal.device.id.clone()), token)
    }

    /// Registers a connection opened with a share's token. It counts against the owner's cap,
    /// so handing out a link cannot open more connections than the owner may.
    pub fn open_share(self: &Arc<Self>, kind: Kind, share: &ShareRecord, token: TokenHash) -> Result<Lease, OverCap> {
        self.insert(kind, &share.user_id, Holder::Share(share.id.clone()), token)
    }

    /// Ends every connection opened with the share, at once (it was revoked).
    pub fn end_share(&self, share_id: &str) {
        let holder = Holder::Share(share_id.to_owned());
        self.lock().entries.values().filter(|e| e.holder == holder).for_each(|e| e.ended.cancel());
    }

    fn insert(self: &Arc<Self>, kind: Kind, user_id: &str, holder: Holder, token: TokenHash) -> Result<Lease, OverCap> {
        let limit = self.caps.of(kind);
        let mut registry = self.lock();
        let count = registry.per_user.entry((user_id.to_owned(), kind)).or_default();
        if *count >= limit {
            return Err(OverCap { limit });
        }
        *count += 1;
        registry.next_id += 1;
        let id = registry.next_id;
        let ended = CancellationToken::new();
        let entry = Entry { user_id: user_id.to_owned(), holder, token, kind, ended: ended.clone() };
        registry.entries.insert(id, entry);
        kind.gauge().increment(1.0);
        Ok(Lease { live: self.clone(), id, ended })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every connection of the device, at once (its revocation was announced here or on
    /// the bus).
    pub(crate) fn end_device(&self, device_id: &str) {
        let holder = Holder::Device(device_id.to_owned());
        self.lock().entries.values().filter(|e| e.holder == holder).for_each(|e| e.ended.cancel());
    }

    /// Ends the connections whose token no longer authenticates a live device of an unblocked
    /// user, or a live share: one query for every distinct device token open, one for shares.
    async fn recheck(&self) {
        let open = self.open_tokens();
        if open.devices.is_empty() && open.shares.is_empty() {
            return;
        }
        match self.still_valid(&open).await {
            Ok(valid) => self.end_invalid(&open, &valid),
            // A database error is not proof of revocation; the next interval asks again.
            Err(err) => tracing::warn!(error = %err, "re-checking open connections' tokens failed"),
        }
    }

    /// The distinct tokens of the connections open now, split by what checks them.
    fn open_tokens(&self) -> OpenTokens {
        let registry = self.lock();
        let distinct: HashSet<(TokenHash, bool)> =
            registry.entries.values().map(|e| (e.token, matches!(e.holder, Holder::Share(_)))).collect();
        let (shares, devices): (Vec<_>, Vec<_>) = distinct.into_iter().partition(|(_, share)| *share);
        OpenTokens {
            devices: devices.into_iter().map(|(t, _)| t).collect(),
            shares: shares.into_iter().map(|(t, _)| t).collect(),
        }
    }

    /// Which of `open`'s tokens still authenticate, as the database says now.
    async fn still_valid(&self, open: &OpenTokens) -> Result<HashSet<TokenHash>, concord_store::StoreError> {
        let now = clock::now();
        let mut valid =
            if open.devices.is_empty() { Vec::new() } else { self.store.still_valid(&open.devices, now).await? };
        if !open.shares.is_empty() {
            valid.extend(self.store.live_share_tokens(&open.shares, now).await?);
        }
        Ok(valid.into_iter().collect())
    }

    /// Ends the connections whose token was checked and found invalid. A connection opened while
    /// the query ran was not in it, so it stays: its token was authenticated as it opened, and
    /// the next interval checks it.
    fn end_invalid(&self, checked: &OpenTokens, valid: &HashSet<TokenHash>) {
        let checked: HashSet<&TokenHash> = checked.devices.iter().chain(&checked.shares).collect();
        self.lock()
            .entries
            .values()
            .filter(|e| checked.contains(&e.token) && !valid.contains(&e.token))
            .for_each(|e| e.ended.cancel());
    }
}

/// The tokens one re-check asks the database about.
struct OpenTokens {
    devices: Vec<TokenHash>,
    shares: Vec<TokenHash>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The race the mixed-load run found: a connection that opens while the re-check's query
    /// runs is not in that query, and must not be ended for being missing from its answer.
    #[tokio::test]
    async fn a_connection_opened_during_a_recheck_is_not_ended_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = concord_store::sqlite::SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let caps = Caps { websockets: 8, event_streams: 8 };
        let live = Arc::new(Live { store: Arc::new(store), caps, registry: Mutex::default() });
        let unknown = |name: &str| TokenHash::of(name);
        let stale = live.insert(Kind::EventStream, "u", Holder::Device("d1".into()), unknown("stale")).unwrap();
        let share = live.insert(Kind::WebSocket, "u", Holder::Share("s1".into()), unknown("share")).unwrap();

        let open = live.open_tokens();
        let valid = live.still_valid(&open).await.unwrap();
        // Opened after the snapshot, before the answer is applied.
        let fresh = live.insert(Kind::EventStream, "u", Holder::Device("d2".into()), unknown("fresh")).unwrap();
        live.end_invalid(&open, &valid);

        assert!(valid.is_empty(), "no such tokens in the database");
        assert!(stale.ended().is_cancelled() && share.ended().is_cancelled(), "checked and invalid: ended");
        assert!(!fresh.ended().is_cancelled(), "not checked yet: left to the next interval");
        live.end_invalid(&live.open_tokens(), &valid);
        assert!(fresh.ended().is_cancelled(), "the next check ends it");
    }
}
