//! One Hocuspocus socket's documents: which keys have authenticated, and the frames a provider
//! sent for a key before its `Auth` succeeded.
//!
//! A provider sends Auth, SyncStep1 and Awareness back to back without waiting, and several
//! providers share one socket, each with its own token. So frames of a key that is not open yet
//! are queued (bounded as upstream bounds them: 1000 frames, 5 MiB, 100 keys; beyond that the
//! socket is reset) and replayed once its Auth succeeds; a refused Auth drops them, so the next
//! Auth of that key starts afresh.

use std::collections::{HashMap, HashSet};

use super::wire::{FrameError, Message, decode};

/// Frames queued before authentication, over all keys of a socket.
pub const MAX_PENDING_FRAMES: usize = 1000;
/// Bytes queued before authentication, over all keys of a socket.
pub const MAX_PENDING_BYTES: usize = 5 * 1024 * 1024;
/// Keys with queued frames at once.
pub const MAX_PENDING_KEYS: usize = 100;

/// Why the socket must close. Nothing of the offending frame was acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Malformed(#[from] FrameError),
    #[error("too many frames before authentication")]
    QueueFull,
}

impl SessionError {
    /// 1007 (invalid payload) for bytes that are not Hocuspocus; 4205, Hocuspocus's "Reset
    /// Connection", for a full queue, as upstream closes it.
    pub fn close_code(&self) -> u16 {
        match self {
            SessionError::Malformed(_) => 1007,
            SessionError::QueueFull => 4205,
        }
    }
}

/// What the server must do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Step<'a> {
    /// Nothing (queued, a Pong, an ignored type, a repeated Auth).
    Nothing,
    /// Check `token` for the key's document, then call [`Session::opened`] or
    /// [`Session::denied`]. The token may be empty.
    Authenticate { key: &'a str, token: &'a str },
    /// A y-protocols message for the open document's room.
    Room { key: &'a str, ydoc: &'a [u8] },
    /// Relay to the document's other Hocuspocus connections.
    Stateless { key: &'a str, payload: &'a str },
    /// The provider left the open document: leave its room and answer `close("provider_initiated")`.
    Close { key: &'a str },
}

#[derive(Debug, Default)]
pub struct Session {
    /// Keys whose Auth has not succeeded, with the raw frames they sent meanwhile, in order.
    pending: HashMap<String, Vec<Vec<u8>>>,
    /// Frames and bytes in `pending`, against the limits above.
    pending_frames: usize,
    pending_bytes: usize,
    /// Keys authenticated and joined to their document.
    open: HashSet<String>,
    /// Whether some Auth carried a provider version: those providers (4.x) answer a Ping, older
    /// ones throw on it.
    versioned: bool,
}

impl Session {
    pub fn receive<'a>(&mut self, frame: &'a [u8]) -> Result<Step<'a>, SessionError> {
        let message = decode(frame)?;
        let Some(key) = message.key() else { return Ok(Step::Nothing) };
        if let Message::Auth { key, token, version } = message {
            self.versioned |= version.is_some();
            // A repeated Auth for an open document changes nothing: the provider only resends
            // it when the server asks, which this server never does.
            return Ok(if self.open.contains(key) { Step::Nothing } else { Step::Authenticate { key, token } });
        }
        if !self.open.contains(key) {
            if matches!(message, Message::Close { .. }) {
                self.drop_pending(key);
            } else if !matches!(message, Message::Ignored { .. }) {
                self.queue(key, frame)?;
            }
            return Ok(Step::Nothing);
        }
        Ok(match message {
            Message::Room { key, ydoc } => Step::Room { key, ydoc },
            Message::Stateless { key, payload } => Step::Stateless { key, payload },
            Message::Close { key } => {
                self.open.remove(key);
                Step::Close { key }
            }
            Message::Pong | Message::Auth { .. } | Message::Ignored { .. } => Step::Nothing,
        })
    }

    /// The key's Auth succeeded and it joined its document. Returns the frames it sent before,
    /// to be fed through [`Session::receive`] again, in order.
    pub fn opened(&mut self, key: &str) -> Vec<Vec<u8>> {
        self.open.insert(key.to_owned());
        self.drop_pending(key)
    }

    /// The key's Auth failed: everything it sent is dropped.
    pub fn denied(&mut self, key: &str) {
        self.drop_pending(key);
    }

    /// Whether the server should send [`super::PING`] as keepalive.
    pub fn wants_ping(&self) -> bool {
        self.versioned
    }

    fn queue(&mut self, key: &str, frame: &[u8]) -> Result<(), SessionError> {
        let new_key = !self.pending.contains_key(key);
        if self.pending_frames >= MAX_PENDING_FRAMES
            || self.pending_bytes + frame.len() > MAX_PENDING_BYTES
            || (new_key && self.pending.len() >= MAX_PENDING_KEYS)
        {
            return Err(SessionError::QueueFull);
        }
        self.pending_frames += 1;
        self.pending_bytes += frame.len();
        self.pending.entry(key.to_owned()).or_default().push(frame.to_vec());
        Ok(())
    }

    fn drop_pending(&mut self, key: &str) -> Vec<Vec<u8>> {
        let frames = self.pending.remove(key).unwrap_or_default();
        self.pending_frames -= frames.len();
        self.pending_bytes -= frames.iter().map(Vec::len).sum::<usize>();
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hocuspocus::wire::frame;

    fn auth(key: &str, token: &str) -> Vec<u8> {
        frame(key, &[&[2u8, 0, token.len() as u8][..], token.as_bytes(), &[5], b"4.8.0"].concat())
    }

    const STEP1: &[u8] = &[0, 0, 1, 0];

    #[test]
    fn frames_before_auth_are_queued_and_replayed_in_order() {
        let mut session = Session::default();
        let step1 = frame("a", STEP1);
        let awareness = frame("a", &[1, 6, 1, 1, 0, 2, b'{', b'}']);
        assert_eq!(session.receive(&step1), Ok(Step::Nothing));
        assert_eq!(session.receive(&awareness), Ok(Step::Nothing));
        let auth = auth("a", "T");
        assert_eq!(session.receive(&auth), Ok(Step::Authenticate { key: "a", token: "T" }));
        assert!(session.wants_ping());
        assert_eq!(session.opened("a"), vec![step1.clone(), awareness]);
        assert_eq!(session.receive(&step1), Ok(Step::Room { key: "a", ydoc: STEP1 }));
        assert_eq!(session.receive(&auth), Ok(Step::Nothing), "a repeated Auth changes nothing");
        let close = frame("a", &[7]);
        assert_eq!(session.receive(&close), Ok(Step::Close { key: "a" }));
        assert!(!session.open.contains("a"));
        assert_eq!(session.receive(&step1), Ok(Step::Nothing), "queued again until the next Auth");
    }

    #[test]
    fn a_refused_auth_drops_what_the_key_sent() {
        let mut session = Session::default();
        let _ = session.receive(&frame("a", STEP1)).unwrap();
        let _ = session.receive(&auth("a", "bad")).unwrap();
        session.denied("a");
        let _ = session.receive(&auth("a", "good")).unwrap();
        assert!(session.opened("a").is_empty());
        assert_eq!((session.pending_frames, session.pending_bytes), (0, 0));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut session = Session::default();
        let step1 = frame("a", STEP1);
        for _ in 0..MAX_PENDING_FRAMES {
            assert_eq!(session.receive(&step1), Ok(Step::Nothing));
        }
        assert_eq!(session.receive(&step1), Err(SessionError::QueueFull));

        let mut session = Session::default();
        for n in 0..MAX_PENDING_KEYS {
            let _ = session.receive(&frame(&n.to_string(), STEP1)).unwrap();
        }
        assert_eq!(session.receive(&frame("one more", STEP1)), Err(SessionError::QueueFull));

        let mut session = Session::default();
        let big = frame("a", &[&[5u8, 0x80, 0x80, 0x40][..], &vec![b'x'; 1 << 20]].concat());
        for _ in 0..4 {
            let _ = session.receive(&big).unwrap();
        }
        assert_eq!(session.receive(&big), Err(SessionError::QueueFull));
        assert_eq!(SessionError::QueueFull.close_code(), 4205);
    }

    #[test]
    fn malformed_frames_are_errors_before_anything_is_queued() {
        let mut session = Session::default();
        let err = session.receive(&[0x80]).unwrap_err();
        assert_eq!(err.close_code(), 1007);
        assert_eq!(session.pending_frames, 0);
    }
}
