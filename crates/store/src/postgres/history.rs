//! PostgreSQL implementation of [`HistoryStore`], the same statements as SQLite's.

use concord_core::history::Retention;
use sqlx::Row;

use super::PgStore;
use crate::{DocId, HistoryStore, StoreError, StoreResult, VersionRecord};

fn record(row: &sqlx::postgres::PgRow) -> VersionRecord {
    VersionRecord {
        id: row.get("id"),
        created_at: row.get("created_at"),
        label: row.get("label"),
        bytes: row.get("bytes"),
    }
}

#[async_trait::async_trait]
impl HistoryStore for PgStore {
    async fn add_version(
        &self,
        doc_id: &DocId,
        state: &[u8],
        label: Option<&str>,
        now: i64,
        retention: Retention,
    ) -> StoreResult<VersionRecord> {
        let mut tx = self.write().await?;
        // The document's row lock queues adders of one document (on any node), so each one's
        // retention sees every version added before it and the history never outgrows `keep`.
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM docs WHERE id = $1 FOR UPDATE")
            .bind(doc_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::Missing("the document no longer exists"));
        }
        let row = sqlx::query(
            "INSERT INTO doc_versions (doc_id, created_at, label, state) VALUES ($1, $2, $3, $4)
             RETURNING id, created_at, label, octet_length(state)::BIGINT AS bytes",
        )
        .bind(doc_id.as_str())
        .bind(now)
        .bind(label)
        .bind(state)
        .fetch_one(&mut *tx)
        .await?;
        let added = record(&row);
        // The rule is core's; the ids and times it needs are few (at most `keep` + 1 rows).
        let versions: Vec<(i64, i64)> =
            sqlx::query_as("SELECT id, created_at FROM doc_versions WHERE doc_id = $1 ORDER BY id DESC")
                .bind(doc_id.as_str())
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM doc_versions WHERE id = ANY($1)")
            .bind(retention.expired(&versions, now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn versions_of(&self, doc_id: &DocId) -> StoreResult<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT id, created_at, label, octet_length(state)::BIGINT AS bytes FROM doc_versions
             WHERE doc_id = $1 ORDER BY id DESC",
        )
        .bind(doc_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    async fn version_state(&self, doc_id: &DocId, version_id: i64) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT state FROM doc_versions WHERE doc_id = $1 AND id = $2")
            .bind(doc_id.as_str())
            .bind(version_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn history_bytes(&self, doc_id: &DocId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(SUM(octet_length(state)), 0)::BIGINT FROM doc_versions WHERE doc_id = $1",
        )
        .bind(doc_id.as_str())
        .fetch_one(&self.pool)
        .await?)
    }
}
