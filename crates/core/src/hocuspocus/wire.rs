//! Hocuspocus frames: decoding what a provider sends and encoding what the server answers.
//!
//! The layout (lib0 varints and strings, the same primitives y-protocols uses, here yrs's own
//! `yrs::encoding`) is in `/work/shared/reference/hocuspocus-protocol.md` §1. A frame carries
//! exactly one message; trailing bytes are refused, so a frame never means two things.

use yrs::encoding::read::{Cursor, Read};
use yrs::encoding::write::Write;

/// Message types (provider 4.x `MessageType`).
const MSG_SYNC: u32 = 0;
const MSG_AWARENESS: u32 = 1;
const MSG_AUTH: u32 = 2;
const MSG_QUERY_AWARENESS: u32 = 3;
const MSG_SYNC_REPLY: u32 = 4;
const MSG_STATELESS: u32 = 5;
const MSG_BROADCAST_STATELESS: u32 = 6;
const MSG_CLOSE: u32 = 7;
pub(super) const MSG_SYNC_STATUS: u32 = 8;
const MSG_PING: u8 = 9;
const MSG_PONG: u8 = 10;
/// Auth sub-types.
const AUTH_TOKEN: u32 = 0;
const AUTH_PERMISSION_DENIED: u32 = 1;
const AUTH_AUTHENTICATED: u32 = 2;
/// y-protocols sync sub-types.
pub(super) const SYNC_STEP_1: u32 = 0;
pub(super) const SYNC_STEP_2: u32 = 1;
pub(super) const SYNC_UPDATE: u32 = 2;

/// The keepalive the server sends to providers that announced a version (4.x answer it with a
/// lone Pong; 3.x would throw on it).
pub const PING: &[u8] = &[MSG_PING];

/// Why a frame was refused; the server closes the socket (1007) and applies nothing of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed Hocuspocus frame: {0}")]
pub struct FrameError(pub String);

fn malformed(what: &str, err: impl std::fmt::Display) -> FrameError {
    FrameError(format!("{what}: {err}"))
}

/// lib0 `varBytes`, borrowed from the frame rather than from the cursor (yrs's `read_buf` ties
/// the slice to the cursor's borrow).
fn read_bytes<'a>(cursor: &mut Cursor<'a>, what: &str) -> Result<&'a [u8], FrameError> {
    let buf: &'a [u8] = cursor.buf;
    let len: u32 = cursor.read_var().map_err(|e| malformed(what, e))?;
    let start = cursor.next;
    cursor.read_exact(len as usize).map_err(|e| malformed(what, e))?;
    Ok(&buf[start..start + len as usize])
}

/// lib0 `varString`: `varBytes` that must be UTF-8.
fn read_str<'a>(cursor: &mut Cursor<'a>, what: &str) -> Result<&'a str, FrameError> {
    std::str::from_utf8(read_bytes(cursor, what)?).map_err(|e| malformed(what, e))
}

/// One decoded client message, borrowing from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// The provider's lone Pong, answering our Ping.
    Pong,
    /// `Auth` with the provider's token (`""` when it has none) and, since 4.0, its version.
    Auth { key: &'a str, token: &'a str, version: Option<&'a str> },
    /// A y-protocols message for the document's room (sync, awareness or query-awareness), its
    /// type byte included; `Sync` also says which step, for acknowledgements.
    Room { key: &'a str, ydoc: &'a [u8] },
    /// Stateless payload, relayed to the document's other Hocuspocus connections.
    Stateless { key: &'a str, payload: &'a str },
    /// The provider detached from the document (or sent a type only servers send, which
    /// upstream also answers by closing the document).
    Close { key: &'a str },
    /// A type this server does not handle (acks and pings echoed back, future types); provider
    /// 4.x and server 4.x ignore these too.
    Ignored { key: &'a str },
}

impl Message<'_> {
    /// The frame's key, if it has one (everything but Pong).
    pub fn key(&self) -> Option<&str> {
        match self {
            Message::Pong => None,
            Message::Auth { key, .. }
            | Message::Room { key, .. }
            | Message::Stateless { key, .. }
            | Message::Close { key }
            | Message::Ignored { key } => Some(key),
        }
    }
}

/// Decodes one client frame.
pub fn decode(frame: &[u8]) -> Result<Message<'_>, FrameError> {
    if frame == [MSG_PONG] {
        return Ok(Message::Pong);
    }
    let mut cursor = Cursor::new(frame);
    let key = read_str(&mut cursor, "key")?;
    let start = cursor.next;
    let kind: u32 = cursor.read_var().map_err(|e| malformed("message type", e))?;
    let message = match kind {
        MSG_SYNC => {
            let sub: u32 = cursor.read_var().map_err(|e| malformed("sync type", e))?;
            if !matches!(sub, SYNC_STEP_1 | SYNC_STEP_2 | SYNC_UPDATE) {
                return Err(FrameError(format!("unknown sync type {sub}")));
            }
            read_bytes(&mut cursor, "sync payload")?;
            Message::Room { key, ydoc: &frame[start..] }
        }
        MSG_AWARENESS => {
            read_bytes(&mut cursor, "awareness payload")?;
            Message::Room { key, ydoc: &frame[start..] }
        }
        MSG_QUERY_AWARENESS => Message::Room { key, ydoc: &frame[start..] },
        MSG_AUTH => {
            let sub: u32 = cursor.read_var().map_err(|e| malformed("auth type", e))?;
            if sub != AUTH_TOKEN {
                return Err(FrameError(format!("auth type {sub} is the server's")));
            }
            let token = read_str(&mut cursor, "token")?;
            let version = if cursor.has_content() { Some(read_str(&mut cursor, "version")?) } else { None };
            Message::Auth { key, token, version }
        }
        MSG_STATELESS => {
            let payload = read_str(&mut cursor, "stateless payload")?;
            Message::Stateless { key, payload }
        }
        // A close may carry a reason in either direction; the server needs none of it.
        MSG_CLOSE => return Ok(Message::Close { key }),
        MSG_SYNC_REPLY | MSG_BROADCAST_STATELESS => return Ok(Message::Close { key }),
        // The body's layout is unknown, so it is not checked.
        _ => return Ok(Message::Ignored { key }),
    };
    if cursor.has_content() {
        return Err(FrameError(format!("{} bytes after the message", frame.len() - cursor.next)));
    }
    Ok(message)
}

/// The document name a key stands for: the key itself, or what precedes `\0` when the provider
/// uses session awareness (`name\0sessionId`).
pub fn doc_name(key: &str) -> &str {
    key.split_once('\0').map_or(key, |(name, _)| name)
}

/// A server frame: the key, then a message body (this module's encoders, or a y-protocols
/// message from the room).
pub fn frame(key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + body.len() + 4);
    out.write_string(key);
    out.extend_from_slice(body);
    out
}

fn with_string(prefix: &[u32], text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    for value in prefix {
        out.write_var(*value);
    }
    out.write_string(text);
    out
}

/// `Authenticated(scope)` body.
pub fn authenticated(access: crate::share::Access) -> Vec<u8> {
    with_string(&[MSG_AUTH, AUTH_AUTHENTICATED], super::scope(access))
}

/// `PermissionDenied(reason)` body.
pub fn permission_denied(reason: &str) -> Vec<u8> {
    with_string(&[MSG_AUTH, AUTH_PERMISSION_DENIED], reason)
}

/// `Close(reason)` body: ends one document, the socket stays open.
pub fn close(reason: &str) -> Vec<u8> {
    with_string(&[MSG_CLOSE], reason)
}

/// `Stateless(payload)` body.
pub fn stateless(payload: &str) -> Vec<u8> {
    with_string(&[MSG_STATELESS], payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(frame: &[u8], expected: Result<Message<'_>, &str>) {
        let got = decode(frame).map_err(|e| e.0);
        let expected = expected.map_err(str::to_owned);
        assert_eq!(got, expected, "frame {frame:02x?}");
    }

    const A: &[u8] = &[5, b'd', b'o', b'c', b'-', b'a'];

    fn with_key(body: &[u8]) -> Vec<u8> {
        [A, body].concat()
    }

    #[test]
    fn the_reference_session_decodes() {
        // Bytes from hocuspocus-protocol.md §7 (provider 4.8.0).
        check(
            &with_key(&[2, 0, 1, b'T', 5, b'4', b'.', b'8', b'.', b'0']),
            Ok(Message::Auth { key: "doc-a", token: "T", version: Some("4.8.0") }),
        );
        check(&with_key(&[2, 0, 0]), Ok(Message::Auth { key: "doc-a", token: "", version: None }));
        check(&with_key(&[0, 0, 1, 0]), Ok(Message::Room { key: "doc-a", ydoc: &[0, 0, 1, 0] }));
        let update = [0, 2, 12, 1, 1, 1, 0, 4, 1, 1, b't', 2, b'h', b'i', 0];
        check(&with_key(&update), Ok(Message::Room { key: "doc-a", ydoc: &update }));
        let awareness = [1, 6, 1, 1, 0, 2, b'{', b'}'];
        check(&with_key(&awareness), Ok(Message::Room { key: "doc-a", ydoc: &awareness }));
        check(&with_key(&[3]), Ok(Message::Room { key: "doc-a", ydoc: &[3] }));
        check(&with_key(&[7]), Ok(Message::Close { key: "doc-a" }));
        check(&with_key(&[6, 1, b'x']), Ok(Message::Close { key: "doc-a" }));
        check(&with_key(&[5, 2, b'h', b'i']), Ok(Message::Stateless { key: "doc-a", payload: "hi" }));
        check(&with_key(&[8, 1]), Ok(Message::Ignored { key: "doc-a" }));
        check(&with_key(&[42, 1, 2]), Ok(Message::Ignored { key: "doc-a" }));
        check(&[10], Ok(Message::Pong));
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert!(decode(&[]).is_err(), "empty");
        assert!(decode(&[9]).is_err(), "a lone Ping is not a client message");
        assert!(decode(&[0x80]).is_err(), "truncated key length");
        assert!(decode(&[3, b'a']).is_err(), "key longer than the frame");
        assert!(decode(&[1, 0xff, 0]).is_err(), "key not UTF-8");
        assert!(decode(A).is_err(), "no type");
        assert!(decode(&with_key(&[0, 3, 0])).is_err(), "unknown sync type");
        assert!(decode(&with_key(&[0, 2, 5, 1])).is_err(), "payload longer than the frame");
        assert!(decode(&with_key(&[0, 0, 1, 0, 0])).is_err(), "trailing bytes");
        assert!(decode(&with_key(&[2, 2, 0])).is_err(), "auth type the server sends");
        assert!(decode(&with_key(&[2, 0, 1, b'T', 1, b'4', 9])).is_err(), "trailing bytes after auth");
        assert!(decode(&with_key(&[5, 2, 0xff, 0xfe])).is_err(), "stateless not UTF-8");
    }

    #[test]
    fn server_frames_have_the_reference_bytes() {
        assert_eq!(
            frame("doc-a", &authenticated(crate::share::Access::ReadWrite)),
            with_key(&[2, 2, 10, b'r', b'e', b'a', b'd', b'-', b'w', b'r', b'i', b't', b'e'])
        );
        assert_eq!(authenticated(crate::share::Access::ReadOnly), [&[2u8, 2, 8][..], b"readonly"].concat());
        assert_eq!(permission_denied("permission-denied")[..3], [2, 1, 17]);
        assert_eq!(close("provider_initiated")[..2], [7, 18]);
        assert_eq!(stateless("x"), vec![5, 1, b'x']);
    }

    #[test]
    fn session_keys_name_their_document() {
        assert_eq!(doc_name("doc-a"), "doc-a");
        assert_eq!(doc_name("doc-a\0session-1"), "doc-a");
        assert_eq!(doc_name("\0s"), "");
    }
}
