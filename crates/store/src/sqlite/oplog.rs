//! SQLite implementation of [`OplogStore`].
//!
//! # Why sequences stay gap-free and in commit order
//!
//! Each scope has one row in `oplog_heads` holding its last sequence. A push reads that row,
//! numbers its new ops `head + 1, head + 2, …`, inserts them and writes the new head, all in one
//! write transaction. Two pushes to one scope therefore cannot interleave: here every write goes
//! through the single writer connection, and SQLite admits one write transaction at a time anyway.
//! A rolled-back push advances nothing, so no number is ever skipped.
//!
//! A puller that has seen sequence N never later meets an op numbered ≤ N: a pull reads the head
//! and its page in one statement (the head row left-joined to the page), which SQLite runs in one
//! read transaction (one WAL snapshot), and a snapshot contains either all
//! of a push's ops and its new head or none of them. Because the next push in a scope can only
//! number its ops after the previous push committed, sequences become visible in ascending order.
//!
//! # Group commit, and why the argument still holds
//!
//! Every push goes through one task ([`group_commit`]) that owns the order of op-log writes. It
//! takes the first queued push plus whatever else queued meanwhile (other devices, any vault, at
//! most [`GROUP`]) and runs them in one write transaction, one after another, each inside its own
//! savepoint, then commits once: one fsync for the group instead of one per push.
//!
//! - Gap-free: the pushes of a group run sequentially on one connection, so each reads the head
//!   as left by the previous push of the group (its own transaction's writes) and numbers from
//!   there. A push that fails is rolled back to its savepoint, head update included, so the next
//!   one numbers from where the failed one started: nothing is skipped.
//! - Commit order: a group commits atomically, so a snapshot holds all of it or none of it, and
//!   the next group starts only after this commit. Within a group, sequences rise in the order
//!   the pushes ran; all of them become visible together.
//! - Isolation of outcomes: a rejected or replayed push writes nothing; a push that fails rolls
//!   back only its savepoint and gets its own error. If the shared transaction itself is lost (a
//!   failed commit, or `SQLITE_FULL` rolling the whole transaction back, detected when the
//!   savepoint cannot be rolled back), nothing of the group is stored, and each push runs again
//!   alone in its own transaction and earns its own outcome (re-running is safe: nothing of the
//!   first run is stored).
//! - Acknowledged = committed: a push's outcome is sent back only after its group's commit (or
//!   its own, on the fallback path) returned, with `synchronous=FULL` as before.
//!
//! PostgreSQL keeps one transaction per push (below): its pushers of different scopes already
//! commit in parallel.
//!
//! The same design carries to PostgreSQL with several server nodes: the push transaction does
//! `INSERT … ON CONFLICT DO NOTHING` on the head row and then `SELECT head … FOR UPDATE`. The row
//! lock serialises pushers of one scope across all nodes until commit (pushers of other scopes do
//! not wait), so commit order equals sequence order, and a pull's one statement reads one MVCC
//! snapshot (true at any isolation level). Nothing relies on a process-wide counter or on
//! in-memory state of one node.

use std::collections::{HashMap, HashSet};

use concord_core::oplog::{ValidPush, conflict_floor, is_delete};
use sqlx::Connection;
use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::blobs::BLOB_SIZE;
use super::{SqliteStore, write_error};
use crate::oplog::{NewOps, new_ops};
use crate::rows::{conflicts_from, pull_columns, pull_snapshot_from};
use crate::{EncodeResponse, OplogStore, PullSnapshot, PushOutcome, PushResult, Scope, StoreError, StoreResult};

const HEAD: &str = "SELECT head FROM oplog_heads WHERE user_id = ?1 AND vault_id = ?2";

/// Pushes waiting for the writer, at most: beyond it a pusher waits to enqueue, so memory stays
/// bounded under any load.
const QUEUED_PUSHES: usize = 256;
/// Pushes sharing one transaction, at most: bounds how long the first of a group waits for the
/// others' statements before its commit.
const GROUP: usize = 64;

/// A push handed to the group-commit task, with the channel its outcome goes back on.
pub(super) struct PendingPush {
    scope: Scope,
    device_id: String,
    push: ValidPush,
    encode: EncodeResponse,
    now: i64,
    reply: oneshot::Sender<StoreResult<PushOutcome>>,
}

/// The sender half of the group-commit queue; spawns the task that drains it. The task ends when
/// the last store clone (every sender) is gone.
pub(super) fn group_commit(writer: SqlitePool) -> mpsc::Sender<PendingPush> {
    let (sender, mut queue) = mpsc::channel::<PendingPush>(QUEUED_PUSHES);
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            // No waiting for company: whatever queued while the previous group ran (its commit's
            // fsync, mostly) forms the next group, so a lone push commits at once.
            let mut group = vec![first];
            while group.len() < GROUP {
                match queue.try_recv() {
                    Ok(pending) => group.push(pending),
                    Err(_) => break,
                }
            }
            let outcomes = match commit_group(&writer, &group).await {
                Some(outcomes) => outcomes,
                // The shared transaction failed as a whole (its commit, or an error that took the
                // transaction with it): nothing of it is stored, so each push runs again alone
                // and earns its own outcome.
                None => {
                    let mut outcomes = Vec::with_capacity(group.len());
                    for pending in &group {
                        outcomes.push(push_alone(&writer, pending).await);
                    }
                    outcomes
                }
            };
            for (pending, outcome) in group.into_iter().zip(outcomes) {
                // The pusher may have gone (its client hung up); the push stands, as when a
                // response is lost on the way.
                let _ = pending.reply.send(outcome);
            }
        }
    });
    sender
}

/// Runs a group in one transaction, each push inside its own savepoint, and commits once. Returns
/// each push's outcome, or `None` when the transaction itself failed.
async fn commit_group(writer: &SqlitePool, group: &[PendingPush]) -> Option<Vec<StoreResult<PushOutcome>>> {
    let mut tx = writer.begin().await.ok()?;
    let mut outcomes = Vec::with_capacity(group.len());
    for pending in group {
        // A nested sqlx transaction is a SAVEPOINT: an error rolls back this push alone.
        let mut savepoint = Connection::begin(&mut *tx).await.ok()?;
        let outcome = push_in(&mut savepoint, pending).await;
        if outcome.is_ok() {
            savepoint.commit().await.ok()?;
        } else {
            // Fails when SQLite already rolled the whole transaction back (`SQLITE_FULL`, I/O
            // errors; see the module docs of `sqlite`): then nothing of the group is left.
            savepoint.rollback().await.ok()?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await.ok()?;
    Some(outcomes)
}

/// One push in its own transaction: the path of a group whose shared transaction failed.
async fn push_alone(writer: &SqlitePool, pending: &PendingPush) -> StoreResult<PushOutcome> {
    // Dropping `tx` on any early return rolls it back, so a failed push writes nothing.
    let mut tx = writer.begin().await?;
    let outcome = push_in(&mut tx, pending).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// A push's statements, inside a transaction or savepoint the caller commits. A rejected or
/// replayed push returns before writing anything.
async fn push_in(tx: &mut SqliteConnection, pending: &PendingPush) -> StoreResult<PushOutcome> {
    let PendingPush { scope, device_id, push, encode, now, .. } = pending;
    let (device_id, now) = (device_id.as_str(), *now);
    let mut sizes = HashMap::new();
    for hash in push.referenced_blobs() {
        let size: Option<i64> = sqlx::query_scalar(BLOB_SIZE)
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(size) = size {
            sizes.insert(hash.clone(), u64::try_from(size).unwrap_or(0));
        }
    }
    if let Err(rejection) = push.check_blobs(|hash| sizes.get(hash).copied()) {
        return Ok(PushOutcome::Rejected(rejection));
    }

    if let Some(key) = &push.idempotency_key {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT response FROM oplog_idempotency WHERE user_id = ?1 AND vault_id = ?2 AND idempotency_key = ?3",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(response) = stored {
            return Ok(PushOutcome::Replayed(response));
        }
    }

    sqlx::query("INSERT INTO oplog_heads (user_id, vault_id, head) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING")
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .execute(&mut *tx)
        .await?;
    let head: i64 = sqlx::query_scalar(HEAD).bind(&scope.user_id).bind(&scope.vault_id).fetch_one(&mut *tx).await?;

    // Conflicts first: a candidate must come from another device, so ops of this batch (all
    // from `device_id`) never are one, and every check may run before the batch is written.
    let mut conflicts = Vec::new();
    for op in &push.ops {
        let Some(floor) = conflict_floor(op) else { continue };
        let candidates = sqlx::query(
            "SELECT op_id, device_id, op_type, server_sequence FROM oplog_ops
             WHERE user_id = ?1 AND vault_id = ?2 AND entity_type = ?3 AND entity_id = ?4
               AND server_sequence > ?5
             ORDER BY server_sequence",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(&op.entity_type)
        .bind(&op.entity_id)
        .bind(floor)
        .fetch_all(&mut *tx)
        .await?;
        conflicts.extend(conflicts_from(&candidates, device_id, op));
    }

    // Two statements for the whole batch instead of one per op: the ids the scope already
    // holds, then one multi-row insert of the rest, numbered in Rust (at most 100 ops of 13
    // parameters, far below SQLite's 32 766). The insert has no `ON CONFLICT`: after the check, a
    // clash on either unique key is a bug and fails.
    let mut known = QueryBuilder::<Sqlite>::new("SELECT op_id FROM oplog_ops WHERE user_id = ");
    known.push_bind(&scope.user_id).push(" AND vault_id = ").push_bind(&scope.vault_id).push(" AND op_id IN (");
    let mut ids = known.separated(", ");
    for op in &push.ops {
        ids.push_bind(&op.op_id);
    }
    known.push(")");
    let known: HashSet<String> = known.build_query_scalar().fetch_all(&mut *tx).await?.into_iter().collect();
    let NewOps { stored, accepted, head } = new_ops(&push.ops, &known, head);
    if !stored.is_empty() {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO oplog_ops (user_id, vault_id, server_sequence, op_id, device_id, entity_type,
                entity_id, op_type, payload_json, client_sequence, last_seen_server_seq, created_at, pushed_at) ",
        );
        insert.push_values(&stored, |mut row, (sequence, op)| {
            row.push_bind(&scope.user_id)
                .push_bind(&scope.vault_id)
                .push_bind(*sequence)
                .push_bind(&op.op_id)
                .push_bind(device_id)
                .push_bind(&op.entity_type)
                .push_bind(&op.entity_id)
                .push_bind(&op.op_type)
                .push_bind(&op.payload_json)
                .push_bind(op.client_sequence)
                .push_bind(op.last_seen_server_seq)
                .push_bind(&op.created_at)
                .push_bind(now);
        });
        insert.build().execute(&mut *tx).await.map_err(write_error)?;
    }
    // Deletes are rare: one statement each, in request order, so the last delete of an entity wins.
    for (sequence, op) in stored.iter().filter(|(_, op)| is_delete(op)) {
        sqlx::query(
            "INSERT INTO oplog_tombstones (user_id, vault_id, entity_type, entity_id, op_id, server_sequence, deleted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (user_id, vault_id, entity_type, entity_id) DO UPDATE SET
                op_id = excluded.op_id, server_sequence = excluded.server_sequence, deleted_at = excluded.deleted_at",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(&op.entity_type)
        .bind(&op.entity_id)
        .bind(&op.op_id)
        .bind(sequence)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }

    sqlx::query("UPDATE oplog_heads SET head = ?3 WHERE user_id = ?1 AND vault_id = ?2")
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(head)
        .execute(&mut *tx)
        .await?;
    let result = PushResult { accepted, conflicts, head };
    if let Some(key) = &push.idempotency_key {
        sqlx::query(
            "INSERT INTO oplog_idempotency (user_id, vault_id, idempotency_key, response, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(key)
        .bind(encode(&result))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
    }
    Ok(PushOutcome::Committed(result))
}

#[async_trait::async_trait]
impl OplogStore for SqliteStore {
    async fn push(
        &self,
        scope: &Scope,
        device_id: &str,
        push: ValidPush,
        encode: EncodeResponse,
        now: i64,
    ) -> StoreResult<PushOutcome> {
        let (reply, outcome) = oneshot::channel();
        let pending = PendingPush { scope: scope.clone(), device_id: device_id.to_owned(), push, encode, now, reply };
        // Either error means the task is gone, which happens only when the runtime shuts down.
        let gone = || StoreError::Unsupported("the op-log writer has stopped");
        self.pushes.send(pending).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    async fn pull(&self, scope: &Scope, since: i64, limit: i64) -> StoreResult<PullSnapshot> {
        // One statement reads one snapshot on both backends, so the head and the page agree
        // without a transaction around two statements (see the module docs). `LIMIT ?4 + 0`, not
        // `LIMIT ?4`: SQLite plans a bare bound LIMIT as a constant and marks the statement to be
        // re-prepared whenever that parameter is bound again, so every pull re-parsed and
        // re-planned the join (2 % of a pull's CPU in a dev profile); an expression is evaluated
        // at run time and the cached statement is reused.
        let rows = sqlx::query(concat!(
            "SELECT ",
            pull_columns!(),
            " FROM oplog_heads h LEFT JOIN oplog_ops o
                 ON o.user_id = h.user_id AND o.vault_id = h.vault_id AND o.server_sequence > ?3
                 WHERE h.user_id = ?1 AND h.vault_id = ?2
                 ORDER BY o.server_sequence LIMIT ?4 + 0"
        ))
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(pull_snapshot_from(&rows))
    }

    async fn head(&self, scope: &Scope) -> StoreResult<i64> {
        let head: Option<i64> =
            sqlx::query_scalar(HEAD).bind(&scope.user_id).bind(&scope.vault_id).fetch_optional(&self.reader).await?;
        Ok(head.unwrap_or(0))
    }

    async fn purge_idempotency_keys(&self, before: i64) -> StoreResult<u64> {
        let purged = sqlx::query("DELETE FROM oplog_idempotency WHERE created_at < ?1")
            .bind(before)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    //! What only SQLite shows: tombstones are rows no trait method returns. The behaviour of
    //! `push` and `pull` is pinned by the contract stories in `tests/contract/oplog.rs`.

    use concord_core::oplog::{PushOp, PushRequest, validate_push};

    use super::*;
    use crate::AccountStore;

    #[tokio::test]
    async fn deletes_leave_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
        let s = Scope { user_id: user.id, vault_id: "v1".into() };
        let op = |id: &str, op_type: &str| PushOp {
            op_id: id.into(),
            entity_type: "file".into(),
            entity_id: "doc".into(),
            op_type: op_type.into(),
            payload_json: r#"{"path":"x"}"#.into(),
            created_at: "2026-07-10T00:00:00Z".into(),
            ..PushOp::default()
        };
        let push =
            validate_push(PushRequest { ops: vec![op("1", "create"), op("2", "delete")], ..PushRequest::default() })
                .unwrap();
        assert!(matches!(store.push(&s, "dev_a", push, |_| Vec::new(), 100).await.unwrap(), PushOutcome::Committed(_)));
        let tombstones: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT entity_id, op_id, server_sequence FROM oplog_tombstones WHERE user_id = ?1 AND vault_id = ?2",
        )
        .bind(&s.user_id)
        .bind(&s.vault_id)
        .fetch_all(&store.reader)
        .await
        .unwrap();
        assert_eq!(tombstones, [("doc".to_owned(), "2".to_owned(), 2)]);
    }
}
