//! The Hocuspocus wire protocol (Tiptap's `@hocuspocus/provider`) as sans-IO code: frame decoding
//! and encoding, one socket's per-document authentication state, and the acknowledgements a
//! provider counts on, layered over the y-protocols [`Room`](crate::yjs::Room).
//!
//! A Hocuspocus frame is `varString(key) · varUint(type) · body`, and for the types that carry
//! y-protocols (sync, awareness, query-awareness) `varUint(type) · body` *is* the y-protocols
//! message. So the server strips the key and hands the rest to the document's room unchanged, and
//! prefixes the key to what the room answers: the CRDT rules, awareness limits and decoding
//! defences are the yjs module's, shared with y-websocket clients of the same document.
//!
//! What is Hocuspocus-only lives here: the key (document name, optionally `name\0session`), the
//! auth handshake and the queue of frames sent before it ([`Session`]), `SyncStatus`
//! acknowledgements and answering each client SyncStep1 with the server's own ([`receive`]),
//! stateless and close messages.

mod session;
mod sync;
mod wire;

pub use session::{MAX_PENDING_BYTES, MAX_PENDING_FRAMES, MAX_PENDING_KEYS, Session, SessionError, Step};
pub use sync::{receive, scope};
pub use wire::{
    FrameError, Message, PING, authenticated, close, decode, doc_name, frame, permission_denied, stateless,
};
