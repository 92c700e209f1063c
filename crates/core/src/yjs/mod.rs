//! The Yjs sync protocol (y-protocols: sync steps, updates, awareness) as a sans-IO state machine.
//!
//! A [`Room`] holds one document and the awareness states of its clients. The server feeds it
//! `(connection, frame bytes, now)` and gets back [`Effects`]: frames for the sender, frames for
//! every other connection, and document updates that must be persisted before any of those frames
//! leave the process. Nothing here touches a socket, the database or the clock, so every rule of the
//! protocol is tested with plain bytes (see the tests at the bottom of each module and the
//! convergence property in `room.rs`).
//!
//! The CRDT itself is `yrs`; this module only decides who receives what.

mod awareness;
mod name;
mod room;
mod wire;

pub use awareness::AWARENESS_TIMEOUT_SECS;
pub use name::{DocName, DocNameError, DocPlacement, decode_url_component};
pub use room::{ConnId, Effects, Room};
pub use wire::ProtocolError;
// The client side of the same protocol, for the Rust load generator (`bench/loadgen`): one
// encoder and decoder for both ends, so the bench speaks exactly what the server parses.
pub use wire::{AwarenessEntry, Incoming, decode_frame, encode_sync_step1, encode_sync_step2, encode_update};
