//! Awareness (presence) states of a document's clients, with the y-protocols merge rules.
//!
//! yrs has an `Awareness` type, but it reads its own clock and owns the document; the server needs
//! time passed in (`now`) and must know which connection asserted which client ids so it can remove
//! them when that connection drops. The rules below are those of y-protocols' `awareness.js`
//! (`applyAwarenessUpdate`, `removeAwarenessStates`, the outdated-state check), so clients see the
//! server behave exactly like a JavaScript peer.

use std::collections::HashMap;
use std::sync::Arc;

use super::wire::{AwarenessEntry, encode_awareness};

/// A state not renewed for this long is dropped (y-protocols' `outdatedTimeout`); clients renew
/// theirs every 15 s.
pub const AWARENESS_TIMEOUT_SECS: i64 = 30;

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
    /// Applies entries from a client: an entry wins when its clock is newer, or when it is a
    /// removal (`null`) at the same clock of a live state.
    pub fn apply(&mut self, entries: Vec<AwarenessEntry>, now: i64) -> Changes {
        let mut changes = Changes::default();
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
            if entry.state.is_some() {
                changes.set.push(entry.client_id);
            } else if current.is_some() {
                changes.removed.push(entry.client_id);
            }
            self.clients.insert(entry.client_id, Meta { clock: entry.clock, state: entry.state, last_updated: now });
        }
        changes
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

    #[test]
    fn merge_rules_follow_y_protocols() {
        let mut table = AwarenessTable::default();
        // Clock 0 from an unknown client is ignored.
        assert!(table.apply(vec![entry(1, 0, Some("{}"))], 0).is_empty());
        assert_eq!(table.apply(vec![entry(1, 1, Some("{}"))], 0).set, vec![1]);
        // Same or older clock with a state: ignored.
        assert!(table.apply(vec![entry(1, 1, Some("{\"x\":1}"))], 0).is_empty());
        // Null at the same clock removes a live state.
        assert_eq!(table.apply(vec![entry(1, 1, None)], 0).removed, vec![1]);
        assert!(table.live().is_empty());
        // A newer clock revives it.
        assert_eq!(table.apply(vec![entry(1, 2, Some("{}"))], 0).set, vec![1]);
        assert_eq!(table.live(), vec![1]);
    }

    #[test]
    fn outdated_states_are_found_by_now() {
        let mut table = AwarenessTable::default();
        table.apply(vec![entry(1, 1, Some("{}")), entry(2, 1, Some("{}"))], 100);
        table.apply(vec![entry(2, 2, Some("{}"))], 120);
        assert!(table.outdated(129).is_empty());
        assert_eq!(table.outdated(130), vec![1]);
        assert_eq!(table.outdated(150), vec![1, 2]);
        assert_eq!(table.remove([1, 3], 150), vec![1]);
        assert_eq!(table.outdated(150), vec![2]);
    }
}
