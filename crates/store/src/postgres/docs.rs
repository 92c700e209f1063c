//! PostgreSQL implementation of [`DocStore`]. Why seqs stay gap-free and in commit order with
//! appenders on several nodes, and why compaction stays correct, is argued in `src/sqlite/docs.rs`:
//! here the `UPDATE docs SET head = head + n` of an append and the `UPDATE docs SET snapshot …` of
//! a compaction take the document row's lock, held until commit.

use std::collections::HashMap;

use concord_core::id::{new_document_id, new_workspace_id};
use sqlx::Row;

use super::{PgStore, write_error};
use crate::docs::{head_advances, number_batch};
use crate::{DocId, DocSize, DocStore, DocSummary, NewDocUpdate, StoreError, StoreResult, StoredDoc, WorkspaceRecord};

#[async_trait::async_trait]
impl DocStore for PgStore {
    async fn load_doc(&self, workspace_id: &str, name: &str, now: i64) -> StoreResult<StoredDoc> {
        // Most loads find the document; the upsert only runs for a new one, and two nodes
        // creating it together get the same row.
        let existing: Option<String> = sqlx::query_scalar("SELECT id FROM docs WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        let id = match existing {
            Some(id) => id,
            None => sqlx::query_scalar(
                "INSERT INTO docs (id, workspace_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET name = excluded.name RETURNING id",
            )
            .bind(new_document_id())
            .bind(workspace_id)
            .bind(name)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(write_error)?,
        };
        // Deleted between the insert and the read: the caller's document is gone, as it would be
        // a moment later anyway.
        self.read_doc(&id).await?.ok_or(StoreError::Missing("the document was deleted while loading"))
    }

    async fn append_doc_updates(&self, batch: &[NewDocUpdate]) -> StoreResult<Vec<i64>> {
        let mut tx = self.write().await?;
        // Three statements per batch however many documents and updates it holds: the head rows
        // locked in id order (two batches sharing documents, on two nodes, then queue instead of
        // deadlocking; `UPDATE … FROM` alone locks in whatever order its join runs), all heads
        // advanced in one statement, all updates inserted in one, their columns passed as arrays.
        let advances = head_advances(batch);
        let ids: Vec<&str> = advances.iter().map(|doc| doc.doc_id.as_str()).collect();
        let locked: Vec<String> = sqlx::query_scalar("SELECT id FROM docs WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        if locked.len() < ids.len() {
            return Err(StoreError::Missing("the document no longer exists"));
        }
        // The rows are locked by this transaction until commit; a clock that stepped back moves
        // `updated_at` nothing.
        let heads: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE docs SET head = docs.head + v.n, updated_at = GREATEST(docs.updated_at, v.at)
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS v(id, n, at)
             WHERE docs.id = v.id RETURNING docs.id, docs.head",
        )
        .bind(&ids)
        .bind(advances.iter().map(|doc| doc.count).collect::<Vec<_>>())
        .bind(advances.iter().map(|doc| doc.at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        let counts: HashMap<&str, i64> = advances.iter().map(|doc| (doc.doc_id.as_str(), doc.count)).collect();
        let next = heads
            .iter()
            .map(|(id, head)| {
                let (&id, &count) = counts.get_key_value(id.as_str()).expect("the statement returns its own rows");
                (id, head - count + 1)
            })
            .collect();
        let seqs = number_batch(batch, next);
        sqlx::query(
            "INSERT INTO doc_updates (doc_id, seq, data) SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bytea[])",
        )
        .bind(batch.iter().map(|update| update.doc_id.as_str()).collect::<Vec<_>>())
        .bind(&seqs)
        .bind(batch.iter().map(|update| update.data.as_slice()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seqs)
    }

    async fn compact_doc(&self, doc_id: &DocId, snapshot: &[u8], through_seq: i64) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        // After waiting for the row, PostgreSQL re-checks the condition on the newest version, so
        // a compaction that lost the race sees the winner's snapshot_seq and changes nothing.
        let applied = sqlx::query(
            "UPDATE docs SET snapshot = $2, snapshot_seq = $3 WHERE id = $1 AND snapshot_seq < $3 AND $3 <= head",
        )
        .bind(doc_id.as_str())
        .bind(snapshot)
        .bind(through_seq)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !applied {
            return Ok(false);
        }
        sqlx::query("DELETE FROM doc_updates WHERE doc_id = $1 AND seq <= $2")
            .bind(doc_id.as_str())
            .bind(through_seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn doc_size(&self, doc_id: &DocId) -> StoreResult<DocSize> {
        let row = sqlx::query(
            "SELECT COALESCE(octet_length(d.snapshot), 0)::BIGINT AS snapshot_bytes,
                    COALESCE(SUM(octet_length(u.data)), 0)::BIGINT AS update_bytes,
                    COUNT(u.seq) AS update_count
             FROM docs d LEFT JOIN doc_updates u ON u.doc_id = d.id
             WHERE d.id = $1 GROUP BY d.id",
        )
        .bind(doc_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map_or(DocSize { snapshot_bytes: 0, update_bytes: 0, update_count: 0 }, |r| DocSize {
            snapshot_bytes: r.get("snapshot_bytes"),
            update_bytes: r.get("update_bytes"),
            update_count: r.get("update_count"),
        }))
    }

    async fn doc_updates_after(&self, doc_id: &DocId, seq: i64) -> StoreResult<Option<StoredDoc>> {
        // One snapshot of the database, as `read_doc`: head, snapshot and updates agree.
        let mut tx = self.snapshot().await?;
        let Some(row) = sqlx::query("SELECT snapshot, snapshot_seq, head FROM docs WHERE id = $1")
            .bind(doc_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let snapshot_seq: i64 = row.get("snapshot_seq");
        let updates: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM doc_updates WHERE doc_id = $1 AND seq > $2 ORDER BY seq")
                .bind(doc_id.as_str())
                .bind(seq.max(snapshot_seq))
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let snapshot = if snapshot_seq > seq { row.get("snapshot") } else { None };
        Ok(Some(StoredDoc { id: doc_id.clone(), snapshot, updates, last_seq: row.get("head") }))
    }

    async fn docs_of(&self, workspace_id: &str) -> StoreResult<Vec<DocSummary>> {
        // Names in byte order (as SQLite sorts them), whatever the database's locale.
        let rows = sqlx::query(
            "SELECT d.name, d.updated_at,
                    (COALESCE(octet_length(d.snapshot), 0)
                        + COALESCE((SELECT SUM(octet_length(u.data)) FROM doc_updates u WHERE u.doc_id = d.id), 0))::BIGINT
                        AS bytes
             FROM docs d WHERE d.workspace_id = $1 ORDER BY d.name COLLATE \"C\"",
        )
        .bind(workspace_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DocSummary { name: r.get("name"), bytes: r.get("bytes"), updated_at: r.get("updated_at") })
            .collect())
    }

    async fn find_doc(&self, workspace_id: &str, name: &str) -> StoreResult<Option<StoredDoc>> {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM docs WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match id {
            Some(id) => self.read_doc(&id).await,
            None => Ok(None),
        }
    }

    async fn delete_doc(&self, workspace_id: &str, name: &str) -> StoreResult<bool> {
        // Its updates and versions go with it through ON DELETE CASCADE, in this one statement.
        let result = sqlx::query("DELETE FROM docs WHERE workspace_id = $1 AND name = $2")
            .bind(workspace_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_workspace(&self, user_id: &str, name: &str, now: i64) -> StoreResult<WorkspaceRecord> {
        let record = WorkspaceRecord {
            id: new_workspace_id(),
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            created_at: now,
        };
        sqlx::query("INSERT INTO workspaces (id, user_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&record.id)
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(record)
    }

    async fn delete_workspace(&self, user_id: &str, workspace_id: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM workspaces WHERE id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

impl PgStore {
    /// The stored state of document `id`: head, snapshot and updates from one snapshot of the
    /// database; `None` if it was deleted meanwhile.
    async fn read_doc(&self, id: &str) -> StoreResult<Option<StoredDoc>> {
        let mut tx = self.snapshot().await?;
        let Some(row) = sqlx::query("SELECT snapshot, snapshot_seq, head FROM docs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let updates: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM doc_updates WHERE doc_id = $1 AND seq > $2 ORDER BY seq")
                .bind(id)
                .bind(row.get::<i64, _>("snapshot_seq"))
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(StoredDoc {
            id: DocId::new(id.to_owned()),
            snapshot: row.get("snapshot"),
            updates,
            last_seq: row.get("head"),
        }))
    }
}
