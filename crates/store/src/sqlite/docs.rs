//! SQLite implementation of [`DocStore`].

use concord_core::id::new_workspace_id;
use sqlx::Row;

use super::SqliteStore;
use crate::{DocSize, DocStore, NewDocUpdate, StoreError, StoreResult, StoredDoc, WorkspaceRecord};

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
                "INSERT INTO docs (workspace_id, name, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET name = excluded.name RETURNING id",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(now)
            .fetch_one(&self.writer)
            .await
            .map_err(StoreError::from_write)?,
        };
        // One read transaction, so the snapshot and the updates are from the same moment.
        let mut txn = self.reader.begin().await?;
        let row =
            sqlx::query("SELECT snapshot, snapshot_seq FROM docs WHERE id = ?1").bind(id).fetch_one(&mut *txn).await?;
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
        Ok(StoredDoc { id, snapshot, updates, last_seq })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountStore, Store};

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    async fn workspace(store: &SqliteStore, email: &str) -> WorkspaceRecord {
        let user = store.user_for_verified_email(email, 1).await.unwrap();
        store.ensure_workspace(&user.id, "default", 1).await.unwrap()
    }

    fn updates(doc_id: i64, payloads: &[&[u8]]) -> Vec<NewDocUpdate> {
        payloads.iter().map(|p| NewDocUpdate { doc_id, data: p.to_vec() }).collect()
    }

    #[tokio::test]
    async fn a_document_is_its_snapshot_plus_later_updates() {
        let (_dir, store) = store().await;
        let ws = workspace(&store, "a@example.com").await;
        let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
        assert_eq!((doc.snapshot.clone(), doc.updates.len(), doc.last_seq), (None, 0, 0));
        // Loading again finds the same document; another name is another document.
        assert_eq!(store.load_doc(&ws.id, "notes", 2).await.unwrap().id, doc.id);
        let other = store.load_doc(&ws.id, "other", 2).await.unwrap();
        assert_ne!(other.id, doc.id);

        let mut batch = updates(doc.id, &[b"u1", b"u2"]);
        batch.extend(updates(other.id, &[b"o1"]));
        let seqs = store.append_doc_updates(&batch).await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        let loaded = store.load_doc(&ws.id, "notes", 3).await.unwrap();
        assert_eq!(loaded.updates, vec![b"u1".to_vec(), b"u2".to_vec()]);
        assert_eq!(loaded.last_seq, seqs[1]);

        store.compact_doc(doc.id, b"snap", seqs[0]).await.unwrap();
        let seq3 = store.append_doc_updates(&updates(doc.id, &[b"u3"])).await.unwrap()[0];
        let loaded = store.load_doc(&ws.id, "notes", 4).await.unwrap();
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap"[..]));
        assert_eq!(loaded.updates, vec![b"u2".to_vec(), b"u3".to_vec()]);
        assert_eq!(loaded.last_seq, seq3);
        let size = store.doc_size(doc.id).await.unwrap();
        assert_eq!(size, DocSize { snapshot_bytes: 4, update_bytes: 4, update_count: 2 });

        // Compacting everything leaves only the snapshot, and seqs keep increasing afterwards.
        store.compact_doc(doc.id, b"snap2", seq3).await.unwrap();
        assert_eq!(store.doc_size(doc.id).await.unwrap().update_count, 0);
        let seq4 = store.append_doc_updates(&updates(doc.id, &[b"u4"])).await.unwrap()[0];
        assert!(seq4 > seq3);
        assert_eq!(store.load_doc(&ws.id, "notes", 5).await.unwrap().updates, vec![b"u4".to_vec()]);
    }

    #[tokio::test]
    async fn a_failed_batch_stores_nothing() {
        let (_dir, store) = store().await;
        let ws = workspace(&store, "a@example.com").await;
        let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
        // The second update names a document that does not exist: the foreign key refuses it.
        let mut batch = updates(doc.id, &[b"u1"]);
        batch.extend(updates(doc.id + 1000, &[b"x"]));
        assert!(store.append_doc_updates(&batch).await.is_err());
        assert!(store.load_doc(&ws.id, "notes", 2).await.unwrap().updates.is_empty());
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn workspaces_are_created_once_and_deleted_with_their_documents() {
        let (_dir, store) = store().await;
        let default = workspace(&store, "a@example.com").await;
        let user = default.user_id.clone();
        let ws = store.create_workspace(&user, "journal", 1).await.unwrap();
        assert!(matches!(store.create_workspace(&user, "journal", 1).await, Err(StoreError::Conflict(_))));
        let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
        store.append_doc_updates(&updates(doc.id, &[b"u1"])).await.unwrap();

        let intruder = workspace(&store, "b@example.com").await;
        assert!(!store.delete_workspace(&intruder.user_id, &ws.id).await.unwrap());
        assert!(store.delete_workspace(&user, &ws.id).await.unwrap());
        assert!(!store.delete_workspace(&user, &ws.id).await.unwrap());
        assert_eq!(store.doc_size(doc.id).await.unwrap().update_count, 0);
        let names: Vec<String> = store.workspaces_of(&user).await.unwrap().into_iter().map(|w| w.name).collect();
        assert_eq!(names, vec!["default".to_owned()]);
    }
}
