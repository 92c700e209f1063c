//! Concord's pure domain logic: identifiers, bearer tokens, parsed values and protocol rules.
//!
//! Architecture invariant: nothing here performs I/O, reads the clock or depends on an async
//! runtime. Callers pass time in (`now`, unix seconds) and get values or messages back, which keeps
//! every rule testable with plain data.

pub mod blob;
pub mod code;
pub mod email;
pub mod history;
pub mod hmac;
pub mod hocuspocus;
pub mod id;
pub mod oplog;
pub mod password;
pub mod rate_limit;
pub mod share;
pub mod token;
pub mod username;
pub mod webhook;
pub mod yjs;
