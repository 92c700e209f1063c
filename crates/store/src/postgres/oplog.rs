//! PostgreSQL implementation of [`OplogStore`]: the design argued in `src/sqlite/oplog.rs`. The
//! push first makes sure the scope's head row exists and locks it (`SELECT … FOR UPDATE`), so
//! pushers of one scope on every node run one at a time until commit; everything the push then
//! reads (blob references, the idempotency record, conflict candidates) is read after the previous
//! pusher committed, so a retried idempotency key replays even when both copies raced. A pull is
//! one statement, hence one snapshot of head and page at any isolation level.

use std::collections::HashMap;

use concord_core::oplog::{ValidPush, conflict_floor, is_conflict, is_delete};
use sqlx::Row;

use super::blobs::BLOB_SIZE;
use super::{PgStore, write_error};
use crate::rows::pull_snapshot_from;
use crate::{Conflict, EncodeResponse, OplogStore, PullSnapshot, PushOutcome, PushResult, Scope, StoreResult};

const HEAD: &str = "SELECT head FROM oplog_heads WHERE user_id = $1 AND vault_id = $2";

#[async_trait::async_trait]
impl OplogStore for PgStore {
    async fn push(
        &self,
        scope: &Scope,
        device_id: &str,
        push: &ValidPush,
        encode: EncodeResponse<'_>,
        now: i64,
    ) -> StoreResult<PushOutcome> {
        // Dropping `tx` on any early return rolls it back, so a rejected push writes nothing.
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO oplog_heads (user_id, vault_id, head) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING")
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .execute(&mut *tx)
            .await?;
        let mut head: i64 =
            sqlx::query_scalar("SELECT head FROM oplog_heads WHERE user_id = $1 AND vault_id = $2 FOR UPDATE")
                .bind(&scope.user_id)
                .bind(&scope.vault_id)
                .fetch_one(&mut *tx)
                .await?;

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
                "SELECT response FROM oplog_idempotency WHERE user_id = $1 AND vault_id = $2 AND idempotency_key = $3",
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

        let mut accepted: Vec<String> = Vec::with_capacity(push.ops.len());
        let mut conflicts = Vec::new();
        for op in &push.ops {
            if let Some(floor) = conflict_floor(op) {
                let candidates = sqlx::query(
                    "SELECT op_id, device_id, op_type, server_sequence FROM oplog_ops
                     WHERE user_id = $1 AND vault_id = $2 AND entity_type = $3 AND entity_id = $4
                       AND server_sequence > $5
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
            if accepted.contains(&op.op_id) {
                continue;
            }
            // As in SQLite: one statement checks and stores, and only a stored op takes a number.
            let stored = sqlx::query(
                "INSERT INTO oplog_ops (user_id, vault_id, server_sequence, op_id, device_id, entity_type,
                    entity_id, op_type, payload_json, client_sequence, last_seen_server_seq, created_at, pushed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
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
            .map_err(write_error)?
            .rows_affected()
                > 0;
            if stored {
                head += 1;
                if is_delete(op) {
                    sqlx::query(
                        "INSERT INTO oplog_tombstones (user_id, vault_id, entity_type, entity_id, op_id, server_sequence, deleted_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
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

        sqlx::query("UPDATE oplog_heads SET head = $3 WHERE user_id = $1 AND vault_id = $2")
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(head)
            .execute(&mut *tx)
            .await?;
        let result = PushResult { accepted, conflicts, head };
        if let Some(key) = &push.idempotency_key {
            sqlx::query(
                "INSERT INTO oplog_idempotency (user_id, vault_id, idempotency_key, response, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
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
        tx.commit().await?;
        Ok(PushOutcome::Committed(result))
    }

    async fn pull(&self, scope: &Scope, since: i64, limit: i64) -> StoreResult<PullSnapshot> {
        // One statement reads one snapshot on both backends, so the head and the page agree
        // without a transaction around two statements (see the module docs).
        let rows = sqlx::query(
            "SELECT h.head, o.op_id, o.server_sequence, o.device_id, o.entity_type, o.entity_id, o.op_type,
                    o.payload_json, o.created_at
             FROM oplog_heads h LEFT JOIN oplog_ops o
               ON o.user_id = h.user_id AND o.vault_id = h.vault_id AND o.server_sequence > $3
             WHERE h.user_id = $1 AND h.vault_id = $2
             ORDER BY o.server_sequence LIMIT $4",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(pull_snapshot_from(&rows))
    }

    async fn head(&self, scope: &Scope) -> StoreResult<i64> {
        let head: Option<i64> =
            sqlx::query_scalar(HEAD).bind(&scope.user_id).bind(&scope.vault_id).fetch_optional(&self.pool).await?;
        Ok(head.unwrap_or(0))
    }

    async fn purge_idempotency_keys(&self, before: i64) -> StoreResult<u64> {
        let purged = sqlx::query("DELETE FROM oplog_idempotency WHERE created_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(purged)
    }
}
