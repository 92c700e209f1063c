//! PostgreSQL implementation of [`UsageStore`]: the SQLite statements in PostgreSQL's spelling.

use super::PgStore;
use crate::rows::{document_usage_from, vault_usage_from, workspace_usage_from};
use crate::{DocumentUsage, StoreResult, UsageStore, VaultUsage, WorkspaceUsage};

#[async_trait::async_trait]
impl UsageStore for PgStore {
    async fn vault_usage(&self, user_id: &str) -> StoreResult<Vec<VaultUsage>> {
        // Each count reads one scope through the index that starts with (user_id, vault_id).
        let rows = sqlx::query(
            "SELECT v.vault_id AS vault_id,
                    COALESCE((SELECT head FROM oplog_heads h WHERE h.user_id = $1 AND h.vault_id = v.vault_id), 0) AS head,
                    (SELECT COUNT(*) FROM oplog_ops o WHERE o.user_id = $1 AND o.vault_id = v.vault_id) AS ops,
                    COALESCE((SELECT SUM(size) FROM blob_refs b WHERE b.user_id = $1 AND b.vault_id = v.vault_id), 0)::BIGINT AS blob_bytes
             FROM (SELECT vault_id FROM oplog_heads WHERE user_id = $1
                   UNION SELECT vault_id FROM blob_refs WHERE user_id = $1
                   UNION SELECT vault_id FROM devices WHERE user_id = $1 AND vault_id IS NOT NULL) v
             ORDER BY v.vault_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(vault_usage_from).collect())
    }

    async fn workspace_usage(&self, user_id: &str) -> StoreResult<Vec<WorkspaceUsage>> {
        let rows = sqlx::query(
            "SELECT w.id AS id, w.name AS name,
                    (SELECT COUNT(*) FROM docs d WHERE d.workspace_id = w.id) AS documents,
                    (COALESCE((SELECT SUM(COALESCE(octet_length(d.snapshot), 0)) FROM docs d WHERE d.workspace_id = w.id), 0)
                    + COALESCE((SELECT SUM(octet_length(u.data)) FROM doc_updates u JOIN docs d ON d.id = u.doc_id
                                WHERE d.workspace_id = w.id), 0))::BIGINT AS bytes
             FROM workspaces w WHERE w.user_id = $1 ORDER BY w.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(workspace_usage_from).collect())
    }

    async fn document_usage(&self, user_id: &str, limit: i64) -> StoreResult<Vec<DocumentUsage>> {
        let rows = sqlx::query(
            "SELECT d.workspace_id AS workspace_id, d.name AS name,
                    (COALESCE(octet_length(d.snapshot), 0)
                    + COALESCE((SELECT SUM(octet_length(u.data)) FROM doc_updates u WHERE u.doc_id = d.id), 0))::BIGINT AS bytes
             FROM docs d JOIN workspaces w ON w.id = d.workspace_id
             WHERE w.user_id = $1 ORDER BY w.name, d.name LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(document_usage_from).collect())
    }
}
