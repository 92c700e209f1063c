//! The operation-log part of the contract: per-scope sequences, push with idempotency and
//! conflicts, and consistent pull snapshots.

use std::collections::HashSet;

use concord_core::oplog::{PushError, PushOp, ValidPush};

use crate::StoreResult;

/// Whose log: the user and the vault a device was paired with. Devices paired with the same
/// vault share one log; nothing crosses scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub user_id: String,
    pub vault_id: String,
}

/// An op as stored and pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOp {
    pub op_id: String,
    /// Position in the scope's log: 1, 2, 3… with no gaps.
    pub server_sequence: i64,
    /// The device that pushed it, as authenticated.
    pub device_id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub op_type: String,
    pub payload_json: String,
    pub created_at: String,
}

/// A stored op from another device that touched the pushed op's entity after the pusher last
/// pulled (see `concord_core::oplog::is_conflict`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub device_id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub op_id: String,
    pub op_type: String,
    pub server_sequence: i64,
}

/// What a committed push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// Every op id of the request, once, including ones stored by an earlier push (so a client
    /// whose response was lost stops re-sending them).
    pub accepted: Vec<String>,
    pub conflicts: Vec<Conflict>,
    /// The scope head after the commit, for live notifications.
    pub head: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Committed(PushResult),
    /// The idempotency key was seen before in this scope: the stored response, byte for byte.
    Replayed(Vec<u8>),
    /// A blob reference failed its check; nothing was written.
    Rejected(PushError),
}

/// Encodes a push response for the idempotency record. The store keeps the bytes opaque so it
/// never learns the wire format, yet writes them in the same transaction as the ops. A plain
/// function, so a push can be handed to the task that commits it (SQLite's group commit).
pub type EncodeResponse = fn(&PushResult) -> Vec<u8>;

/// A scope's head and the ops after a cursor, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSnapshot {
    pub head: i64,
    /// Ascending by sequence, at most the requested number.
    pub ops: Vec<StoredOp>,
}

#[async_trait::async_trait]
pub trait OplogStore {
    /// Stores a validated push for `device_id` in one transaction: checks blob references against
    /// the scope, replays a known idempotency key, reports conflicts, assigns the next sequences to
    /// ops whose id the scope has not seen, writes tombstones for deletes, and records the response
    /// under the idempotency key.
    async fn push(
        &self,
        scope: &Scope,
        device_id: &str,
        push: ValidPush,
        encode: EncodeResponse,
        now: i64,
    ) -> StoreResult<PushOutcome>;

    /// The head and up to `limit` ops with sequence above `since`, from one snapshot, so the head
    /// never lags the ops returned with it.
    async fn pull(&self, scope: &Scope, since: i64, limit: i64) -> StoreResult<PullSnapshot>;

    /// The scope's current head (0 for a scope that never pushed).
    async fn head(&self, scope: &Scope) -> StoreResult<i64>;

    /// Deletes idempotency records made before `before` (a retry that late is a new push);
    /// returns how many went.
    async fn purge_idempotency_keys(&self, before: i64) -> StoreResult<u64>;
}

/// What a push writes, decided before any op is written so that each backend stores the whole
/// batch in one statement: the ops to store, each with its sequence, and the response's
/// `accepted`.
pub(crate) struct NewOps<'a> {
    /// The first op of each id the scope has not stored, in request order, numbered `head + 1`,
    /// `head + 2`, …: only a stored op consumes a number, so the log stays gap-free.
    pub stored: Vec<(i64, &'a PushOp)>,
    /// Every op id of the request once, in request order, stored now or before.
    pub accepted: Vec<String>,
    /// The scope's head once `stored` is written.
    pub head: i64,
}

/// Numbers the ops of a push against the ids the scope already holds (`known`, read in the same
/// write transaction) and its head.
pub(crate) fn new_ops<'a>(ops: &'a [PushOp], known: &HashSet<String>, mut head: i64) -> NewOps<'a> {
    let mut seen = HashSet::with_capacity(ops.len());
    let mut stored = Vec::with_capacity(ops.len());
    let mut accepted = Vec::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.op_id.as_str()) {
            continue;
        }
        accepted.push(op.op_id.clone());
        if !known.contains(&op.op_id) {
            head += 1;
            stored.push((head, op));
        }
    }
    NewOps { stored, accepted, head }
}
