//! PostgreSQL implementation of [`OplogStore`]: the design argued in `src/sqlite/oplog.rs`. The
//! push first makes sure the scope's head row exists and locks it (`SELECT … FOR UPDATE`), so
//! pushers of one scope on every node run one at a time until commit; everything the push then
//! reads (blob references, the idempotency record, conflict candidates) is read after the previous
//! pusher committed, so a retried idempotency key replays even when both copies raced. A pull is
//! one statement, hence one snapshot of head and page at any isolation level.

use std::collections::{HashMap, HashSet};

use concord_core::oplog::{PushOp, ValidPush, conflict_floor, is_delete};

use super::blobs::BLOB_SIZE;
use super::{PgStore, write_error};
use crate::oplog::{NewOps, new_ops};
use crate::rows::{conflicts_from, pull_columns, pull_snapshot_from};
use crate::{EncodeResponse, OplogStore, PullSnapshot, PushOutcome, PushResult, Scope, StoreResult};

const HEAD: &str = "SELECT head FROM oplog_heads WHERE user_id = $1 AND vault_id = $2";

#[async_trait::async_trait]
impl OplogStore for PgStore {
    async fn push(
        &self,
        scope: &Scope,
        device_id: &str,
        push: ValidPush,
        encode: EncodeResponse,
        now: i64,
    ) -> StoreResult<PushOutcome> {
        // Dropping `tx` on any early return rolls it back, so a rejected push writes nothing.
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO oplog_heads (user_id, vault_id, head) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING")
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .execute(&mut *tx)
            .await?;
        let head: i64 =
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

        // Conflicts first: a candidate must come from another device, so ops of this batch (all
        // from `device_id`) never are one, and every check may run before the batch is written.
        let mut conflicts = Vec::new();
        for op in &push.ops {
            let Some(floor) = conflict_floor(op) else { continue };
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
            conflicts.extend(conflicts_from(&candidates, device_id, op));
        }

        // Two statements for the whole batch instead of one per op: the ids the scope already
        // holds, then one insert of the rest, numbered in Rust, its columns passed as arrays
        // (`UNNEST`). The insert has no `ON CONFLICT`: after the check (made under the head row's
        // lock), a clash on either unique key is a bug and fails.
        let ids: Vec<&str> = push.ops.iter().map(|op| op.op_id.as_str()).collect();
        let known: HashSet<String> =
            sqlx::query_scalar("SELECT op_id FROM oplog_ops WHERE user_id = $1 AND vault_id = $2 AND op_id = ANY($3)")
                .bind(&scope.user_id)
                .bind(&scope.vault_id)
                .bind(ids)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let NewOps { stored, accepted, head } = new_ops(&push.ops, &known, head);
        if !stored.is_empty() {
            let column = |f: fn(&PushOp) -> &str| stored.iter().map(|(_, op)| f(op)).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO oplog_ops (user_id, vault_id, server_sequence, op_id, device_id, entity_type,
                    entity_id, op_type, payload_json, client_sequence, last_seen_server_seq, created_at, pushed_at)
                 SELECT $1, $2, r.sequence, r.op_id, $3, r.entity_type, r.entity_id, r.op_type, r.payload_json,
                    r.client_sequence, r.last_seen_server_seq, r.created_at, $4
                 FROM UNNEST($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                    $11::bigint[], $12::bigint[], $13::text[])
                   AS r(sequence, op_id, entity_type, entity_id, op_type, payload_json, client_sequence,
                    last_seen_server_seq, created_at)",
            )
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(device_id)
            .bind(now)
            .bind(stored.iter().map(|(sequence, _)| *sequence).collect::<Vec<_>>())
            .bind(column(|op| &op.op_id))
            .bind(column(|op| &op.entity_type))
            .bind(column(|op| &op.entity_id))
            .bind(column(|op| &op.op_type))
            .bind(column(|op| &op.payload_json))
            .bind(stored.iter().map(|(_, op)| op.client_sequence).collect::<Vec<_>>())
            .bind(stored.iter().map(|(_, op)| op.last_seen_server_seq).collect::<Vec<_>>())
            .bind(column(|op| &op.created_at))
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        // Deletes are rare: one statement each, in request order, so the last delete of an entity wins.
        for (sequence, op) in stored.iter().filter(|(_, op)| is_delete(op)) {
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
            .bind(sequence)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
        let rows = sqlx::query(concat!(
            "SELECT ",
            pull_columns!(),
            " FROM oplog_heads h LEFT JOIN oplog_ops o
                 ON o.user_id = h.user_id AND o.vault_id = h.vault_id AND o.server_sequence > $3
                 WHERE h.user_id = $1 AND h.vault_id = $2
                 ORDER BY o.server_sequence LIMIT $4"
        ))
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
