//! Awareness (presence) states of a document's clients, with the y-protocols merge rules.
//!
//! yrs has an `Awareness` type, but it reads its own clock and owns the document; the server needs
//! time passed in (`now`) and must know which connection asserted which client ids so it can remove
//! them when that connection drops. The rules below are those of y-protocols' `awareness.js`
//! (`applyAwarenessUpdate`, `removeAwarenessStates`, the outdated-state check), so clients see the
//! server behave exactly like a JavaScript peer.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::wire::{AwarenessEntry, encode_awareness};

/// A state not renewed for this long is dropped (y-protocols' `outdatedTimeout`); clients renew
/// theirs every 15 s.
pub const AWARENESS_TIMEOUT_SECS: i64 = 30;

/// Limits on what clients can make a room remember. A y-protocols client asserts one client id
/// (its document's) with a state of a name, a colour and a cursor: tens to hundreds of bytes.
/// Without limits one frame could make the server keep a million states, or tombstones of client
/// ids it never saw. With them, one connection can hold at most
/// `MAX_STATES_PER_CONNECTION * MAX_STATE_BYTES` (128 KiB) of states, and a room at most
/// `MAX_CLIENTS_PER_ROOM` entries.
///
/// Client ids one connection may hold a live state for at once; more than a client reconnecting
/// with a reloaded document (a new id beside its old one) ever needs.
pub const MAX_STATES_PER_CONNECTION: usize = 8;
/// Largest state kept, in bytes of JSON; larger ones are ignored (not stored, not relayed).
pub const MAX_STATE_BYTES: usize = 16 * 1024;
/// Client ids a room remembers, live or removed: far above the people who edit one document
/// together. When it is full, the oldest removed entry makes room for a new client; when every
/// entry is live, new clients' states are ignored until one leaves or expires.
pub const MAX_CLIENTS_PER_ROOM: usize = 1024;

#[derive(Debug)]
struct Meta {
    /// The latest clock seen for the client; kept after removal so older messages stay ignored.
    clock: u32,
    /// `None` once the client is gone.
    state: Option<Arc<str>>,
    last_updated: i64,
}

/// What applying an update changed, by client id.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Clients whose state was set (added or renewed).
    pub set: Vec<u64>,
    pub removed: Vec<u64>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }

    pub fn all(&self) -> Vec<u64> {
        self.set.iter().chain(&self.removed).copied().collect()
    }
}

#[derive(Debug, Default)]
pub(crate) struct AwarenessTable {
    clients: HashMap<u64, Meta>,
}

impl AwarenessTable {
    /// Applies entries from a connection that currently asserts `asserted`: an entry wins when
    /// its clock is newer, or when it is a removal (`null`) at the same clock of a live state.
    /// Within the limits above: removals of clients never seen are not stored (there is nothing to
    /// remove), and states over the size, per-connection or per-room limits are ignored.
    pub fn apply(&mut self, entries: Vec<AwarenessEntry>, asserted: &BTreeSet<u64>, now: i64) -> Changes {
        let mut changes = Changes::default();
        let mut asserting = asserted.len();
        for entry in entries {
            let current = self.clients.get(&entry.client_id);
            // An unknown client counts as clock 0, so a first message at clock 0 is ignored, as in
            // y-protocols.
            let current_clock = current.map_or(0, |m| m.clock);
            let live = current.is_some_and(|m| m.state.is_some());
            let wins = current_clock < entry.clock || (current_clock == entry.clock && entry.state.is_none() && live);
            if !wins {
                continue;
            }
            match &entry.state {
                None if current.is_none() => continue,
                None => changes.removed.push(entry.client_id),
                Some(state) => {
                    if state.len() > MAX_STATE_BYTES {
                        continue;
                    }
                    let new_here = !asserted.contains(&entry.client_id) && !changes.set.contains(&entry.client_id);
                    if new_here && asserting >= MAX_STATES_PER_CONNECTION {
                        continue;
                    }
                    if current.is_none() && self.clients.len() >= MAX_CLIENTS_PER_ROOM && !self.evict_removed() {
                        continue;
                    }
                    asserting += usize::from(new_here);
                    changes.set.push(entry.client_id);
                }
            }
            self.clients.insert(entry.client_id, Meta { clock: entry.clock, state: entry.state, last_updated: now });
        }
        changes
    }

    /// Forgets the removed client that changed longest ago, to make room; false if every
    /// client is live.
    fn evict_removed(&mut self) -> bool {
        let oldest = self.clients.iter().filter(|(_, m)| m.state.is_none()).min_by_key(|(_, m)| m.last_updated);
        let Some((&id, _)) = oldest else { return false };
        self.clients.remove(&id);
        true
    }

    /// Forgets clients removed at least [`AWARENESS_TIMEOUT_SECS`] ago. Their clocks only guard
    /// against messages older than that, which no live connection still has in flight.
    pub fn forget_removed(&mut self, now: i64) {
        self.clients.retain(|_, m| m.state.is_some() || now - m.last_updated < AWARENESS_TIMEOUT_SECS);
    }

    /// Entries remembered, live or removed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.len()
    }

    /// Marks the given clients gone; returns those that had a live state.
    pub fn remove(&mut self, ids: impl IntoIterator<Item = u64>, now: i64) -> Vec<u64> {
        let mut removed = Vec::new();
        for id in ids {
            if let Some(meta) = self.clients.get_mut(&id)
                && meta.state.take().is_some()
            {
                meta.last_updated = now;
                removed.push(id);
            }
        }
        removed
    }

    /// Live clients whose state has not been renewed within [`AWARENESS_TIMEOUT_SECS`].
    pub fn outdated(&self, now: i64) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, m)| m.state.is_some() && now - m.last_updated >= AWARENESS_TIMEOUT_SECS)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// When [`Self::outdated`] or [`Self::forget_removed`] next has something to do: the first
    /// `now` at which an entry (live or removed) is [`AWARENESS_TIMEOUT_SECS`] old. `None` for an
    /// empty table, which needs no sweeping.
    pub fn next_expiry(&self) -> Option<i64> {
        self.clients.values().map(|m| m.last_updated + AWARENESS_TIMEOUT_SECS).min()
    }

    /// Clients with a live state.
    pub fn live(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.clients.iter().filter(|(_, m)| m.state.is_some()).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    /// An awareness message carrying the current entries of `ids` (removed ones as `null` at their
    /// last clock, which receivers treat as a removal).
    pub fn encode(&self, ids: impl ExactSizeIterator<Item = u64>) -> Vec<u8> {
        let entries: Vec<(u64, u32, Option<&str>)> = ids
            .map(|id| match self.clients.get(&id) {
                Some(m) => (id, m.clock, m.state.as_deref()),
                None => (id, 0, None),
            })
            .collect();
        encode_awareness(entries.into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client_id: u64, clock: u32, state: Option<&str>) -> AwarenessEntry {
        AwarenessEntry { client_id, clock, state: state.map(Arc::from) }
    }

    impl AwarenessTable {
        /// `apply` for a connection that asserts nothing yet.
        fn apply_new(&mut self, entries: Vec<AwarenessEntry>, now: i64) -> Changes {
            self.apply(entries, &BTreeSet::new(), now)
        }
    }

    #[test]
    fn merge_rules_follow_y_protocols() {
        let mut table = AwarenessTable::default();
        // Clock 0 from an unknown client is ignored.
        assert!(table.apply_new(vec![entry(1, 0, Some("{}"))], 0).is_empty());
        assert_eq!(table.apply_new(vec![entry(1, 1, Some("{}"))], 0).set, vec![1]);
        // Same or older clock with a state: ignored.
        assert!(table.apply_new(vec![entry(1, 1, Some("{\"x\":1}"))], 0).is_empty());
        // Null at the same clock removes a live state.
        assert_eq!(table.apply_new(vec![entry(1, 1, None)], 0).removed, vec![1]);
        assert!(table.live().is_empty());
        // A newer clock revives it.
        assert_eq!(table.apply_new(vec![entry(1, 2, Some("{}"))], 0).set, vec![1]);
        assert_eq!(table.live(), vec![1]);
    }

    #[test]
    fn outdated_states_are_found_by_now() {
        let mut table = AwarenessTable::default();
        table.apply_new(vec![entry(1, 1, Some("{}")), entry(2, 1, Some("{}"))], 100);
        table.apply_new(vec![entry(2, 2, Some("{}"))], 120);
        assert!(table.outdated(129).is_empty());
        assert_eq!(table.outdated(130), vec![1]);
        assert_eq!(table.outdated(150), vec![1, 2]);
        assert_eq!(table.remove([1, 3], 150), vec![1]);
        assert_eq!(table.outdated(150), vec![2]);
    }

    /// A connection asserting `asserted` sends `entries` to a table that already holds `before`
    /// (each asserted by someone else at clock 1); `expected` is what changes, and how many
    /// entries the table then remembers.
    fn check(before: &[u64], asserted: &[u64], entries: Vec<AwarenessEntry>, expected: (Changes, usize)) {
        let mut table = AwarenessTable::default();
        // Each from its own connection, so no per-connection limit applies.
        for &id in before {
            table.apply_new(vec![entry(id, 1, Some("{}"))], 0);
        }
        let asserted: BTreeSet<u64> = asserted.iter().copied().collect();
        let changes = table.apply(entries, &asserted, 1);
        assert_eq!((changes, table.len()), expected);
    }

    fn changes(set: &[u64], removed: &[u64]) -> Changes {
        Changes { set: set.to_vec(), removed: removed.to_vec() }
    }

    #[test]
    fn limits_bound_what_a_room_remembers() {
        // Removals of clients never seen are neither reported nor stored, however many.
        let unknown: Vec<_> = (1..=100_000).map(|id| entry(id, 5, None)).collect();
        check(&[], &[], unknown, (changes(&[], &[]), 0));
        // A known client's removal is stored (its clock guards against stale messages).
        check(&[7], &[], vec![entry(7, 2, None), entry(8, 2, None)], (changes(&[], &[7]), 1));
        // One connection sets at most MAX_STATES_PER_CONNECTION states, counting what it asserts.
        let many: Vec<_> = (1..=1000).map(|id| entry(id, 1, Some("{}"))).collect();
        let first: Vec<u64> = (1..=MAX_STATES_PER_CONNECTION as u64).collect();
        check(&[], &[], many.clone(), (changes(&first, &[]), MAX_STATES_PER_CONNECTION));
        check(&[500, 501], &[500, 501], many, (changes(&first[..MAX_STATES_PER_CONNECTION - 2], &[]), 8));
        // Renewing what it already asserts is always allowed.
        let asserted: Vec<u64> = (100..100 + MAX_STATES_PER_CONNECTION as u64).collect();
        let renewals: Vec<_> = asserted.iter().map(|&id| entry(id, 2, Some("{\"x\":1}"))).collect();
        check(&asserted, &asserted, renewals, (changes(&asserted, &[]), asserted.len()));
        // A state over the size limit is ignored; one at the limit is kept.
        let at_limit = format!("\"{}\"", "a".repeat(MAX_STATE_BYTES - 2));
        let over_limit = format!("\"{}\"", "a".repeat(MAX_STATE_BYTES - 1));
        check(&[], &[], vec![entry(1, 1, Some(&at_limit)), entry(2, 1, Some(&over_limit))], (changes(&[1], &[]), 1));
        // A full room takes no new client while every entry is live...
        let full: Vec<u64> = (1..=MAX_CLIENTS_PER_ROOM as u64).collect();
        check(&full, &[], vec![entry(5000, 1, Some("{}"))], (changes(&[], &[]), MAX_CLIENTS_PER_ROOM));
        // ...but a known client of a full room still renews its state.
        check(&full, &[], vec![entry(3, 2, Some("{}"))], (changes(&[3], &[]), MAX_CLIENTS_PER_ROOM));
    }

    #[test]
    fn removed_entries_make_room_and_are_forgotten_after_the_timeout() {
        let mut table = AwarenessTable::default();
        for id in 1..=MAX_CLIENTS_PER_ROOM as u64 {
            table.apply_new(vec![entry(id, 1, Some("{}"))], 0);
        }
        // Client 1 was removed at 10, client 2 at 20: the older removal gives way to a newcomer.
        table.apply_new(vec![entry(1, 1, None)], 10);
        table.apply_new(vec![entry(2, 1, None)], 20);
        assert_eq!(table.apply_new(vec![entry(5000, 1, Some("{}"))], 21).set, vec![5000]);
        assert_eq!(table.len(), MAX_CLIENTS_PER_ROOM);
        assert!(!table.clients.contains_key(&1) && table.clients.contains_key(&2));
        table.forget_removed(20 + AWARENESS_TIMEOUT_SECS - 1);
        assert!(table.clients.contains_key(&2));
        table.forget_removed(20 + AWARENESS_TIMEOUT_SECS);
        assert!(!table.clients.contains_key(&2));
        assert_eq!(table.len(), MAX_CLIENTS_PER_ROOM - 1, "live states stay");
    }
}
