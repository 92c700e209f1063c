//! The Yjs documents part of the contract: documents inside workspaces, stored as a snapshot plus
//! the updates appended after it.

use crate::{StoreResult, WorkspaceRecord};

/// A document as stored: enough to rebuild it in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    pub id: i64,
    /// The whole document as of `last_seq` minus `updates` (lib0 v1), if it was ever compacted.
    pub snapshot: Option<Vec<u8>>,
    /// Updates appended after the snapshot, oldest first.
    pub updates: Vec<Vec<u8>>,
    /// The seq of the newest update included above (0 if none); compaction up to it is safe.
    pub last_seq: i64,
}

/// One update to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocUpdate {
    pub doc_id: i64,
    pub data: Vec<u8>,
    /// When it was received (unix seconds): the document's last change from then on.
    pub at: i64,
}

/// A document as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSummary {
    pub name: String,
    /// Stored bytes: the snapshot plus the updates after it.
    pub bytes: i64,
    /// When it was created or last had an update appended (unix seconds).
    pub updated_at: i64,
}

/// Stored size of a document, for compaction decisions and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocSize {
    pub snapshot_bytes: i64,
    pub update_bytes: i64,
    pub update_count: i64,
}

#[async_trait::async_trait]
pub trait DocStore {
    /// The document `name` of the workspace, created empty if missing, with its stored state.
    async fn load_doc(&self, workspace_id: &str, name: &str, now: i64) -> StoreResult<StoredDoc>;

    /// Appends all updates in one transaction (one fsync for the whole batch: group commit) and
    /// returns their seqs in order. Either all are stored or none.
    async fn append_doc_updates(&self, batch: &[NewDocUpdate]) -> StoreResult<Vec<i64>>;

    /// Replaces the snapshot and deletes the updates it contains (seq <= `through_seq`), in one
    /// transaction.
    async fn compact_doc(&self, doc_id: i64, snapshot: &[u8], through_seq: i64) -> StoreResult<()>;

    async fn doc_size(&self, doc_id: i64) -> StoreResult<DocSize>;

    /// The workspace's documents, by name. The caller has checked the workspace is the user's.
    async fn docs_of(&self, workspace_id: &str) -> StoreResult<Vec<DocSummary>>;

    /// The stored state of the document `name` of the workspace, if it exists (never creates it).
    async fn find_doc(&self, workspace_id: &str, name: &str) -> StoreResult<Option<StoredDoc>>;

    /// Deletes the document with its updates. Returns whether it existed.
    async fn delete_doc(&self, workspace_id: &str, name: &str) -> StoreResult<bool>;

    /// Creates a workspace; a name the user already uses is a [`crate::StoreError::Conflict`].
    async fn create_workspace(&self, user_id: &str, name: &str, now: i64) -> StoreResult<WorkspaceRecord>;

    /// Deletes the user's workspace with all its documents. Returns whether it existed.
    async fn delete_workspace(&self, user_id: &str, workspace_id: &str) -> StoreResult<bool>;
}
