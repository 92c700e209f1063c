//! What a Hocuspocus provider expects around the y-protocols sync: the server's own SyncStep1
//! before the answer to each of the provider's, and one `SyncStatus` per SyncStep2 or Update.
//!
//! The provider counts `unsyncedChanges` up per update it sends and down per applied status, and
//! calls itself synced at zero. The status is part of the room's reply to the sender, and the
//! server sends replies only after the batch's updates are committed, so zero means on disk.

use super::wire::{MSG_SYNC_STATUS, SYNC_STEP_1, SYNC_STEP_2, SYNC_UPDATE};
use crate::yjs::{ConnId, Effects, ProtocolError, Room};

/// What an authenticated connection may do with a document, as `Authenticated` announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    ReadWrite,
    ReadOnly,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadWrite => "read-write",
            Scope::ReadOnly => "readonly",
        }
    }
}

/// The `SyncStatus` body for an applied update.
const APPLIED: [u8; 2] = [MSG_SYNC_STATUS as u8, 1];

/// Feeds one y-protocols message of a Hocuspocus connection (the frame minus its key, as
/// [`super::Message::Room`] holds it) to the room; the reply frames are y-protocols messages
/// and Hocuspocus bodies, each to be sent behind the key.
pub fn receive(room: &mut Room, conn: ConnId, ydoc: &[u8], now: i64) -> Result<Effects, ProtocolError> {
    let mut effects = room.receive(conn, ydoc, now)?;
    // Sync sub-types are single-byte varints; the decoder accepted only 0, 1 and 2.
    match ydoc {
        [0, SYNC_STEP_1_BYTE, ..] => effects.reply.insert(0, room.sync_step1()),
        [0, SYNC_STEP_2_BYTE | SYNC_UPDATE_BYTE, ..] => effects.reply.push(APPLIED.to_vec()),
        _ => {}
    }
    Ok(effects)
}

const SYNC_STEP_1_BYTE: u8 = SYNC_STEP_1 as u8;
const SYNC_STEP_2_BYTE: u8 = SYNC_STEP_2 as u8;
const SYNC_UPDATE_BYTE: u8 = SYNC_UPDATE as u8;

#[cfg(test)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update, WriteTxn};

    use super::*;

    fn check(room: &mut Room, ydoc: &[u8], expected_reply: &[&[u8]], persisted: usize) {
        let effects = receive(room, 1, ydoc, 0).unwrap();
        let reply: Vec<&[u8]> = effects.reply.iter().map(Vec::as_slice).collect();
        assert_eq!(reply, expected_reply, "reply to {ydoc:02x?}");
        assert_eq!(effects.persist.len(), persisted);
    }

    #[test]
    fn step1_gets_the_servers_step1_then_step2_and_updates_get_one_ack() {
        let mut room = Room::default();
        let _ = room.connect(1);
        // The reference session (hocuspocus-protocol.md §7).
        check(&mut room, &[0, 0, 1, 0], &[&[0, 0, 1, 0], &[0, 1, 2, 0, 0]], 0);
        check(&mut room, &[0, 1, 2, 0, 0], &[&[8, 1]], 0);
        let hi = [0, 2, 12, 1, 1, 1, 0, 4, 1, 1, b't', 2, b'h', b'i', 0];
        check(&mut room, &hi, &[&[8, 1]], 1);
        // A duplicate is acknowledged too (the provider counted it), and stored no more.
        check(&mut room, &hi, &[&[8, 1]], 0);
        // Awareness and queries are y-protocols' own business.
        let effects = receive(&mut room, 1, &[1, 6, 1, 1, 1, 2, b'{', b'}'], 0).unwrap();
        assert_eq!(effects.reply.len(), 1, "awareness is echoed to the sender, never acked");
        let doc = Doc::new();
        let state = room.encode_state().unwrap();
        doc.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
        let txn = doc.transact();
        assert_eq!(txn.get_text("t").unwrap().get_string(&txn), "hi");
    }

    #[test]
    fn the_servers_step1_carries_its_state() {
        let mut room = Room::default();
        let writer = Doc::new();
        let update = {
            let mut txn = writer.transact_mut();
            txn.get_or_insert_text("t").insert(&mut txn, 0, "x");
            txn.encode_update_v1()
        };
        let _ = receive(&mut room, 1, &yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1(), 0)
            .unwrap();
        let effects = receive(&mut room, 2, &[0, 0, 1, 0], 0).unwrap();
        assert_eq!(effects.reply[0], room.sync_step1());
        assert_ne!(effects.reply[0], vec![0, 0, 1, 0]);
        assert_eq!(Scope::ReadOnly.as_str(), "readonly");
    }

    use yrs::updates::encoder::Encode;
}
