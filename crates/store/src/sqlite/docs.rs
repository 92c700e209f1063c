//! SQLite implementation of [`DocStore`].
//!
//! # Why document seqs stay gap-free and in commit order, and compaction stays correct
//!
//! Each document's row in `docs` is its head row: `head` is the seq of its newest update. An
//! append advances it by the batch's updates of that document (`UPDATE docs SET head = head + n
//! … RETURNING head`, one statement for all the batch's documents) and inserts them under the
//! seqs up to the new head, in batch order, in the same write transaction as every other update
//! of the batch. Two appends to one document cannot interleave: here every write goes through the
//! single writer connection; on PostgreSQL the `UPDATE` takes the row lock, which holds until
//! commit, so appenders of one document on any number of nodes queue on it (appenders of other
//! documents do not; a batch locks its rows in document-id order first, so two batches sharing
//! documents queue instead of deadlocking) and the next one numbers its updates only after the
//! previous one committed. A rolled-back
//! batch advances nothing, so no seq is skipped, and seqs become visible in ascending order. A
//! load reads head, snapshot and updates in one read transaction, so what it returns is every
//! update from `snapshot_seq + 1` to `head` with nothing missing.
//!
//! That is what makes a node's knowledge checkable: having applied seqs 1..N of a document (or a
//! snapshot through S and S+1..N) means having all of it up to N, with no global counter to ask.
//!
//! Compaction writes a snapshot that the caller built from every update up to `through_seq` and
//! deletes `seq <= through_seq`. It updates the same head row first, under the same lock, and only
//! when `snapshot_seq < through_seq <= head`: a compaction that lost a race to a later one (from
//! another node, or an older task) changes nothing, so a newer snapshot is never replaced by an
//! older one whose deleted updates it lacks, and no snapshot claims a seq that was never stored
//! (which would hide the updates that later take that seq). Holding the row for the whole
//! transaction means one compaction of a document at a time across all nodes; appends of the
//! document wait for it and then number after the head it left unchanged.

use std::collections::HashMap;

use concord_core::id::{new_document_id, new_workspace_id};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{SqliteStore, write_error};
use crate::docs::{head_advances, number_batch};
use crate::{DocId, DocSize, DocStore, DocSummary, NewDocUpdate, StoreError, StoreResult, StoredDoc, WorkspaceRecord};

/// Updates per multi-row insert, and documents per head advance: three parameters each, far
/// below SQLite's 32 766.
const INSERT_ROWS: usize = 1000;
const ADVANCE_ROWS: usize = 1000;

#[async_trait::async_trait]
impl DocStore for SqliteStore {
    async fn load_doc(&self, workspace_id: &str, name: &str, now: i64) -> StoreResult<StoredDoc> {
        // Most loads find the document, so look on a reader first and only write to create it.
        let existing: Option<String> = sqlx::query_scalar("SELECT uid FROM docs WHERE workspace_id = ?1 AND name = ?2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        let uid = match existing {
            Some(uid) => uid,
            None => sqlx::query_scalar(
                "INSERT INTO docs (uid, workspace_id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (workspace_id, name) DO UPDATE SET name = excluded.name RETURNING uid",
            )
            .bind(new_document_id())
            .bind(workspace_id)
            .bind(name)
            .bind(now)
            .fetch_one(&self.writer)
            .await
            .map_err(write_error)?,
        };
        // Deleted between the insert and the read: the caller's document is gone, as it would be
        // a moment later anyway.
        read_doc(&self.reader, &uid).await?.ok_or(StoreError::Missing("the document was deleted while loading"))
    }

    async fn append_doc_updates(&self, batch: &[NewDocUpdate]) -> StoreResult<Vec<i64>> {
        let mut txn = self.writer.begin().await?;
        // Four statements per batch however many documents and updates it holds (up to the
        // chunk sizes): each statement is a round trip to SQLite's worker thread, two thread
        // wake-ups, and with one per document or per update these were most of a busy server's
        // CPU (perf, Y3).
        let advances = head_advances(batch);
        let mut next = HashMap::with_capacity(advances.len());
        let mut row_ids = HashMap::with_capacity(advances.len());
        for chunk in advances.chunks(ADVANCE_ROWS) {
            // The head rows number the updates (see the module docs); a missing document (its
            // workspace was deleted meanwhile) fails the whole batch. A clock that stepped back
            // moves `updated_at` nothing.
            let mut advance = QueryBuilder::<Sqlite>::new(
                "UPDATE docs SET head = head + v.column2, updated_at = MAX(updated_at, v.column3) FROM (",
            );
            advance.push_values(chunk, |mut row, doc| {
                row.push_bind(doc.doc_id.as_str()).push_bind(doc.count).push_bind(doc.at);
            });
            advance.push(") AS v WHERE docs.uid = v.column1 RETURNING uid, id, head");
            let heads: Vec<(String, i64, i64)> = advance.build_query_as().fetch_all(&mut *txn).await?;
            if heads.len() < chunk.len() {
                return Err(StoreError::Missing("the document no longer exists"));
            }
            let counts: HashMap<&str, i64> = chunk.iter().map(|doc| (doc.doc_id.as_str(), doc.count)).collect();
            for (uid, id, head) in heads {
                let (&uid, &count) = counts.get_key_value(uid.as_str()).expect("the statement returns its own rows");
                next.insert(uid, head - count + 1);
                row_ids.insert(uid, id);
            }
        }
        let seqs = number_batch(batch, next);
        let rows: Vec<(i64, i64, &[u8])> = batch
            .iter()
            .zip(&seqs)
            .map(|(update, &seq)| (row_ids[update.doc_id.as_str()], seq, &update.data[..]))
            .collect();
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new("INSERT INTO doc_updates (doc_id, seq, data) ");
            insert.push_values(chunk, |mut row, &(id, seq, data)| {
                row.push_bind(id).push_bind(seq).push_bind(data);
            });
            insert.build().execute(&mut *txn).await?;
        }
        txn.commit().await?;
        Ok(seqs)
    }

    async fn compact_doc(&self, doc_id: &DocId, snapshot: &[u8], through_seq: i64) -> StoreResult<bool> {
        let mut txn = self.writer.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE docs SET snapshot = ?2, snapshot_seq = ?3
             WHERE uid = ?1 AND snapshot_seq < ?3 AND ?3 <= head RETURNING id",
        )
        .bind(doc_id.as_str())
        .bind(snapshot)
        .bind(through_seq)
        .fetch_optional(&mut *txn)
        .await?;
        let Some(id) = id else { return Ok(false) };
        sqlx::query("DELETE FROM doc_updates WHERE doc_id = ?1 AND seq <= ?2")
            .bind(id)
            .bind(through_seq)
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn doc_size(&self, doc_id: &DocId) -> StoreResult<DocSize> {
        let row = sqlx::query(
            "SELECT COALESCE(LENGTH(d.snapshot), 0) AS snapshot_bytes,
                    COALESCE(SUM(LENGTH(u.data)), 0) AS update_bytes,
                    COUNT(u.seq) AS update_count
             FROM docs d LEFT JOIN doc_updates u ON u.doc_id = d.id
             WHERE d.uid = ?1 GROUP BY d.id",
        )
        .bind(doc_id.as_str())
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map_or(DocSize { snapshot_bytes: 0, update_bytes: 0, update_count: 0 }, |r| DocSize {
            snapshot_bytes: r.get("snapshot_bytes"),
            update_bytes: r.get("update_bytes"),
            update_count: r.get("update_count"),
        }))
    }

    async fn doc_updates_after(&self, doc_id: &DocId, seq: i64) -> StoreResult<Option<StoredDoc>> {
        let mut txn = self.reader.begin().await?;
        let Some(row) = sqlx::query("SELECT id, snapshot, snapshot_seq, head FROM docs WHERE uid = ?1")
            .bind(doc_id.as_str())
            .fetch_optional(&mut *txn)
            .await?
        else {
            return Ok(None);
        };
        let (id, snapshot_seq): (i64, i64) = (row.get("id"), row.get("snapshot_seq"));
        let updates: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT data FROM doc_updates WHERE doc_id = ?1 AND seq > ?2 ORDER BY seq")
                .bind(id)
                .bind(seq.max(snapshot_seq))
                .fetch_all(&mut *txn)
                .await?;
        txn.commit().await?;
        let snapshot = if snapshot_seq > seq { row.get("snapshot") } else { None };
        Ok(Some(StoredDoc { id: doc_id.clone(), snapshot, updates, last_seq: row.get("head") }))
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
        let uid: Option<String> = sqlx::query_scalar("SELECT uid FROM docs WHERE workspace_id = ?1 AND name = ?2")
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        match uid {
            Some(uid) => read_doc(&self.reader, &uid).await,
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
            .map_err(write_error)?;
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

/// The stored state of document `uid`: head, snapshot and updates read in one transaction, so
/// they are from the same moment; `None` if it was deleted meanwhile.
async fn read_doc(reader: &sqlx::SqlitePool, uid: &str) -> StoreResult<Option<StoredDoc>> {
    let mut txn = reader.begin().await?;
    let Some(row) = sqlx::query("SELECT id, snapshot, snapshot_seq, head FROM docs WHERE uid = ?1")
        .bind(uid)
        .fetch_optional(&mut *txn)
        .await?
    else {
        return Ok(None);
    };
    let (id, snapshot_seq): (i64, i64) = (row.get("id"), row.get("snapshot_seq"));
    let updates: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT data FROM doc_updates WHERE doc_id = ?1 AND seq > ?2 ORDER BY seq")
            .bind(id)
            .bind(snapshot_seq)
            .fetch_all(&mut *txn)
            .await?;
    txn.commit().await?;
    Ok(Some(StoredDoc {
        id: DocId::new(uid.to_owned()),
        snapshot: row.get("snapshot"),
        updates,
        last_seq: row.get("head"),
    }))
}
