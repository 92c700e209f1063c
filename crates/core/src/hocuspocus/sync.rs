//! What a Hocuspocus provider expects around the y-protocols sync: the server's own SyncStep1
//! before the answer to each of the provider's, and one `SyncStatus` per SyncStep2 or Update.
//!
//! The provider counts `unsyncedChanges` up per update it sends and down per applied status, and
//! calls itself synced at zero. The status is part of the room's reply to the sender, and the
//! server sends replies only after the batch's updates are committed, so zero means on disk.

use bytes::Bytes;

use super::wire::{MSG_SYNC_STATUS, SYNC_STEP_1, SYNC_STEP_2, SYNC_UPDATE};
use crate::share::Access;
use crate::yjs::{ConnId, Effects, ProtocolError, Room};

/// The scope `Authenticated` announces for an access (upstream spells read-only `readonly`).
pub fn scope(access: Access) -> &'static str {
    match access {
        Access::ReadWrite => "read-write",
        Access::ReadOnly => "readonly",
    }
}

/// The `SyncStatus` body: applied, or rejected (a read-only connection's edit).
fn status(applied: bool) -> Bytes {
    Bytes::from(vec![MSG_SYNC_STATUS as u8, u8::from(applied)])
}

/// Feeds one y-protocols message of a Hocuspocus connection (the frame minus its key, as
/// [`super::Message::Room`] holds it) to the room; the reply frames are y-protocols messages
/// and Hocuspocus bodies, each to be sent behind the key.
///
/// On a read-only connection nothing is applied; as upstream answers it, an Update is rejected
/// and a SyncStep2 is acknowledged as applied only if it held nothing the document lacks.
pub fn receive(room: &mut Room, conn: ConnId, ydoc: &[u8], access: Access, now: i64) -> Result<Effects, ProtocolError> {
    let (mut effects, refused) = match access {
        Access::ReadWrite => (room.receive(conn, ydoc, now)?, false),
        Access::ReadOnly => room.receive_read_only(conn, ydoc, now)?,
    };
    // Sync sub-types are single-byte varints; the decoder accepted only 0, 1 and 2.
    match ydoc {
        [0, SYNC_STEP_1_BYTE, ..] => effects.reply.insert(0, room.sync_step1()),
        [0, SYNC_STEP_2_BYTE, ..] => effects.reply.push(status(!refused)),
        [0, SYNC_UPDATE_BYTE, ..] => effects.reply.push(status(access == Access::ReadWrite)),
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

    fn check(room: &mut Room, access: Access, ydoc: &[u8], expected_reply: &[&[u8]], persisted: usize) {
        let effects = receive(room, 1, ydoc, access, 0).unwrap();
        let reply: Vec<&[u8]> = effects.reply.iter().map(|frame| &frame[..]).collect();
        assert_eq!(reply, expected_reply, "reply to {ydoc:02x?}");
        assert_eq!(effects.persist.len(), persisted);
    }

    #[test]
    fn step1_gets_the_servers_step1_then_step2_and_updates_get_one_ack() {
        let mut room = Room::default();
        let _ = room.connect(1);
        // The reference session (hocuspocus-protocol.md §7).
        let rw = Access::ReadWrite;
        check(&mut room, rw, &[0, 0, 1, 0], &[&[0, 0, 1, 0], &[0, 1, 2, 0, 0]], 0);
        check(&mut room, rw, &[0, 1, 2, 0, 0], &[&[8, 1]], 0);
        let hi = [0, 2, 12, 1, 1, 1, 0, 4, 1, 1, b't', 2, b'h', b'i', 0];
        check(&mut room, rw, &hi, &[&[8, 1]], 1);
        // A duplicate is acknowledged too (the provider counted it), and stored no more.
        check(&mut room, rw, &hi, &[&[8, 1]], 0);
        // Awareness and queries are y-protocols' own business.
        let effects = receive(&mut room, 1, &[1, 6, 1, 1, 1, 2, b'{', b'}'], rw, 0).unwrap();
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
        let update = yrs::sync::Message::Sync(yrs::sync::SyncMessage::Update(update)).encode_v1();
        let _ = receive(&mut room, 1, &update, Access::ReadWrite, 0).unwrap();
        let effects = receive(&mut room, 2, &[0, 0, 1, 0], Access::ReadWrite, 0).unwrap();
        assert_eq!(effects.reply[0], room.sync_step1());
        assert_ne!(effects.reply[0], vec![0, 0, 1, 0]);
        assert_eq!(scope(Access::ReadOnly), "readonly");
    }

    #[test]
    fn a_read_only_connection_is_told_which_edits_were_refused() {
        let mut room = Room::default();
        let ro = Access::ReadOnly;
        check(&mut room, ro, &[0, 0, 1, 0], &[&[0, 0, 1, 0], &[0, 1, 2, 0, 0]], 0);
        check(&mut room, ro, &[0, 1, 2, 0, 0], &[&[8, 1]], 0);
        let hi = [0, 2, 12, 1, 1, 1, 0, 4, 1, 1, b't', 2, b'h', b'i', 0];
        check(&mut room, ro, &hi, &[&[8, 0]], 0);
        let mut step2 = hi;
        step2[1] = 1;
        check(&mut room, ro, &step2, &[&[8, 0]], 0);
        assert_eq!(room.encode_state().unwrap(), vec![0, 0], "nothing was applied");
    }

    use yrs::updates::encoder::Encode;
}
