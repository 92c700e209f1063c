//! What a user's data takes up, for their dashboard: per vault (operation log and blobs) and per
//! workspace (documents). Only counts, sizes and names: never a payload or a document's content.

use crate::StoreResult;

/// One vault of a user: its operation-log scope and the blobs it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultUsage {
    pub vault_id: String,
    /// Operations stored (the log keeps every one; no compaction).
    pub ops: i64,
    /// The scope's head: the sequence number of its latest operation, 0 before any.
    pub head: i64,
    /// Bytes of the blobs the vault references.
    pub blob_bytes: i64,
}

/// One workspace of a user and the size of its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceUsage {
    pub id: String,
    pub name: String,
    pub documents: i64,
    /// Stored bytes of its documents: snapshots plus updates not yet compacted.
    pub bytes: i64,
}

/// One document of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentUsage {
    pub workspace_id: String,
    pub name: String,
    pub bytes: i64,
}

#[async_trait::async_trait]
pub trait UsageStore {
    /// Every vault of `user_id` that has operations, blobs or a paired device, by vault id.
    async fn vault_usage(&self, user_id: &str) -> StoreResult<Vec<VaultUsage>>;

    /// Every workspace of `user_id`, by name.
    async fn workspace_usage(&self, user_id: &str) -> StoreResult<Vec<WorkspaceUsage>>;

    /// The first `limit` documents of `user_id`'s workspaces, by workspace and name.
    async fn document_usage(&self, user_id: &str, limit: i64) -> StoreResult<Vec<DocumentUsage>>;
}
