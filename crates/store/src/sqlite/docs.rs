//! SQLite implementation of [`DocStore`].

use concord_core::id::new_workspace_id;
use sqlx::Row;

use super::SqliteStore;
use crate::{DocSize, DocStore, DocSummary, NewDocUpdate, StoreError, StoreResult, StoredDoc, WorkspaceRecord};

#[async_trait::async_trait]
impl DocStore for SqliteStore {
    async fn load_doc(&self, workspace_id: &str, name: &str, now: i64) -> StoreResult<StoredDoc> {
        // Most loads find the document, so look on a reader first and only write to create it.
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM docs WHERE workspace_id = ?1 AND name = ?2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        let id = match existing {
            Some(id) => id,
            None => sqlx::query_scalar(
                "INSERT INTO docs (workspace_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET name = excluded.name RETURNING id",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(now)
            .fetch_one(&self.writer)
            .await
            .map_err(StoreError::from_write)?,
        };
        // Deleted between the insert and the read: the caller's document is gone, as it would be
        // a moment later anyway.
        read_doc(&self.reader, id).await?.ok_or_else(|| StoreError::Conflict("document deleted while loading".into()))
    }

    async fn append_doc_updates(&self, batch: &[NewDocUpdate]) -> StoreResult<Vec<i64>> {
        let mut txn = self.writer.begin().await?;
        let mut seqs = Vec::with_capacity(batch.len());
        for update in batch {
            let seq: i64 = sqlx::query_scalar("INSERT INTO doc_updates (doc_id, data) VALUES (?1, ?2) RETURNING seq")
                .bind(update.doc_id)
                .bind(&update.data)
                .fetch_one(&mut *txn)
                .await?;
            seqs.push(seq);
            sqlx::query("UPDATE docs SET updated_at = ?2 WHERE id = ?1 AND updated_at < ?2")
                .bind(update.doc_id)
                .bind(update.at)
                .execute(&mut *txn)
                .await?;
        }
        txn.commit().await?;
        Ok(seqs)
    }

    async fn compact_doc(&self, doc_id: i64, snapshot: &[u8], through_seq: i64) -> StoreResult<()> {
        let mut txn = self.writer.begin().await?;
        sqlx::query("UPDATE docs SET snapshot = ?2, snapshot_seq = ?3 WHERE id = ?1")
            .bind(doc_id)
            .bind(snapshot)
            .bind(through_seq)
            .execute(&mut *txn)
            .await?;
        sqlx::query("DELETE FROM doc_updates WHERE doc_id = ?1 AND seq <= ?2")
            .bind(doc_id)
            .bind(through_seq)
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn doc_size(&self, doc_id: i64) -> StoreResult<DocSize> {
        let row = sqlx::query(
            "SELECT COALESCE(LENGTH(d.snapshot), 0) AS snapshot_bytes,
                    COALESCE(SUM(LENGTH(u.data)), 0) AS update_bytes,
                    COUNT(u.seq) AS update_count
             FROM docs d LEFT JOIN doc_updates u ON u.doc_id = d.id
             WHERE d.id = ?1 GROUP BY d.id",
        )
        .bind(doc_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map_or(DocSize { snapshot_bytes: 0, update_bytes: 0, update_count: 0 }, |r| DocSize {
            snapshot_bytes: r.get("snapshot_bytes"),
            update_bytes: r.get("update_bytes"),
            update_count: r.get("update_count"),
        }))
    }

    async fn docs_of(&self, workspace_id: &str) -> StoreResult<Vec<DocSummary>> {
        let rows = sqlx::query(
            "SELECT d.name, d.updated_at,
                    COALESCE(LENGTH(d.snapshot), 0)
                        + COALESCE((SELECT SUM(LENGTH(u.data)) FROM doc_updates u WHERE u.doc_id = d.id), 0) AS bytes
             FROM docs d WHERE d.workspace_id = ?1 ORDER BY d.name",
        )
        .bind(workspace_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DocSummary { name: r.get("name"), bytes: r.get("bytes"), updated_at: r.get("updated_at") })
            .collect())
    }

    async fn find_doc(&self, workspace_id: &str, name: &str) -> StoreResult<Option<StoredDoc>> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM docs WHERE workspace_id = ?1 AND name = ?2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        match id {
            Some(id) => read_doc(&self.reader, id).await,
            None => Ok(None),
        }
    }

    async fn delete_doc(&self, workspace_id: &str, name: &str) -> StoreResult<bool> {
        // Its updates go with it through ON DELETE CASCADE, in this one statement.
        let result = sqlx::query("DELETE FROM docs WHERE workspace_id = ?1 AND name = ?2")
            .bind(workspace_id)
            .bind(name)
            .execute(&self.writer)
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
        sqlx::query("INSERT INTO workspaces (id, user_id, name, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(&record.id)
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(StoreError::from_write)?;
        Ok(record)
    }

    async fn delete_workspace(&self, user_id: &str, workspace_id: &str) -> StoreResult<bool> {
        // Documents and their updates go with it through ON DELETE CASCADE, in this one statement.
        let result = sqlx::query("DELETE FROM workspaces WHERE id = ?1 AND user_id = ?2")
            .bind(workspace_id)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

/// The stored state of document `id`, read in one transaction so the snapshot and the updates are
/// from the same moment; `None` if it was deleted meanwhile.
async fn read_doc(reader: &sqlx::SqlitePool, id: i64) -> StoreResult<Option<StoredDoc>> {
    let mut txn = reader.begin().await?;
    let Some(row) =
        sqlx::query("SELECT snapshot, snapshot_seq FROM docs WHERE id = ?1").bind(id).fetch_optional(&mut *txn).await?
    else {
        return Ok(None);
    };
    let snapshot: Option<Vec<u8>> = row.get("snapshot");
    let snapshot_seq: i64 = row.get("snapshot_seq");
    let rows = sqlx::query("SELECT seq, data FROM doc_updates WHERE doc_id = ?1 AND seq > ?2 ORDER BY seq")
        .bind(id)
        .bind(snapshot_seq)
        .fetch_all(&mut *txn)
        .await?;
    txn.commit().await?;
    let last_seq = rows.last().map_or(snapshot_seq, |r| r.get("seq"));
    let updates = rows.iter().map(|r| r.get("data")).collect();
    Ok(Some(StoredDoc { id, snapshot, updates, last_seq }))
}
