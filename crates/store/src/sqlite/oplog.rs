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
//! and its page inside one read transaction (one WAL snapshot), and a snapshot contains either all
//! of a push's ops and its new head or none of them. Because the next push in a scope can only
//! number its ops after the previous push committed, sequences become visible in ascending order.
//!
//! The same design carries to PostgreSQL with several server nodes: the push transaction does
//! `INSERT … ON CONFLICT DO NOTHING` on the head row and then `SELECT head … FOR UPDATE`. The row
//! lock serialises pushers of one scope across all nodes until commit (pushers of other scopes do
//! not wait), so commit order equals sequence order, and a pull runs as one `REPEATABLE READ`
//! transaction. Nothing relies on a process-wide counter or on in-memory state of one node.

use std::collections::HashMap;

use concord_core::oplog::{ValidPush, conflict_floor, is_conflict, is_delete};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::blobs::BLOB_SIZE;
use crate::{
    Conflict, EncodeResponse, OplogStore, PullSnapshot, PushOutcome, PushResult, Scope, StoreError, StoreResult,
    StoredOp,
};

const HEAD: &str = "SELECT head FROM oplog_heads WHERE user_id = ?1 AND vault_id = ?2";

fn stored_op_from(row: &SqliteRow) -> StoredOp {
    StoredOp {
        op_id: row.get("op_id"),
        server_sequence: row.get("server_sequence"),
        device_id: row.get("device_id"),
        entity_type: row.get("entity_type"),
        entity_id: row.get("entity_id"),
        op_type: row.get("op_type"),
        payload_json: row.get("payload_json"),
        created_at: row.get("created_at"),
    }
}

#[async_trait::async_trait]
impl OplogStore for SqliteStore {
    async fn push(
        &self,
        scope: &Scope,
        device_id: &str,
        push: &ValidPush,
        encode: EncodeResponse<'_>,
        now: i64,
    ) -> StoreResult<PushOutcome> {
        // Dropping `tx` on any early return rolls it back, so a rejected push writes nothing.
        let mut tx = self.writer.begin().await?;

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
        let mut head: i64 =
            sqlx::query_scalar(HEAD).bind(&scope.user_id).bind(&scope.vault_id).fetch_one(&mut *tx).await?;

        let mut accepted: Vec<String> = Vec::with_capacity(push.ops.len());
        let mut conflicts = Vec::new();
        for op in &push.ops {
            if let Some(floor) = conflict_floor(op) {
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
                for row in candidates {
                    let (candidate_device, candidate_type): (String, String) =
                        (row.get("device_id"), row.get("op_type"));
                    if is_conflict(device_id, &candidate_device, &candidate_type) {
                        conflicts.push(Conflict {
                            device_id: candidate_device,
                            entity_type: op.entity_type.clone(),
                            entity_id: op.entity_id.clone(),
                            op_id: row.get("op_id"),
                            op_type: candidate_type,
                            server_sequence: row.get("server_sequence"),
                        });
                    }
                }
            }
            // A batch that repeats an op id acknowledges it once; at most 100 ops, so a scan is fine.
            if accepted.contains(&op.op_id) {
                continue;
            }
            // One statement both checks and stores: an op id the scope already holds is skipped
            // by its unique key, and only a stored op consumes a sequence number. The conflict
            // target is named so that a clash on `server_sequence` (a bug) still fails loudly.
            let stored = sqlx::query(
                "INSERT INTO oplog_ops (user_id, vault_id, server_sequence, op_id, device_id, entity_type,
                    entity_id, op_type, payload_json, client_sequence, last_seen_server_seq, created_at, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (user_id, vault_id, op_id) DO NOTHING",
            )
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(head + 1)
            .bind(&op.op_id)
            .bind(device_id)
            .bind(&op.entity_type)
            .bind(&op.entity_id)
            .bind(&op.op_type)
            .bind(&op.payload_json)
            .bind(op.client_sequence)
            .bind(op.last_seen_server_seq)
            .bind(&op.created_at)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_write)?
            .rows_affected()
                > 0;
            if stored {
                head += 1;
                if is_delete(op) {
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
                    .bind(head)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            accepted.push(op.op_id.clone());
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
            .map_err(StoreError::from_write)?;
        }
        tx.commit().await?;
        Ok(PushOutcome::Committed(result))
    }

    async fn pull(&self, scope: &Scope, since: i64, limit: i64) -> StoreResult<PullSnapshot> {
        // One read transaction = one WAL snapshot for both statements (see the module docs).
        let mut tx = self.reader.begin().await?;
        let head: Option<i64> =
            sqlx::query_scalar(HEAD).bind(&scope.user_id).bind(&scope.vault_id).fetch_optional(&mut *tx).await?;
        let ops = sqlx::query(
            "SELECT op_id, server_sequence, device_id, entity_type, entity_id, op_type, payload_json, created_at
             FROM oplog_ops WHERE user_id = ?1 AND vault_id = ?2 AND server_sequence > ?3
             ORDER BY server_sequence LIMIT ?4",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PullSnapshot { head: head.unwrap_or(0), ops: ops.iter().map(stored_op_from).collect() })
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
    use std::sync::Arc;

    use concord_core::blob::{BlobHash, BlobQuota};
    use concord_core::oplog::{PushOp, PushRequest, validate_push};

    use super::*;
    use crate::{AccountStore, AddBlobRef, BlobStore};

    async fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, Arc::new(store))
    }

    async fn scope(store: &SqliteStore, email: &str, vault: &str) -> Scope {
        let user = store.user_for_verified_email(email, 1).await.unwrap();
        Scope { user_id: user.id, vault_id: vault.into() }
    }

    fn op(id: &str, entity: &str, op_type: &str, last_seen: i64) -> PushOp {
        PushOp {
            op_id: id.into(),
            entity_type: "file".into(),
            entity_id: entity.into(),
            op_type: op_type.into(),
            payload_json: r#"{"path":"x"}"#.into(),
            last_seen_server_seq: last_seen,
            created_at: "2026-07-10T00:00:00Z".into(),
            ..PushOp::default()
        }
    }

    fn valid(key: &str, ops: Vec<PushOp>) -> ValidPush {
        validate_push(PushRequest { idempotency_key: key.into(), ops, ..PushRequest::default() }).unwrap()
    }

    fn encode(result: &PushResult) -> Vec<u8> {
        format!("{:?}", result.accepted).into_bytes()
    }

    async fn push(store: &SqliteStore, scope: &Scope, device: &str, push: ValidPush) -> PushOutcome {
        store.push(scope, device, &push, &encode, 100).await.unwrap()
    }

    fn committed(outcome: PushOutcome) -> PushResult {
        match outcome {
            PushOutcome::Committed(result) => result,
            other => panic!("expected a commit, got {other:?}"),
        }
    }

    fn sequences(snapshot: &PullSnapshot) -> Vec<i64> {
        snapshot.ops.iter().map(|o| o.server_sequence).collect()
    }

    #[tokio::test]
    async fn sequences_are_per_scope_and_resent_ops_are_acknowledged_once() {
        let (_dir, store) = store().await;
        let a = scope(&store, "a@example.com", "v1").await;
        let a2 = scope(&store, "a@example.com", "v2").await;
        let b = scope(&store, "b@example.com", "v1").await;

        let r = committed(
            push(&store, &a, "dev_a", valid("", vec![op("1", "x", "create", 0), op("2", "y", "create", 0)])).await,
        );
        assert_eq!((r.accepted.as_slice(), r.head), (&["1".to_owned(), "2".to_owned()][..], 2));
        // The same op ids in other scopes are different ops with their own sequences.
        assert_eq!(committed(push(&store, &a2, "dev_a", valid("", vec![op("1", "x", "create", 0)])).await).head, 1);
        assert_eq!(committed(push(&store, &b, "dev_b", valid("", vec![op("1", "x", "create", 0)])).await).head, 1);

        // A re-sent op (response lost) is accepted again but not stored twice; a repeat inside one
        // batch is listed once.
        let r = committed(
            push(
                &store,
                &a,
                "dev_a",
                valid("", vec![op("2", "y", "create", 0), op("3", "z", "create", 0), op("3", "z", "create", 0)]),
            )
            .await,
        );
        assert_eq!(r.accepted, ["2", "3"]);
        assert_eq!(r.head, 3);
        let snap = store.pull(&a, 0, 100).await.unwrap();
        assert_eq!((snap.head, sequences(&snap)), (3, vec![1, 2, 3]));
        assert_eq!(snap.ops[2].op_id, "3");
        assert_eq!(snap.ops[2].device_id, "dev_a");
        assert_eq!(store.pull(&b, 0, 100).await.unwrap().ops.len(), 1);
        assert_eq!(store.head(&a2).await.unwrap(), 1);
        assert_eq!(store.head(&Scope { user_id: a.user_id.clone(), vault_id: "none".into() }).await.unwrap(), 0);

        let page = store.pull(&a, 1, 1).await.unwrap();
        assert_eq!((page.head, sequences(&page)), (3, vec![2]));
    }

    #[tokio::test]
    async fn idempotency_key_replays_the_stored_response_per_scope() {
        let (_dir, store) = store().await;
        let a = scope(&store, "a@example.com", "v1").await;
        let b = scope(&store, "a@example.com", "v2").await;
        let first = committed(push(&store, &a, "dev_a", valid("k", vec![op("1", "x", "create", 0)])).await);
        let again = push(&store, &a, "dev_a", valid("k", vec![op("9", "x", "create", 0)])).await;
        assert_eq!(again, PushOutcome::Replayed(encode(&first)));
        assert_eq!(store.head(&a).await.unwrap(), 1, "a replay stores nothing");
        // The key means nothing in another scope.
        assert_eq!(
            committed(push(&store, &b, "dev_a", valid("k", vec![op("9", "x", "create", 0)])).await).accepted,
            ["9"]
        );
    }

    #[tokio::test]
    async fn purged_idempotency_keys_are_new_pushes_and_younger_ones_still_replay() {
        let (_dir, store) = store().await;
        let s = scope(&store, "a@example.com", "v1").await;
        // `push` stores at time 100.
        committed(push(&store, &s, "dev_a", valid("old", vec![op("1", "x", "create", 0)])).await);
        assert_eq!(store.purge_idempotency_keys(100).await.unwrap(), 0, "made at 100, not before it");
        assert_eq!(store.purge_idempotency_keys(101).await.unwrap(), 1);
        let retried = committed(push(&store, &s, "dev_a", valid("old", vec![op("2", "x", "update", 1)])).await);
        assert_eq!(retried.accepted, ["2"], "a purged key no longer replays");
        let again = push(&store, &s, "dev_a", valid("old", vec![op("3", "x", "update", 2)])).await;
        assert!(matches!(again, PushOutcome::Replayed(_)), "the new record replays: {again:?}");
    }

    #[tokio::test]
    async fn conflicts_are_advisory_and_deletes_leave_tombstones() {
        let (_dir, store) = store().await;
        let s = scope(&store, "a@example.com", "v1").await;
        committed(push(&store, &s, "dev_a", valid("", vec![op("1", "doc", "create", 0)])).await);
        committed(
            push(&store, &s, "dev_b", valid("", vec![op("2", "doc", "update", 1), op("3", "doc", "delete", 1)])).await,
        );
        committed(push(&store, &s, "dev_b", valid("", vec![op("4", "other", "update", 0)])).await);

        // dev_a last saw sequence 1: dev_b's update (2) conflicts, its delete (3) does not, nor do
        // its own ops or ops on other entities.
        let r = committed(push(&store, &s, "dev_a", valid("", vec![op("5", "doc", "update", 1)])).await);
        assert_eq!(r.accepted, ["5"], "the op is stored despite the conflict");
        let conflict = Conflict {
            device_id: "dev_b".into(),
            entity_type: "file".into(),
            entity_id: "doc".into(),
            op_id: "2".into(),
            op_type: "update".into(),
            server_sequence: 2,
        };
        assert_eq!(r.conflicts, [conflict]);
        let none = committed(push(&store, &s, "dev_a", valid("", vec![op("6", "doc", "update", 0)])).await);
        assert!(none.conflicts.is_empty(), "last_seen 0 reports nothing");

        let tombstones: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT entity_id, op_id, server_sequence FROM oplog_tombstones WHERE user_id = ?1 AND vault_id = ?2",
        )
        .bind(&s.user_id)
        .bind(&s.vault_id)
        .fetch_all(&store.reader)
        .await
        .unwrap();
        assert_eq!(tombstones, [("doc".to_owned(), "3".to_owned(), 3)]);
    }

    #[tokio::test]
    async fn blob_references_are_checked_per_scope_inside_the_push() {
        let (_dir, store) = store().await;
        let a = scope(&store, "a@example.com", "v1").await;
        let b = scope(&store, "b@example.com", "v1").await;
        let hash = BlobHash::parse(&"ab".repeat(32)).unwrap();
        let quota = BlobQuota { per_vault: 1000, per_user: 1000 };
        assert_eq!(store.add_blob_ref(&a, &hash, 10, quota, 1).await.unwrap(), AddBlobRef::Added);
        let file_op = |id: &str, size: u64| PushOp {
            payload_json: format!(r#"{{"path":"p","blob":{{"sha256":"{hash}","size":{size}}}}}"#),
            ..op(id, "p", "create", 0)
        };
        committed(push(&store, &a, "dev_a", valid("", vec![file_op("1", 10)])).await);
        let code = |o: PushOutcome| match o {
            PushOutcome::Rejected(e) => e.code,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(code(push(&store, &a, "dev_a", valid("", vec![file_op("2", 11)])).await), "invalid_blob_reference");
        assert_eq!(code(push(&store, &b, "dev_b", valid("", vec![file_op("1", 10)])).await), "blob_not_owned");
        assert_eq!(store.head(&b).await.unwrap(), 0, "a rejected push writes nothing");
        assert_eq!(store.head(&a).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_pushers_get_gap_free_sequences_in_commit_order() {
        let (_dir, store) = store().await;
        let s = scope(&store, "a@example.com", "v1").await;
        const PUSHERS: usize = 4;
        const BATCHES: usize = 25;
        const PER_BATCH: usize = 4;
        let mut tasks = Vec::new();
        for p in 0..PUSHERS {
            let (store, s) = (store.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                for b in 0..BATCHES {
                    let ops = (0..PER_BATCH).map(|i| op(&format!("{p}-{b}-{i}"), "e", "update", 0)).collect();
                    committed(push(&store, &s, &format!("dev_{p}"), valid("", ops)).await);
                }
            }));
        }
        // A puller following along must only ever see strictly increasing sequences, each page
        // ending at or below the head read with it.
        let puller = {
            let (store, s) = (store.clone(), s.clone());
            tokio::spawn(async move {
                let mut cursor = 0;
                let mut seen = Vec::new();
                while cursor < (PUSHERS * BATCHES * PER_BATCH) as i64 {
                    let snap = store.pull(&s, cursor, 7).await.unwrap();
                    for o in &snap.ops {
                        assert_eq!(o.server_sequence, cursor + 1, "no gaps, no repeats");
                        assert!(o.server_sequence <= snap.head);
                        cursor = o.server_sequence;
                        seen.push(o.op_id.clone());
                    }
                    tokio::task::yield_now().await;
                }
                seen
            })
        };
        for t in tasks {
            t.await.unwrap();
        }
        let seen = puller.await.unwrap();
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), PUSHERS * BATCHES * PER_BATCH);
        let all = store.pull(&s, 0, 1000).await.unwrap();
        assert_eq!(sequences(&all), (1..=(PUSHERS * BATCHES * PER_BATCH) as i64).collect::<Vec<_>>());
        // Each pusher's ops appear in the order it pushed them.
        for p in 0..PUSHERS {
            let mine: Vec<&str> =
                all.ops.iter().filter(|o| o.device_id == format!("dev_{p}")).map(|o| o.op_id.as_str()).collect();
            let expected: Vec<String> =
                (0..BATCHES).flat_map(|b| (0..PER_BATCH).map(move |i| format!("{p}-{b}-{i}"))).collect();
            assert_eq!(mine, expected);
        }
    }
}
