//! One document's sync state machine: the yrs document, its awareness states, and which
//! connection asserted which awareness client ids.
//!
//! A room whose document nobody edits may hibernate ([`Room::hibernate`]): it keeps the document
//! as its encoded state instead of yrs's in-memory structures, answers joiners' first frame and
//! awareness from that, and rebuilds the document at the first event that needs it.
//!
//! Architecture invariant: every frame the room returns holds exactly one y-protocols message,
//! because y-websocket clients before v4 (and the Diaryx web client) read one message per frame.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use yrs::types::{AsPrelim, ToJson};
use yrs::updates::decoder::Decode;
use yrs::{Any, ArrayRef, Doc, GetString, In, MapRef, Out, ReadTxn, StateVector, TextRef, Transact, Update};

use super::awareness::AwarenessTable;
use super::wire::{
    Incoming, ProtocolError, decode_frame, decode_state_vector, decode_update, encode_sync_step1, encode_sync_step2,
    encode_update,
};

/// The server's name for one WebSocket connection; unique within a process.
pub type ConnId = u64;

/// What the caller must do after feeding the room an event.
///
/// Order matters: `persist` must be durable before any frame is sent, so that nothing a client has
/// seen can be lost by a crash. Frames within each list are in protocol order. Frames are
/// reference-counted [`Bytes`], so the caller hands one frame to many connections (and the room
/// one encoded state to many joiners) without copying it.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Effects {
    /// Frames for the connection that sent the input.
    pub reply: Vec<Bytes>,
    /// Frames for every other connection of the document (all of them, for events without a
    /// sender). Encoded once; the caller shares each among its receivers.
    pub broadcast: Vec<Bytes>,
    /// Document updates (lib0 v1) that changed the document, to append to the store.
    pub persist: Vec<Vec<u8>>,
}

/// The document, in memory or encoded.
#[derive(Debug)]
enum Content {
    Live(Doc),
    /// The whole document as one update (lib0 v1) and its SyncStep1 frame, which is all a room
    /// answers without its document.
    Hibernating {
        state: Vec<u8>,
        step1: Bytes,
    },
}

impl Content {
    /// The in-memory document, rebuilt from the encoded state if the room hibernates.
    fn live(&mut self) -> Result<&Doc, ProtocolError> {
        if let Content::Hibernating { state, .. } = self {
            *self = Content::Live(wake(state)?);
        }
        match self {
            Content::Live(doc) => Ok(doc),
            Content::Hibernating { .. } => unreachable!("woken above"),
        }
    }
}

impl Default for Content {
    fn default() -> Self {
        Content::Live(Doc::new())
    }
}

#[derive(Debug, Default)]
pub struct Room {
    content: Content,
    awareness: AwarenessTable,
    /// Awareness client ids each connection has set and not removed; removed with a broadcast when
    /// the connection goes, so its peers stop showing a cursor for a client that left.
    conns: HashMap<ConnId, BTreeSet<u64>>,
    /// The whole document as a SyncStep2 frame, encoded at the first SyncStep1 that gets it and
    /// shared by every later one until the document changes: a storm of joiners of a large
    /// document costs one encoding and one copy of it, not one each (see [`Room::answer_step1`]).
    full_state: Option<Bytes>,
}

impl Room {
    /// Rebuilds a document from its stored snapshot and the updates appended after it.
    pub fn load<'a>(
        snapshot: Option<&'a [u8]>,
        updates: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Room, ProtocolError> {
        let doc = rebuild(snapshot.into_iter().chain(updates))
            .map_err(|e| ProtocolError::Malformed(format!("stored update: {e}")))?;
        Ok(Room { content: Content::Live(doc), ..Room::default() })
    }

    /// Drops the in-memory document, keeping it encoded (see the module documentation); nothing
    /// a client sees changes. Returns false, leaving the room as it was, if the document cannot
    /// be encoded (the next SyncStep1 then poisons the room, as it would have anyway).
    pub fn hibernate(&mut self) -> bool {
        let Content::Live(doc) = &self.content else { return true };
        let Ok(state) = diff(doc, &StateVector::default()) else { return false };
        let step1 = self.sync_step1();
        // The shared SyncStep2 is a second copy of the state; a joiner wakes the room anyway.
        self.full_state = None;
        self.content = Content::Hibernating { state, step1 };
        true
    }

    /// Whether the room holds its document encoded only (see [`Room::hibernate`]).
    pub fn is_hibernating(&self) -> bool {
        matches!(self.content, Content::Hibernating { .. })
    }

    /// Runs `read` on the document without waking a hibernating room: on a copy rebuilt for the
    /// call (readers of a hibernating room, the HTTP API's, are rare).
    fn read<T>(&self, read: impl FnOnce(&Doc) -> T) -> Result<T, ProtocolError> {
        match &self.content {
            Content::Live(doc) => Ok(read(doc)),
            Content::Hibernating { state, .. } => wake(state).map(|doc| read(&doc)),
        }
    }

    /// Registers a connection and returns the frames it receives first: the server's SyncStep1,
    /// then the current awareness states if there are any.
    pub fn connect(&mut self, conn: ConnId) -> Vec<Bytes> {
        self.conns.entry(conn).or_default();
        let mut frames = vec![self.sync_step1()];
        let live = self.awareness.live();
        if !live.is_empty() {
            frames.push(Bytes::from(self.awareness.encode(live.into_iter())));
        }
        frames
    }

    /// The server's SyncStep1: its state vector, asking the peer for what it lacks.
    pub fn sync_step1(&self) -> Bytes {
        match &self.content {
            Content::Live(doc) => Bytes::from(encode_sync_step1(&doc.transact().state_vector())),
            Content::Hibernating { step1, .. } => step1.clone(),
        }
    }

    /// Handles one frame from `conn`. On error nothing from this frame was applied unless an
    /// update inside it was accepted by the decoder but refused by yrs while integrating; the
    /// caller closes the connection either way.
    pub fn receive(&mut self, conn: ConnId, frame: &[u8], now: i64) -> Result<Effects, ProtocolError> {
        self.receive_as(conn, frame, now, true).map(|(effects, _)| effects)
    }

    /// Handles one frame from a connection that may read but not write (a read-only share):
    /// sync steps are answered and awareness is taken as from anyone, but its updates are never
    /// applied, stored or relayed. Also returns whether a dropped update held content the
    /// document lacks (deletions are not compared), which a Hocuspocus server reports.
    pub fn receive_read_only(
        &mut self,
        conn: ConnId,
        frame: &[u8],
        now: i64,
    ) -> Result<(Effects, bool), ProtocolError> {
        self.receive_as(conn, frame, now, false)
    }

    fn receive_as(
        &mut self,
        conn: ConnId,
        frame: &[u8],
        now: i64,
        writable: bool,
    ) -> Result<(Effects, bool), ProtocolError> {
        let messages = decode_frame(frame)?;
        let mut effects = Effects::default();
        let mut refused = false;
        for message in messages {
            match message {
                Incoming::SyncStep1(sv) => effects.reply.push(self.answer_step1(&sv)?),
                Incoming::Update(update) if !writable => {
                    let known = self.content.live()?.transact().state_vector();
                    refused |= update.state_vector().iter().any(|(client, clock)| *clock > known.get(client));
                }
                Incoming::Update(update) => {
                    if let Some(applied) = self.apply(update)? {
                        effects.broadcast.push(Bytes::from(encode_update(&applied)));
                        effects.persist.push(applied);
                    }
                }
                Incoming::Awareness(entries) => {
                    let asserted = self.conns.entry(conn).or_default();
                    let changes = self.awareness.apply(entries, asserted, now);
                    if changes.is_empty() {
                        continue;
                    }
                    asserted.extend(&changes.set);
                    for id in &changes.removed {
                        asserted.remove(id);
                    }
                    // Awareness goes to the sender too, as y-websocket's own server does: a client
                    // alone in a document hears nothing else, and y-websocket reconnects after 30 s
                    // without a message.
                    let frame = Bytes::from(self.awareness.encode(changes.all().into_iter()));
                    effects.reply.push(frame.clone());
                    effects.broadcast.push(frame);
                }
                Incoming::QueryAwareness => {
                    effects.reply.push(Bytes::from(self.awareness.encode(self.awareness.live().into_iter())))
                }
            }
        }
        Ok((effects, refused))
    }

    /// Forgets a connection and removes the awareness states it asserted.
    pub fn disconnect(&mut self, conn: ConnId, now: i64) -> Effects {
        let asserted = self.conns.remove(&conn).unwrap_or_default();
        self.remove_awareness(asserted, now)
    }

    /// Drops awareness states not renewed within [`super::AWARENESS_TIMEOUT_SECS`]; call it at
    /// [`Room::next_sweep`].
    pub fn sweep(&mut self, now: i64) -> Effects {
        self.awareness.forget_removed(now);
        let outdated = self.awareness.outdated(now);
        for asserted in self.conns.values_mut() {
            for id in &outdated {
                asserted.remove(id);
            }
        }
        self.remove_awareness(outdated, now)
    }

    /// When [`Room::sweep`] next changes anything (unix seconds), unless an event renews or
    /// removes states before; `None` while the room holds no awareness at all, so a room of
    /// clients without presence needs no timer.
    pub fn next_sweep(&self) -> Option<i64> {
        self.awareness.next_expiry()
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The whole document as one update: the snapshot that compaction stores. An error poisons
    /// the room (see [`Room::diff`]).
    pub fn encode_state(&self) -> Result<Vec<u8>, ProtocolError> {
        match &self.content {
            Content::Live(doc) => diff(doc, &StateVector::default()),
            Content::Hibernating { state, .. } => Ok(state.clone()),
        }
    }

    /// Applies a bare update (lib0 v1) that came without a connection (the document HTTP API):
    /// checked and applied as an update inside a frame is, and relayed to every connection. An
    /// update the document already holds, or whose predecessors it lacks (yrs keeps it pending),
    /// changes nothing and persists nothing. Errors as [`Room::receive`]'s.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<Effects, ProtocolError> {
        let mut effects = Effects::default();
        if let Some(applied) = self.apply(decode_update(update)?)? {
            effects.broadcast.push(Bytes::from(encode_update(&applied)));
            effects.persist.push(applied);
        }
        Ok(effects)
    }

    /// What the document holds beyond the encoded state vector `sv` (lib0 v1; empty for the
    /// whole document), as one update.
    pub fn diff_since(&self, sv: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if sv.is_empty() {
            return self.encode_state();
        }
        let sv = decode_state_vector(sv)?;
        self.read(|doc| diff(doc, &sv))?
    }

    /// The document's top-level types as a JSON-like value, one key per root name. A root that no
    /// client has given a type here is read by its content, as yrs infers it: entries make a
    /// map, characters a text, other items an array.
    pub fn to_json(&self) -> Result<Any, ProtocolError> {
        self.read(to_json)
    }

    /// The document, for readers such as tests and exports; `None` while the room hibernates.
    pub fn doc(&self) -> Option<&Doc> {
        match &self.content {
            Content::Live(doc) => Some(doc),
            Content::Hibernating { .. } => None,
        }
    }

    /// The SyncStep2 answering a peer's SyncStep1 with state vector `sv`. A peer that lacks at
    /// least half of the document's items (every fresh client: its state vector is empty) gets the
    /// shared whole state: a correct answer to any SyncStep1, since applying what a document
    /// already holds changes nothing (y-protocols clients, Hocuspocus and pycrdt all just apply
    /// it), and one at most about twice the size of the diff it replaces. A peer that holds most
    /// of the document (a reconnecting client) gets its own diff, which is then small.
    fn answer_step1(&mut self, sv: &StateVector) -> Result<Bytes, ProtocolError> {
        let doc = self.content.live()?;
        if !lacks_most(&doc.transact().state_vector(), sv) {
            return Ok(Bytes::from(encode_sync_step2(&diff(doc, sv)?)));
        }
        if let Some(frame) = &self.full_state {
            return Ok(frame.clone());
        }
        let frame = Bytes::from(encode_sync_step2(&diff(doc, &StateVector::default())?));
        self.full_state = Some(frame.clone());
        Ok(frame)
    }

    /// Applies an update and returns what it actually changed, or `None` if the document already
    /// had all of it. Relaying and storing only the change keeps duplicates (a reconnecting client
    /// resending its state) out of both.
    ///
    /// A refusal or a panic inside yrs poisons the room (see [`ProtocolError::Poisoned`]): the
    /// update may be partly integrated, and only a reload from storage is known to be whole.
    fn apply(&mut self, update: Update) -> Result<Option<Vec<u8>>, ProtocolError> {
        // Even an update that changes nothing visible may join yrs's pending set, which the
        // encoded state includes: any update makes the shared state stale.
        self.full_state = None;
        let doc = self.content.live()?;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            txn.apply_update(update).map_err(|e| ProtocolError::Poisoned(format!("update refused: {e}")))?;
            // Compared on the document's own state vector: an update whose predecessor is missing
            // waits in yrs's pending set, yet moves the transaction's `after_state`, and encoding
            // it gave an empty update per frame, stored and sent to every peer.
            let advanced = txn.state_vector().iter().any(|(client, clock)| *clock > before.get(client));
            let changed = !txn.delete_set().is_empty() || advanced;
            if !changed {
                return Ok(None);
            }
            let applied = txn.encode_update_v1();
            // yrs can integrate an update whose re-encoding it cannot decode; stored, it would
            // make the document fail to load after every restart, so it is refused instead.
            Update::decode_v1(&applied)
                .map_err(|e| ProtocolError::Poisoned(format!("update re-encodes badly: {e}")))?;
            Ok(Some(applied))
        }))
        .unwrap_or_else(|_| Err(ProtocolError::Poisoned("yrs panicked while applying an update".into())))
    }

    fn remove_awareness(&mut self, ids: impl IntoIterator<Item = u64>, now: i64) -> Effects {
        let removed = self.awareness.remove(ids, now);
        let mut effects = Effects::default();
        if !removed.is_empty() {
            effects.broadcast.push(Bytes::from(self.awareness.encode(removed.into_iter())));
        }
        effects
    }
}

/// Whether a peer at state vector `peer` lacks at least half of the items (counted by clock) of
/// a document at `doc`.
fn lacks_most(doc: &StateVector, peer: &StateVector) -> bool {
    let (total, held) = doc.iter().fold((0u64, 0u64), |(total, held), (client, &clock)| {
        (total + u64::from(clock), held + u64::from(clock.min(peer.get(client))))
    });
    total - held >= total.div_ceil(2)
}

/// See [`Room::to_json`].
fn to_json(doc: &Doc) -> Any {
    let txn = doc.transact();
    let roots = txn.root_refs().map(|(name, value)| {
        let json = match &value {
            Out::UndefinedRef(branch) => match value.as_prelim(&txn) {
                In::Map(_) => MapRef::from(*branch).to_json(&txn),
                In::Text(_) | In::XmlText(_) => Any::from(TextRef::from(*branch).get_string(&txn)),
                In::Array(_) | In::XmlElement(_) => ArrayRef::from(*branch).to_json(&txn),
                _ => Any::Undefined,
            },
            other => other.to_json(&txn),
        };
        (name.to_owned(), json)
    });
    Any::from(roots.collect::<HashMap<String, Any>>())
}

/// A document from updates (lib0 v1) applied in order.
fn rebuild<'a>(updates: impl IntoIterator<Item = &'a [u8]>) -> Result<Doc, yrs::error::Error> {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        for bytes in updates {
            txn.apply_update(Update::decode_v1(bytes)?)?;
        }
    }
    Ok(doc)
}

/// The document of a hibernating room's encoded state. One that no longer loads poisons the
/// room: only a reload from storage is known to be whole.
fn wake(state: &[u8]) -> Result<Doc, ProtocolError> {
    rebuild([state]).map_err(|e| ProtocolError::Poisoned(format!("hibernated state does not load: {e}")))
}

/// What `doc` holds beyond `since`. yrs merges its pending updates into the answer and panics
/// when one of them cannot be merged; such a document poisons the room like a refused update,
/// since the pending set came from a client.
fn diff(doc: &Doc, since: &StateVector) -> Result<Vec<u8>, ProtocolError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.transact().encode_state_as_update_v1(since)))
        .map_err(|_| ProtocolError::Poisoned("yrs panicked while encoding a diff".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;
    use yrs::sync::{Message, SyncMessage};
    use yrs::types::ToJson;
    use yrs::updates::encoder::Encode;
    use yrs::{Array, GetString, Map, Text, WriteTxn};

    use super::*;
    use crate::yjs::wire::tests::awareness_frame;

    fn step1(doc: &Doc) -> Vec<u8> {
        Message::Sync(SyncMessage::SyncStep1(doc.transact().state_vector())).encode_v1()
    }

    fn update_frame(update: Vec<u8>) -> Vec<u8> {
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    }

    fn insert_text(doc: &Doc, text: &str) -> Vec<u8> {
        let sv = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let t = txn.get_or_insert_text("t");
            let len = t.len(&txn);
            t.insert(&mut txn, len, text);
        }
        doc.transact().encode_state_as_update_v1(&sv)
    }

    fn text_of(doc: &Doc) -> String {
        let txn = doc.transact();
        txn.get_text("t").map(|t| t.get_string(&txn)).unwrap_or_default()
    }

    fn decode(frame: &[u8]) -> Message {
        Message::decode_v1(frame).unwrap()
    }

    #[test]
    fn connect_sends_step1_then_awareness_as_separate_frames() {
        let mut room = Room::default();
        assert_eq!(room.connect(1), vec![vec![0, 0, 1, 0]]);
        let _ = room.receive(1, &awareness_frame(&[(5, 1, Some("{\"n\":1}"))]), 0).unwrap();
        let frames = room.connect(2);
        assert_eq!(frames.len(), 2);
        assert!(matches!(decode(&frames[0]), Message::Sync(SyncMessage::SyncStep1(_))));
        match decode(&frames[1]) {
            Message::Awareness(update) => assert_eq!(update.clients.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_hibernating_room_answers_joiners_and_edits_as_before() {
        let mut room = Room::default();
        let _ = room.connect(1);
        let writer = Doc::new();
        let _ = room.receive(1, &update_frame(insert_text(&writer, "before")), 0).unwrap();
        let _ = room.receive(1, &awareness_frame(&[(5, 1, Some("{\"n\":1}"))]), 0).unwrap();
        let server_step1 = room.sync_step1();
        let state = room.encode_state().unwrap();

        assert!(room.hibernate());
        assert!(room.is_hibernating() && room.doc().is_none());
        // What needs no document is answered from the encoded state, without waking the room:
        // a joiner's greeting (SyncStep1, then the awareness it missed), compaction's snapshot,
        // the HTTP API's diff and JSON.
        let greeting = room.connect(2);
        assert_eq!(greeting[0], server_step1);
        assert!(matches!(decode(&greeting[1]), Message::Awareness(_)));
        assert_eq!(room.encode_state().unwrap(), state);
        let whole = room.diff_since(&[]).unwrap();
        let partial = room.diff_since(&StateVector::default().encode_v1()).unwrap();
        assert_eq!(whole, partial);
        assert_eq!(serde_json::to_string(&room.to_json().unwrap()).unwrap(), r#"{"t":"before"}"#);
        assert!(room.is_hibernating());

        // The joiner's SyncStep1 wakes it and gets everything.
        let joiner = Doc::new();
        let effects = room.receive(2, &step1(&joiner), 0).unwrap();
        assert!(!room.is_hibernating());
        let Message::Sync(SyncMessage::SyncStep2(diff)) = decode(&effects.reply[0]) else { panic!("not a SyncStep2") };
        joiner.transact_mut().apply_update(Update::decode_v1(&diff).unwrap()).unwrap();
        assert_eq!(text_of(&joiner), "before");

        // Hibernating again, an edit wakes it too, is stored and relayed, and builds on the rest.
        assert!(room.hibernate());
        let effects = room.receive(1, &update_frame(insert_text(&writer, " after")), 0).unwrap();
        assert_eq!((effects.persist.len(), effects.broadcast.len()), (1, 1));
        assert_eq!(text_of(room.doc().unwrap()), "before after");
        // So does an update from no connection (the HTTP API, another node).
        assert!(room.hibernate());
        let effects = room.apply_update(&insert_text(&writer, "!")).unwrap();
        assert_eq!(effects.persist.len(), 1);
        assert_eq!(text_of(room.doc().unwrap()), "before after!");
    }

    #[test]
    fn updates_are_persisted_and_relayed_to_others_never_echoed() {
        let mut room = Room::default();
        let _ = room.connect(1);
        let client = Doc::new();
        let effects = room.receive(1, &update_frame(insert_text(&client, "hi")), 0).unwrap();
        assert!(effects.reply.is_empty(), "no echo to the sender");
        assert_eq!(effects.broadcast.len(), 1);
        assert_eq!(effects.persist.len(), 1);
        assert_eq!(text_of(room.doc().unwrap()), "hi");
        // The same update again changes nothing, so nothing is stored or relayed.
        let again = client.transact().encode_state_as_update_v1(&StateVector::default());
        assert_eq!(room.receive(1, &update_frame(again), 0).unwrap(), Effects::default());
    }

    #[test]
    fn an_update_whose_predecessor_is_missing_is_held_not_stored_or_relayed() {
        // Found by the fuzz target yjs_frame (corpus entry `update-after-a-gap`).
        let client = Doc::new();
        let first = insert_text(&client, "a");
        let second = insert_text(&client, "b");
        let mut room = Room::default();
        assert_eq!(room.receive(1, &update_frame(second), 0).unwrap(), Effects::default());
        let effects = room.receive(1, &update_frame(first), 0).unwrap();
        assert_eq!(effects.persist.len(), 1);
        assert_eq!(text_of(room.doc().unwrap()), "ab");
        let reloaded = Room::load(None, effects.persist.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(text_of(reloaded.doc().unwrap()), "ab", "the held update is stored once it integrates");
    }

    #[test]
    fn an_update_yrs_cannot_re_encode_poisons_the_room_and_stores_nothing() {
        // Found by the fuzz target yjs_frame (corpus entry `update-that-re-encodes-badly`): yrs
        // integrates this SyncStep2, but its re-encoding does not decode, so storing it would make
        // the document fail to load.
        let frame =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz-corpus/yjs_frame/update-that-re-encodes-badly"))
                .unwrap();
        let err = Room::default().receive(1, &frame, 0).unwrap_err();
        assert!(err.poisons_room(), "{err}");
    }

    #[test]
    fn a_read_only_connection_reads_and_shows_presence_but_never_writes() {
        let mut room = Room::default();
        let _ = room.connect(1);
        let writer = Doc::new();
        let _ = room.receive(1, &update_frame(insert_text(&writer, "abc")), 0).unwrap();
        let reader = Doc::new();
        let (effects, refused) = room.receive_read_only(2, &step1(&reader), 0).unwrap();
        assert_eq!((effects.reply.len(), refused), (1, false), "the reader gets the document");
        let (effects, refused) = room.receive_read_only(2, &update_frame(insert_text(&reader, "x")), 0).unwrap();
        assert_eq!((effects, refused), (Effects::default(), true), "an update is neither applied, stored nor relayed");
        assert_eq!(text_of(room.doc().unwrap()), "abc");
        let known = writer.transact().encode_state_as_update_v1(&StateVector::default());
        let (_, refused) = room.receive_read_only(2, &update_frame(known), 0).unwrap();
        assert!(!refused, "nothing the document lacks");
        let (effects, _) = room.receive_read_only(2, &awareness_frame(&[(7, 1, Some("{}"))]), 0).unwrap();
        assert_eq!(effects.broadcast.len(), 1, "awareness is relayed");
    }

    #[test]
    fn step1_is_answered_with_the_missing_diff() {
        let mut room = Room::default();
        let writer = Doc::new();
        let _ = room.receive(1, &update_frame(insert_text(&writer, "abc")), 0).unwrap();
        let reader = Doc::new();
        let effects = room.receive(2, &step1(&reader), 0).unwrap();
        assert_eq!(effects.reply.len(), 1);
        assert!(effects.persist.is_empty() && effects.broadcast.is_empty());
        match decode(&effects.reply[0]) {
            Message::Sync(SyncMessage::SyncStep2(diff)) => {
                reader.transact_mut().apply_update(Update::decode_v1(&diff).unwrap()).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(text_of(&reader), "abc");
    }

    #[test]
    fn joiners_lacking_most_of_the_document_share_one_encoded_state_until_it_changes() {
        let mut room = Room::default();
        let writer = Doc::new();
        // 100 characters in three updates; big enough that a diff's fixed costs (an origin)
        // do not hide its size.
        let typed: Vec<Vec<u8>> =
            [("a", 20), ("b", 50), ("c", 30)].iter().map(|(c, n)| insert_text(&writer, &c.repeat(*n))).collect();
        for update in &typed {
            let _ = room.receive(1, &update_frame(update.clone()), 0).unwrap();
        }
        let holding = |updates: &[Vec<u8>]| {
            let doc = Doc::new();
            for update in updates {
                doc.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
            }
            doc
        };
        // Answers `client`'s SyncStep1, applies the answer, and checks that it now holds the room's text.
        let answer = |room: &mut Room, client: &Doc| {
            let frame = room.receive(2, &step1(client), 0).unwrap().reply.remove(0);
            let Message::Sync(SyncMessage::SyncStep2(diff)) = decode(&frame) else { panic!("not a SyncStep2") };
            client.transact_mut().apply_update(Update::decode_v1(&diff).unwrap()).unwrap();
            assert_eq!(text_of(client), text_of(room.doc().unwrap()));
            frame
        };
        let shared = answer(&mut room, &Doc::new());
        // (updates the peer holds, whether it gets the shared state): fresh and far behind (20
        // of 100 characters) share it; a peer lacking less than half (30) gets its own, smaller
        // diff.
        for (held, expect_shared) in [(0, true), (1, true), (2, false)] {
            let frame = answer(&mut room, &holding(&typed[..held]));
            assert_eq!(frame.as_ptr() == shared.as_ptr(), expect_shared, "peer holding {held} of 3 updates");
            assert_eq!(frame.len() < shared.len(), !expect_shared);
        }
        let _ = room.receive(1, &update_frame(insert_text(&writer, "ij")), 0).unwrap();
        let after = answer(&mut room, &Doc::new());
        assert_ne!(after.as_ptr(), shared.as_ptr(), "an update makes the shared state stale");
        assert!(text_of(room.doc().unwrap()).ends_with("ij"));
    }

    #[test]
    fn a_frame_with_several_messages_yields_one_message_per_frame() {
        let mut room = Room::default();
        let client = Doc::new();
        let mut frame = step1(&client);
        frame.extend(update_frame(insert_text(&client, "x")));
        frame.extend(awareness_frame(&[(9, 1, Some("{}"))]));
        frame.push(3); // query awareness
        let effects = room.receive(1, &frame, 0).unwrap();
        // SyncStep2, the awareness change, the awareness query's answer.
        assert_eq!(effects.reply.len(), 3);
        assert_eq!(effects.broadcast.len(), 2);
        for f in effects.reply.iter().chain(&effects.broadcast) {
            // Decoding exactly one message consumes the whole frame.
            assert_eq!(decode(f).encode_v1(), *f);
        }
    }

    #[test]
    fn malformed_frames_change_nothing() {
        let mut room = Room::default();
        let mut frame = update_frame(insert_text(&Doc::new(), "x"));
        frame.extend([0, 2, 0x80]); // a second message with a truncated varint
        let err = room.receive(1, &frame, 0).unwrap_err();
        assert_eq!(err.close_code(), 1007);
        assert_eq!(text_of(room.doc().unwrap()), "");
    }

    #[test]
    fn awareness_is_tracked_per_connection_and_removed_on_disconnect() {
        let mut room = Room::default();
        let _ = room.connect(1);
        let _ = room.connect(2);
        let effects = room.receive(1, &awareness_frame(&[(7, 1, Some("{\"user\":\"a\"}"))]), 0).unwrap();
        assert_eq!(effects.broadcast.len(), 1);
        // A stale repeat changes nothing and is not relayed.
        assert!(room.receive(1, &awareness_frame(&[(7, 1, Some("{}"))]), 0).unwrap().broadcast.is_empty());
        let query = room.receive(2, &[3], 0).unwrap();
        match decode(&query.reply[0]) {
            Message::Awareness(update) => assert_eq!(update.clients.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
        assert!(room.disconnect(2, 1).broadcast.is_empty(), "connection 2 asserted nothing");
        let gone = room.disconnect(1, 1);
        match decode(&gone.broadcast[0]) {
            Message::Awareness(update) => assert_eq!(&*update.clients.values().next().unwrap().json, "null"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(room.connection_count(), 0);
    }

    #[test]
    fn sweep_expires_states_after_thirty_seconds() {
        let mut room = Room::default();
        let _ = room.connect(1);
        assert_eq!(room.next_sweep(), None, "no awareness, nothing to sweep");
        let _ = room.receive(1, &awareness_frame(&[(7, 1, Some("{}"))]), 100).unwrap();
        assert_eq!(room.next_sweep(), Some(130));
        assert!(room.sweep(129).broadcast.is_empty());
        assert_eq!(room.sweep(130).broadcast.len(), 1);
        assert!(room.disconnect(1, 131).broadcast.is_empty(), "already expired");
        // The removed entry is remembered (its clock guards against stale messages) until it
        // too is thirty seconds old; then the room needs no sweep at all.
        assert_eq!(room.next_sweep(), Some(160));
        assert!(room.sweep(160).broadcast.is_empty());
        assert_eq!(room.next_sweep(), None);
    }

    /// A renewal moves the next sweep, so a room whose clients renew in time never wakes for it.
    #[test]
    fn a_renewed_state_moves_the_next_sweep() {
        let mut room = Room::default();
        let _ = room.connect(1);
        let _ = room.receive(1, &awareness_frame(&[(7, 1, Some("{}")), (8, 1, Some("{}"))]), 100).unwrap();
        let _ = room.receive(1, &awareness_frame(&[(7, 2, Some("{}"))]), 115).unwrap();
        assert_eq!(room.next_sweep(), Some(130), "the state not renewed");
        let _ = room.receive(1, &awareness_frame(&[(8, 2, Some("{}"))]), 120).unwrap();
        assert_eq!(room.next_sweep(), Some(145));
    }

    #[test]
    fn a_bare_update_is_applied_relayed_and_stored_once_and_garbage_changes_nothing() {
        let mut room = Room::default();
        let _ = room.connect(1);
        let client = Doc::new();
        let update = insert_text(&client, "hi");
        let effects = room.apply_update(&update).unwrap();
        assert_eq!((effects.reply.len(), effects.broadcast.len(), effects.persist.len()), (0, 1, 1));
        assert_eq!(text_of(room.doc().unwrap()), "hi");
        assert_eq!(room.apply_update(&update).unwrap(), Effects::default(), "a known update changes nothing");
        for garbage in [&b""[..], b"\xff\xff\xff\xff\x0f", b"\x01\x01\x01"] {
            assert!(room.apply_update(garbage).is_err(), "{garbage:?}");
            assert_eq!(text_of(room.doc().unwrap()), "hi");
        }
    }

    #[test]
    fn diff_since_a_state_vector_holds_only_what_it_lacks() {
        let apply = |doc: &Doc, update: &[u8]| doc.transact_mut().apply_update(Update::decode_v1(update).unwrap());
        let mut room = Room::default();
        let client = Doc::new();
        let first = insert_text(&client, "ab");
        let _ = room.apply_update(&first).unwrap();
        let sv = client.transact().state_vector().encode_v1();
        let other = Doc::new();
        let _ = room.apply_update(&insert_text(&other, "cd")).unwrap();
        let whole = Doc::new();
        apply(&whole, &room.diff_since(&[]).unwrap()).unwrap();
        assert_eq!(text_of(&whole).len(), 4, "an empty state vector gets the whole document");
        // The diff since `first` lacks `first`: alone it holds only the other client's text.
        let since = Doc::new();
        apply(&since, &room.diff_since(&sv).unwrap()).unwrap();
        assert_eq!(text_of(&since), "cd");
        assert!(room.diff_since(b"\xff\xff").is_err(), "a state vector that does not decode");
    }

    #[test]
    fn to_json_renders_every_root_whether_or_not_its_type_is_known() {
        let client = Doc::new();
        let mut update = insert_text(&client, "hello");
        let room = Room::load(Some(&update), []).unwrap();
        assert_eq!(serde_json::to_string(&room.to_json().unwrap()).unwrap(), r#"{"t":"hello"}"#);
        {
            let mut txn = client.transact_mut();
            let map = txn.get_or_insert_map("m");
            map.insert(&mut txn, "k", 1.0);
            let array = txn.get_or_insert_array("a");
            array.push_back(&mut txn, "x");
        }
        update = client.transact().encode_state_as_update_v1(&StateVector::default());
        let json = Room::load(Some(&update), []).unwrap().to_json().unwrap();
        let Any::Map(roots) = json else { panic!("roots are a map: {json:?}") };
        assert_eq!(roots["t"], Any::from("hello"));
        assert_eq!(serde_json::to_string(&roots["m"]).unwrap(), r#"{"k":1}"#);
        assert_eq!(serde_json::to_string(&roots["a"]).unwrap(), r#"["x"]"#);
    }

    #[test]
    fn load_restores_snapshot_and_later_updates() {
        let mut room = Room::default();
        let client = Doc::new();
        let first = room.receive(1, &update_frame(insert_text(&client, "a")), 0).unwrap();
        let snapshot = room.encode_state().unwrap();
        let second = room.receive(1, &update_frame(insert_text(&client, "b")), 0).unwrap();
        let loaded = Room::load(Some(&snapshot), second.persist.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(text_of(loaded.doc().unwrap()), "ab");
        let replayed = Room::load(None, first.persist.iter().chain(&second.persist).map(Vec::as_slice)).unwrap();
        assert_eq!(text_of(replayed.doc().unwrap()), "ab");
        assert!(Room::load(Some(&[1, 2, 3]), []).is_err());
    }

    /// A simulated client: its own document and the frames the server has sent it, undelivered.
    struct Client {
        doc: Doc,
        inbox: VecDeque<Bytes>,
        connected: bool,
    }

    #[derive(Debug, Clone)]
    enum Action {
        /// Client edits locally (text insert or map set) and sends the update if connected.
        Edit { client: usize, at: u32, text: String, map: bool },
        /// The server's next frame for a client arrives.
        Deliver { client: usize },
        /// A client that was offline connects (sending SyncStep1, as providers do).
        Join { client: usize },
    }

    const CLIENTS: usize = 3;

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            (0..CLIENTS, any::<u32>(), "[a-z]{1,3}", any::<bool>()).prop_map(|(client, at, text, map)| Action::Edit {
                client,
                at,
                text,
                map
            }),
            (0..CLIENTS).prop_map(|client| Action::Deliver { client }),
            (0..CLIENTS).prop_map(|client| Action::Join { client }),
        ]
    }

    /// Runs a frame through the room and routes its effects, as the server does.
    fn send(room: &mut Room, clients: &mut [Client], from: usize, frame: &[u8], stored: &mut Vec<Vec<u8>>) {
        let effects = room.receive(from as ConnId, frame, 0).unwrap();
        stored.extend(effects.persist);
        clients[from].inbox.extend(effects.reply);
        for (i, c) in clients.iter_mut().enumerate() {
            if i != from && c.connected {
                c.inbox.extend(effects.broadcast.iter().cloned());
            }
        }
    }

    fn connect(room: &mut Room, clients: &mut [Client], i: usize, stored: &mut Vec<Vec<u8>>) {
        clients[i].connected = true;
        let greeting = room.connect(i as ConnId);
        clients[i].inbox.extend(greeting);
        let hello = step1(&clients[i].doc);
        send(room, clients, i, &hello, stored);
    }

    fn deliver(room: &mut Room, clients: &mut [Client], i: usize, stored: &mut Vec<Vec<u8>>) {
        let Some(frame) = clients[i].inbox.pop_front() else { return };
        match decode(&frame) {
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = clients[i].doc.transact().encode_state_as_update_v1(&sv);
                let reply = Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1();
                send(room, clients, i, &reply, stored);
            }
            Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                clients[i].doc.transact_mut().apply_update(Update::decode_v1(&u).unwrap()).unwrap();
            }
            _ => {}
        }
    }

    fn state(doc: &Doc) -> (String, Option<yrs::Any>) {
        let txn = doc.transact();
        let map = txn.get_map("m").map(|m| m.to_json(&txn));
        (text_of(doc), map)
    }

    proptest! {
        /// Whatever the order in which edits happen and frames are delivered, once every frame has
        /// arrived all clients and the server hold what applying every edit to one document gives,
        /// and the persisted updates alone rebuild that same document.
        #[test]
        fn random_interleavings_converge(actions in proptest::collection::vec(action(), 1..60)) {
            let mut room = Room::default();
            let mut stored = Vec::new();
            let mut clients: Vec<Client> = (0..CLIENTS)
                .map(|_| Client { doc: Doc::new(), inbox: VecDeque::new(), connected: false })
                .collect();
            let reference = Doc::new();
            for i in 0..2 {
                connect(&mut room, &mut clients, i, &mut stored);
            }
            for action in actions {
                match action {
                    Action::Edit { client, at, text, map } => {
                        let doc = &clients[client].doc;
                        let sv = doc.transact().state_vector();
                        {
                            let mut txn = doc.transact_mut();
                            if map {
                                txn.get_or_insert_map("m").insert(&mut txn, text.clone(), at);
                            } else {
                                let t = txn.get_or_insert_text("t");
                                let len = t.len(&txn);
                                t.insert(&mut txn, at % (len + 1), &text);
                            }
                        }
                        let update = doc.transact().encode_state_as_update_v1(&sv);
                        reference.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
                        if clients[client].connected {
                            send(&mut room, &mut clients, client, &update_frame(update), &mut stored);
                        }
                    }
                    Action::Deliver { client } => deliver(&mut room, &mut clients, client, &mut stored),
                    Action::Join { client } => {
                        if !clients[client].connected {
                            connect(&mut room, &mut clients, client, &mut stored);
                        }
                    }
                }
            }
            for i in 0..CLIENTS {
                if !clients[i].connected {
                    connect(&mut room, &mut clients, i, &mut stored);
                }
            }
            while let Some(i) = (0..CLIENTS).find(|&i| !clients[i].inbox.is_empty()) {
                deliver(&mut room, &mut clients, i, &mut stored);
            }
            let expected = state(&reference);
            prop_assert_eq!(state(room.doc().unwrap()), expected.clone());
            for client in &clients {
                prop_assert_eq!(state(&client.doc), expected.clone());
            }
            let reloaded = Room::load(None, stored.iter().map(Vec::as_slice)).unwrap();
            prop_assert_eq!(state(reloaded.doc().unwrap()), expected);
        }
    }
}
