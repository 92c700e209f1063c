//! Decoding client frames into protocol messages, and encoding the messages the server sends.
//!
//! A frame is decoded completely before anything is applied, so a frame that turns out to be
//! malformed halfway changes nothing. The varint, buffer and string primitives are yrs's own
//! (`yrs::encoding`), so the byte layout is exactly lib0's.

use std::sync::Arc;

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{StateVector, Update};

/// y-protocols top-level message types.
const MSG_SYNC: u32 = 0;
const MSG_AWARENESS: u32 = 1;
const MSG_QUERY_AWARENESS: u32 = 3;
/// Sync sub-types.
const SYNC_STEP_1: u32 = 0;
const SYNC_STEP_2: u32 = 1;
const SYNC_UPDATE: u32 = 2;

/// Yjs client ids are 53-bit so JavaScript numbers hold them exactly; a larger one is not a
/// client id any real peer can have.
const MAX_CLIENT_ID: u64 = (1 << 53) - 1;

/// Why a client frame was refused. The caller closes that one connection and logs the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The bytes do not follow y-protocols (truncated varint, bad length, undecodable update).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A decodable update was refused, or made yrs panic, while being applied. The document in
    /// memory may now hold part of it, so the caller must drop the room and reload it from
    /// storage, which holds only whole updates.
    #[error("document poisoned: {0}")]
    Poisoned(String),
}

impl ProtocolError {
    /// The WebSocket close code for the offending connection: 1007, "invalid frame payload data"
    /// (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        1007
    }

    /// Whether the room's in-memory document can no longer be trusted.
    pub fn poisons_room(&self) -> bool {
        matches!(self, ProtocolError::Poisoned(_))
    }

    fn malformed(what: &str, err: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::Malformed(format!("{what}: {err}"))
    }
}

/// One awareness entry as it travels: a client's state (JSON text) and its logical clock. `None`
/// is the wire's `null`, meaning "this client is gone".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwarenessEntry {
    pub client_id: u64,
    pub clock: u32,
    pub state: Option<Arc<str>>,
}

/// A decoded client message.
#[derive(Debug)]
pub enum Incoming {
    SyncStep1(StateVector),
    /// SyncStep2 and Update are handled alike: apply, persist, relay.
    Update(Update),
    Awareness(Vec<AwarenessEntry>),
    QueryAwareness,
}

/// Decodes every message in `frame`. Unknown message types (including auth, which clients never
/// send to a server, and unknown sync sub-types) cannot be skipped precisely because their layout
/// is unknown, so they end the frame: the messages before them are kept, the rest is ignored.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Incoming>, ProtocolError> {
    if frame.is_empty() {
        return Err(ProtocolError::Malformed("empty frame".into()));
    }
    let mut cursor = Cursor::new(frame);
    let mut messages = Vec::new();
    let mut awareness_budget = MAX_AWARENESS_ENTRIES_PER_FRAME;
    while cursor.has_content() {
        let tag: u32 = cursor.read_var().map_err(|e| ProtocolError::malformed("message type", e))?;
        match tag {
            MSG_SYNC => {
                let sub: u32 = cursor.read_var().map_err(|e| ProtocolError::malformed("sync type", e))?;
                if !matches!(sub, SYNC_STEP_1 | SYNC_STEP_2 | SYNC_UPDATE) {
                    break;
                }
                let payload = cursor.read_buf().map_err(|e| ProtocolError::malformed("sync payload", e))?;
                messages.push(if sub == SYNC_STEP_1 {
                    Incoming::SyncStep1(decode_state_vector(payload)?)
                } else {
                    Incoming::Update(decode_update(payload)?)
                });
            }
            MSG_AWARENESS => {
                let payload = cursor.read_buf().map_err(|e| ProtocolError::malformed("awareness payload", e))?;
                messages.push(Incoming::Awareness(decode_awareness(payload, &mut awareness_budget)?));
            }
            MSG_QUERY_AWARENESS => messages.push(Incoming::QueryAwareness),
            _ => break,
        }
    }
    Ok(messages)
}

/// Checks a client id before yrs sees it: yrs asserts the 53-bit bound rather than reporting it.
fn check_client_id(id: u64) -> Result<u64, ProtocolError> {
    if id > MAX_CLIENT_ID {
        return Err(ProtocolError::Malformed(format!("client id {id} exceeds 53 bits")));
    }
    Ok(id)
}

pub(crate) fn decode_state_vector(payload: &[u8]) -> Result<StateVector, ProtocolError> {
    // Validate the client ids first (layout: count, then (client, clock) pairs).
    let mut cursor = Cursor::new(payload);
    let count: u32 = cursor.read_var().map_err(|e| ProtocolError::malformed("state vector", e))?;
    for _ in 0..count {
        let client: u64 = cursor.read_var().map_err(|e| ProtocolError::malformed("state vector", e))?;
        check_client_id(client)?;
        let _clock: u32 = cursor.read_var().map_err(|e| ProtocolError::malformed("state vector", e))?;
    }
    without_panics("state vector", || StateVector::decode_v1(payload))
}

/// Each client section of an update holds at least three varints (block count, client, clock).
const MIN_CLIENT_SECTION_BYTES: usize = 3;

pub(crate) fn decode_update(payload: &[u8]) -> Result<Update, ProtocolError> {
    // yrs reserves a hash table sized by the update's leading client count before reading any
    // entry, so a five-byte frame declaring four billion clients would make it allocate and zero
    // gigabytes. A count the payload cannot hold is refused before yrs sees it, which bounds the
    // allocation by the frame size (itself limited by the server).
    let clients: u32 = Cursor::new(payload).read_var().map_err(|e| ProtocolError::malformed("update", e))?;
    if clients as usize > payload.len() / MIN_CLIENT_SECTION_BYTES {
        return Err(ProtocolError::malformed(
            "update",
            format!("declares {clients} clients in {} bytes", payload.len()),
        ));
    }
    without_panics("update", || Update::decode_v1(payload))
}

/// Runs a yrs decoder, turning a panic into a malformed-frame error. yrs's decoders can panic on
/// hostile input (the property test below found an integer overflow in `Update::decode_v1`), and
/// a client's bytes must never take the server down. Decoding touches nothing shared, so nothing
/// is left half-done after an unwind.
fn without_panics<T, E: std::fmt::Display>(
    what: &str,
    decode: impl FnOnce() -> Result<T, E> + std::panic::UnwindSafe,
) -> Result<T, ProtocolError> {
    match std::panic::catch_unwind(decode) {
        Ok(decoded) => decoded.map_err(|e| ProtocolError::malformed(what, e)),
        Err(_) => Err(ProtocolError::malformed(what, "the decoder panicked")),
    }
}

/// Awareness entries one frame may carry, across all its messages. A client sends its own state
/// (one entry); a room never remembers more clients than this anyway. Decoding takes about ten
/// times the wire size in memory (an allocation per state), so a 16 MiB frame of tiny entries
/// would cost hundreds of megabytes before any limit of the room could apply.
const MAX_AWARENESS_ENTRIES_PER_FRAME: usize = super::awareness::MAX_CLIENTS_PER_ROOM;

fn decode_awareness(payload: &[u8], budget: &mut usize) -> Result<Vec<AwarenessEntry>, ProtocolError> {
    let mut cursor = Cursor::new(payload);
    let count: u32 = cursor.read_var().map_err(|e| ProtocolError::malformed("awareness", e))?;
    *budget = budget.checked_sub(count as usize).ok_or_else(|| {
        ProtocolError::malformed(
            "awareness",
            format!("more than {MAX_AWARENESS_ENTRIES_PER_FRAME} entries in one frame"),
        )
    })?;
    // Each entry takes at least three bytes, which bounds the allocation by the frame size.
    let mut entries = Vec::with_capacity((count as usize).min(payload.len() / 3));
    for _ in 0..count {
        let client_id: u64 = cursor.read_var().map_err(|e| ProtocolError::malformed("awareness client", e))?;
        let client_id = check_client_id(client_id)?;
        let clock: u32 = cursor.read_var().map_err(|e| ProtocolError::malformed("awareness clock", e))?;
        let json = cursor.read_string().map_err(|e| ProtocolError::malformed("awareness state", e))?;
        let state = (json != "null").then(|| Arc::from(json));
        entries.push(AwarenessEntry { client_id, clock, state });
    }
    Ok(entries)
}

pub fn encode_sync_step1(sv: &StateVector) -> Vec<u8> {
    encode_sync(SYNC_STEP_1, &sv.encode_v1())
}

pub fn encode_sync_step2(update: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_STEP_2, update)
}

pub fn encode_update(update: &[u8]) -> Vec<u8> {
    encode_sync(SYNC_UPDATE, update)
}

fn encode_sync(sub: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.write_var(MSG_SYNC);
    out.write_var(sub);
    out.write_buf(payload);
    out
}

pub(crate) fn encode_awareness<'a>(entries: impl ExactSizeIterator<Item = (u64, u32, Option<&'a str>)>) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.write_var(entries.len());
    for (client_id, clock, state) in entries {
        payload.write_var(client_id);
        payload.write_var(clock);
        payload.write_string(state.unwrap_or("null"));
    }
    let mut out = Vec::with_capacity(payload.len() + 6);
    out.write_var(MSG_AWARENESS);
    out.write_buf(&payload);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Frames as a client library would build them, for tests across the module.
    pub(crate) fn awareness_frame(entries: &[(u64, u32, Option<&str>)]) -> Vec<u8> {
        encode_awareness(entries.iter().copied())
    }

    fn check_malformed(frame: &[u8]) {
        assert!(matches!(decode_frame(frame), Err(ProtocolError::Malformed(_))), "expected {frame:?} to be malformed");
    }

    #[test]
    fn a_frame_carries_a_bounded_number_of_awareness_entries() {
        let entries: Vec<(u64, u32, Option<&str>)> =
            (0..MAX_AWARENESS_ENTRIES_PER_FRAME as u64).map(|id| (id, 1, Some("{}"))).collect();
        assert!(decode_frame(&awareness_frame(&entries)).is_ok(), "the limit itself is allowed");
        let mut over = entries.clone();
        over.push((1 << 40, 1, None));
        check_malformed(&awareness_frame(&over));
        // The budget spans the messages of one frame.
        let mut two = awareness_frame(&entries[..600]);
        two.extend(awareness_frame(&entries[600..]));
        assert!(decode_frame(&two).is_ok());
        two.extend(awareness_frame(&entries[..1]));
        check_malformed(&two);
        // A declared count alone, without the entries, is refused before anything is decoded.
        let mut declared = vec![1];
        let mut payload = Vec::new();
        payload.write_var(u32::MAX);
        declared.write_buf(&payload);
        check_malformed(&declared);
    }

    #[test]
    fn a_client_count_the_update_cannot_hold_is_refused_before_yrs_allocates() {
        for declared in [u32::MAX, 200_000_000, 5] {
            let mut payload = Vec::new();
            payload.write_var(declared);
            payload.extend_from_slice(&[0; 8]);
            let frame = encode_sync(2, &payload);
            let err = decode_frame(&frame).unwrap_err().to_string();
            assert!(err.contains(&format!("declares {declared} clients")), "{declared}: {err}");
        }
    }

    #[test]
    fn a_panicking_decoder_is_a_malformed_frame() {
        let err = without_panics::<(), String>("update", || panic!("overflow")).unwrap_err();
        assert_eq!(err, ProtocolError::Malformed("update: the decoder panicked".into()));
        assert!(!err.poisons_room());
        assert!(ProtocolError::Poisoned("refused".into()).poisons_room());
        assert_eq!(
            without_panics::<u8, String>("update", || Err("bad".into())).unwrap_err().to_string(),
            "malformed frame: update: bad"
        );
    }

    #[test]
    fn empty_doc_step1_has_the_documented_bytes() {
        assert_eq!(encode_sync_step1(&StateVector::default()), vec![0, 0, 1, 0]);
    }

    #[test]
    fn malformed_frames_are_refused() {
        check_malformed(&[]);
        // Truncated varint: the continuation bit promises another byte.
        check_malformed(&[0x80]);
        check_malformed(&[0, 0x80]);
        // Payload length larger than the frame.
        check_malformed(&[0, 2, 10, 1, 2]);
        // Update payload that is not an update.
        check_malformed(&[0, 2, 3, 0xff, 0xff, 0xff]);
        // Awareness entry with a client id beyond 53 bits.
        check_malformed(&awareness_frame(&[(1 << 60, 1, Some("{}"))]));
        // Awareness string that is not UTF-8.
        check_malformed(&[1, 5, 1, 1, 1, 1, 0xff]);
    }

    #[test]
    fn unknown_types_end_the_frame_without_error() {
        let mut frame = encode_sync_step1(&StateVector::default());
        frame.extend_from_slice(&[42, 1, 2, 3]);
        frame.extend_from_slice(&encode_sync_step1(&StateVector::default()));
        let messages = decode_frame(&frame).unwrap();
        assert_eq!(messages.len(), 1);
        assert!(decode_frame(&[0, 9, 0]).unwrap().is_empty());
        assert!(decode_frame(&[2, 0]).unwrap().is_empty());
    }

    #[test]
    fn several_messages_in_one_frame_are_all_decoded() {
        let mut frame = encode_sync_step1(&StateVector::default());
        frame.extend_from_slice(&awareness_frame(&[(7, 1, Some("{\"a\":1}")), (8, 2, None)]));
        frame.push(MSG_QUERY_AWARENESS as u8);
        let messages = decode_frame(&frame).unwrap();
        assert!(matches!(messages[0], Incoming::SyncStep1(_)));
        match &messages[1] {
            Incoming::Awareness(entries) => {
                assert_eq!(entries[0], AwarenessEntry { client_id: 7, clock: 1, state: Some("{\"a\":1}".into()) });
                assert_eq!(entries[1], AwarenessEntry { client_id: 8, clock: 2, state: None });
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(messages[2], Incoming::QueryAwareness));
    }

    proptest! {
        /// Whatever arrives, decoding returns a value or an error; it never panics.
        #[test]
        fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_frame(&frame);
        }

        /// Arbitrary bytes behind a valid message header exercise the update and state-vector
        /// decoders specifically.
        #[test]
        fn arbitrary_payloads_never_panic(sub in 0u8..3, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut frame = vec![0, sub];
            frame.write_buf(&payload);
            let _ = decode_frame(&frame);
        }
    }
}
