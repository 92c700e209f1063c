//! SQLite implementation of [`HistoryStore`]. Versions reference the document's internal integer
//! key; the opaque [`DocId`] callers hold is resolved to it inside each statement.

use concord_core::history::Retention;
use sqlx::Row;

use super::SqliteStore;
use crate::{DocId, HistoryStore, StoreError, StoreResult, VersionRecord};

fn record(row: &sqlx::sqlite::SqliteRow) -> VersionRecord {
    VersionRecord {
        id: row.get("id"),
        created_at: row.get("created_at"),
        label: row.get("label"),
        bytes: row.get("bytes"),
    }
}

#[async_trait::async_trait]
impl HistoryStore for SqliteStore {
    async fn add_version(
        &self,
        doc_id: &DocId,
        state: &[u8],
        label: Option<&str>,
        now: i64,
        retention: Retention,
    ) -> StoreResult<VersionRecord> {
        let mut txn = self.writer.begin().await?;
        let row = sqlx::query(
            "INSERT INTO doc_versions (doc_id, created_at, label, state)
             SELECT id, ?2, ?3, ?4 FROM docs WHERE uid = ?1
             RETURNING id, created_at, label, LENGTH(state) AS bytes",
        )
        .bind(doc_id.as_str())
        .bind(now)
        .bind(label)
        .bind(state)
        .fetch_optional(&mut *txn)
        .await?
        .ok_or(StoreError::Missing("the document no longer exists"))?;
        let added = record(&row);
        // The rule is core's; the ids and times it needs are few (at most `keep` + 1 rows).
        let rows = sqlx::query(
            "SELECT id, created_at FROM doc_versions
             WHERE doc_id = (SELECT id FROM docs WHERE uid = ?1) ORDER BY id DESC",
        )
        .bind(doc_id.as_str())
        .fetch_all(&mut *txn)
        .await?;
        let versions: Vec<(i64, i64)> = rows.iter().map(|r| (r.get("id"), r.get("created_at"))).collect();
        for id in retention.expired(&versions, now) {
            sqlx::query("DELETE FROM doc_versions WHERE id = ?1").bind(id).execute(&mut *txn).await?;
        }
        txn.commit().await?;
        Ok(added)
    }

    async fn versions_of(&self, doc_id: &DocId) -> StoreResult<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT id, created_at, label, LENGTH(state) AS bytes FROM doc_versions
             WHERE doc_id = (SELECT id FROM docs WHERE uid = ?1) ORDER BY id DESC",
        )
        .bind(doc_id.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    async fn version_state(&self, doc_id: &DocId, version_id: i64) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT state FROM doc_versions WHERE doc_id = (SELECT id FROM docs WHERE uid = ?1) AND id = ?2",
        )
        .bind(doc_id.as_str())
        .bind(version_id)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn history_bytes(&self, doc_id: &DocId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(SUM(LENGTH(state)), 0) FROM doc_versions
             WHERE doc_id = (SELECT id FROM docs WHERE uid = ?1)",
        )
        .bind(doc_id.as_str())
        .fetch_one(&self.reader)
        .await?)
    }
}
