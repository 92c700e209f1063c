//! The bytes of bus messages: what nodes tell each other, encoded and decoded without I/O.
//!
//! A message is `version (1) · sender node id (16) · kind (1) · fields`, each field a big-endian
//! `i64`, or a byte string as a `u32` length and its bytes; a list is a `u32` count of strings.
//! The version lets a node that meets a newer format drop it (and catch up from the database)
//! instead of misreading it.

/// Format version written first in every message.
const VERSION: u8 = 1;

/// Which node sent a message: random per process, so a node ignores what it published itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    pub fn random() -> NodeId {
        NodeId(*uuid::Uuid::new_v4().as_bytes())
    }
}

/// The channel a message travels on (one per kind of listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Yjs rooms: updates, awareness, stateless messages.
    Docs,
    /// Op-log event streams: new vault heads.
    Heads,
    /// Long-lived connections: revoked devices.
    Revocations,
}

impl Topic {
    pub const ALL: [Topic; 3] = [Topic::Docs, Topic::Heads, Topic::Revocations];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Docs => "concord.docs",
            Topic::Heads => "concord.heads",
            Topic::Revocations => "concord.revocations",
        }
    }
}

/// Names a document the way rooms are found (`workspace_id`, `name`) and, to tell it from a
/// later document of the same name, by its store id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRef {
    pub workspace_id: String,
    pub name: String,
    pub doc_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A node committed the document's updates `first..=last` (seqs); `updates` are their bytes
    /// (lib0 v1), left out when large: the receiver reads them from the database then.
    DocUpdates { doc: DocRef, first: i64, last: i64, updates: Option<Vec<Vec<u8>>> },
    /// An awareness frame (y-protocols) that a node's room broadcast to its connections, with
    /// the sender's id of the connection that set those states (0: several, answering a query).
    Awareness { doc: DocRef, conn: u64, frame: Vec<u8> },
    /// A room just opened on the sender: rooms of the document elsewhere answer with their
    /// awareness states, so its clients see cursors before the next renewal (15 s).
    AwarenessQuery { doc: DocRef },
    /// A Hocuspocus stateless message (its body) for the document's Hocuspocus connections.
    Stateless { doc: DocRef, body: Vec<u8> },
    /// An op-log push committed: the vault's head is now at least `head`.
    Head { user_id: String, vault_id: String, head: i64 },
    /// A device's credentials ended (revoked, signed out, user blocked or deleted).
    DeviceRevoked { device_id: String },
    /// The sender dropped messages it could not publish: every node catches up from the database.
    CatchUp,
    /// A document (`name`), or a whole workspace (no name), was deleted through the sender: rooms
    /// of it elsewhere check the database and close.
    Deleted { workspace_id: String, name: Option<String> },
    /// The sender is alive (`bus::liveness`): sent every second, so the others notice its death
    /// and drop the awareness of its connections.
    Heartbeat,
}

impl Message {
    pub fn topic(&self) -> Topic {
        match self {
            Message::DocUpdates { .. }
            | Message::Awareness { .. }
            | Message::AwarenessQuery { .. }
            | Message::Stateless { .. }
            | Message::CatchUp
            | Message::Deleted { .. }
            | Message::Heartbeat => Topic::Docs,
            Message::Head { .. } => Topic::Heads,
            Message::DeviceRevoked { .. } => Topic::Revocations,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("message ends early")]
    Truncated,
    #[error("{0} bytes after the message")]
    Trailing(usize),
    #[error("a name is not UTF-8")]
    Utf8,
}

pub fn encode(node: NodeId, message: &Message) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(64));
    out.0.push(VERSION);
    out.0.extend_from_slice(&node.0);
    match message {
        Message::DocUpdates { doc, first, last, updates } => {
            out.0.push(1);
            out.doc(doc);
            out.int(*first);
            out.int(*last);
            match updates {
                None => out.0.push(0),
                Some(list) => {
                    out.0.push(1);
                    out.len(list.len());
                    list.iter().for_each(|u| out.bytes(u));
                }
            }
        }
        Message::Awareness { doc, conn, frame } => {
            out.0.push(2);
            out.doc(doc);
            out.int(*conn as i64);
            out.bytes(frame);
        }
        Message::AwarenessQuery { doc } => {
            out.0.push(3);
            out.doc(doc);
        }
        Message::Stateless { doc, body } => {
            out.0.push(4);
            out.doc(doc);
            out.bytes(body);
        }
        Message::Head { user_id, vault_id, head } => {
            out.0.push(5);
            out.bytes(user_id.as_bytes());
            out.bytes(vault_id.as_bytes());
            out.int(*head);
        }
        Message::DeviceRevoked { device_id } => {
            out.0.push(6);
            out.bytes(device_id.as_bytes());
        }
        Message::CatchUp => out.0.push(7),
        Message::Deleted { workspace_id, name } => {
            out.0.push(8);
            out.bytes(workspace_id.as_bytes());
            match name {
                None => out.0.push(0),
                Some(name) => {
                    out.0.push(1);
                    out.bytes(name.as_bytes());
                }
            }
        }
        Message::Heartbeat => out.0.push(9),
    }
    out.0
}

pub fn decode(bytes: &[u8]) -> Result<(NodeId, Message), DecodeError> {
    let mut r = Reader(bytes);
    let version = r.byte()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let node = NodeId(r.take(16)?.try_into().map_err(|_| DecodeError::Truncated)?);
    let message = match r.byte()? {
        1 => {
            let doc = r.doc()?;
            let (first, last) = (r.int()?, r.int()?);
            let updates = match r.byte()? {
                0 => None,
                _ => {
                    let count = r.len()?;
                    // Each update takes at least its 4-byte length: a count beyond that is a lie,
                    // refused before allocating for it.
                    if count > r.0.len() / 4 {
                        return Err(DecodeError::Truncated);
                    }
                    Some((0..count).map(|_| r.bytes().map(<[u8]>::to_vec)).collect::<Result<_, _>>()?)
                }
            };
            Message::DocUpdates { doc, first, last, updates }
        }
        2 => Message::Awareness { doc: r.doc()?, conn: r.int()? as u64, frame: r.bytes()?.to_vec() },
        3 => Message::AwarenessQuery { doc: r.doc()? },
        4 => Message::Stateless { doc: r.doc()?, body: r.bytes()?.to_vec() },
        5 => Message::Head { user_id: r.string()?, vault_id: r.string()?, head: r.int()? },
        6 => Message::DeviceRevoked { device_id: r.string()? },
        7 => Message::CatchUp,
        8 => {
            let workspace_id = r.string()?;
            let name = match r.byte()? {
                0 => None,
                _ => Some(r.string()?),
            };
            Message::Deleted { workspace_id, name }
        }
        9 => Message::Heartbeat,
        kind => return Err(DecodeError::Kind(kind)),
    };
    if !r.0.is_empty() {
        return Err(DecodeError::Trailing(r.0.len()));
    }
    Ok((node, message))
}

struct Writer(Vec<u8>);

impl Writer {
    fn int(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn len(&mut self, len: usize) {
        // Bus messages are bounded far below 4 GiB (`sync::room` leaves large updates out).
        self.0.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    fn doc(&mut self, doc: &DocRef) {
        self.bytes(doc.workspace_id.as_bytes());
        self.bytes(doc.name.as_bytes());
        self.bytes(doc.doc_id.as_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().map_err(|_| DecodeError::Truncated)?))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| DecodeError::Truncated)?) as usize)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.len()?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Utf8)
    }

    fn doc(&mut self) -> Result<DocRef, DecodeError> {
        Ok(DocRef { workspace_id: self.string()?, name: self.string()?, doc_id: self.string()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: NodeId = NodeId([7; 16]);

    fn doc() -> DocRef {
        DocRef { workspace_id: "ws_1".into(), name: "notes/é".into(), doc_id: "doc_9".into() }
    }

    fn check(bytes: &[u8], expected: Result<Message, DecodeError>) {
        assert_eq!(decode(bytes), expected.map(|m| (NODE, m)), "decoding {bytes:?}");
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::DocUpdates { doc: doc(), first: 3, last: 4, updates: Some(vec![vec![1, 2], vec![]]) },
            Message::DocUpdates { doc: doc(), first: 5, last: 9, updates: None },
            Message::DocUpdates { doc: doc(), first: 1, last: 1, updates: Some(vec![]) },
            Message::Awareness { doc: doc(), conn: u64::MAX, frame: vec![1, 0] },
            Message::AwarenessQuery { doc: doc() },
            Message::Stateless { doc: doc(), body: b"{\"hi\":1}".to_vec() },
            Message::Head { user_id: "u".into(), vault_id: "v".into(), head: i64::MAX },
            Message::DeviceRevoked { device_id: "dev_1".into() },
            Message::CatchUp,
            Message::Deleted { workspace_id: "ws_1".into(), name: Some("notes/é".into()) },
            Message::Deleted { workspace_id: "ws_1".into(), name: None },
            Message::Heartbeat,
        ];
        for message in messages {
            check(&encode(NODE, &message), Ok(message));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let revoked = encode(NODE, &Message::DeviceRevoked { device_id: "d".into() });
        let mut newer = revoked.clone();
        newer[0] = 2;
        let mut unknown = revoked.clone();
        unknown[17] = 99;
        let mut trailing = revoked.clone();
        trailing.push(0);
        let mut not_utf8 = revoked[..18].to_vec();
        not_utf8.extend_from_slice(&[0, 0, 0, 1, 0xff]);
        // A count of updates far beyond what the bytes could hold.
        let mut lying = encode(NODE, &Message::DocUpdates { doc: doc(), first: 1, last: 1, updates: None });
        lying.pop();
        lying.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff]);
        let cases: [(&[u8], DecodeError); 8] = [
            (&[], DecodeError::Truncated),
            (&[1, 7, 7], DecodeError::Truncated),
            (&newer, DecodeError::Version(2)),
            (&unknown, DecodeError::Kind(99)),
            (&trailing, DecodeError::Trailing(1)),
            (&revoked[..revoked.len() - 1], DecodeError::Truncated),
            (&not_utf8, DecodeError::Utf8),
            (&lying, DecodeError::Truncated),
        ];
        for (bytes, error) in cases {
            check(bytes, Err(error));
        }
    }

    #[test]
    fn each_kind_has_its_topic() {
        let cases = [
            (Message::AwarenessQuery { doc: doc() }, Topic::Docs),
            (Message::Head { user_id: "u".into(), vault_id: "v".into(), head: 1 }, Topic::Heads),
            (Message::DeviceRevoked { device_id: "d".into() }, Topic::Revocations),
        ];
        for (message, topic) in cases {
            assert_eq!(message.topic(), topic);
        }
    }
}
