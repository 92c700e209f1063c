//! The Yjs documents part of the contract: documents inside workspaces, stored as a snapshot plus
//! the updates appended after it.

use std::collections::{BTreeMap, HashMap};

use crate::{StoreResult, WorkspaceRecord};

/// A document's id: opaque, made by the store, the same on every node and backend. Callers only
/// hand it back; it carries no order and no arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DocId(String);

impl DocId {
    pub(crate) fn new(id: String) -> DocId {
        DocId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document as stored: enough to rebuild it in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    pub id: DocId,
    /// The whole document as of `last_seq` minus `updates` (lib0 v1), if it was ever compacted.
    pub snapshot: Option<Vec<u8>>,
    /// Updates appended after the snapshot, oldest first.
    pub updates: Vec<Vec<u8>>,
    /// The document's head: the seq of its newest update (0 if none). Seqs are per document,
    /// 1, 2, 3… with no gaps, so holding every update up to `last_seq` is checkable by counting,
    /// and compaction up to it is safe.
    pub last_seq: i64,
}

/// One update to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDocUpdate {
    pub doc_id: DocId,
    pub data: Vec<u8>,
    /// When it was received (unix seconds): the document's last change from then on.
    pub at: i64,
}

/// One document's share of an append batch: its head advances by `count` in one statement, and
/// its last change becomes the newest of the updates' times (`at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadAdvance<'a> {
    pub doc_id: &'a DocId,
    pub count: i64,
    pub at: i64,
}

/// The documents of an append batch, each once (in id order, so a batch's statements do not
/// depend on the order its rooms queued): one head advance per document instead of one per
/// update, and all of them in one statement (see the backends' `append_doc_updates`).
pub(crate) fn head_advances(batch: &[NewDocUpdate]) -> Vec<HeadAdvance<'_>> {
    let mut docs = BTreeMap::<&str, HeadAdvance<'_>>::new();
    for update in batch {
        docs.entry(update.doc_id.as_str())
            .and_modify(|doc| {
                doc.count += 1;
                doc.at = doc.at.max(update.at);
            })
            .or_insert(HeadAdvance { doc_id: &update.doc_id, count: 1, at: update.at });
    }
    docs.into_values().collect()
}

/// The seq of each update of `batch`, in batch order, from each document's first new seq
/// (its head after the advance minus its count, plus one): a document's updates take its new
/// seqs in the order the batch holds them.
pub(crate) fn number_batch<'a>(batch: &'a [NewDocUpdate], mut next: HashMap<&'a str, i64>) -> Vec<i64> {
    batch
        .iter()
        .map(|update| {
            let seq = next.get_mut(update.doc_id.as_str()).expect("every document of the batch was advanced");
            *seq += 1;
            *seq - 1
        })
        .collect()
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
    /// returns their seqs in order: each document's next seqs after its head, gap-free and in
    /// commit order whichever node appends. Either all are stored or none.
    async fn append_doc_updates(&self, batch: &[NewDocUpdate]) -> StoreResult<Vec<i64>>;

    /// Replaces the snapshot and deletes the updates it contains (seq <= `through_seq`), in one
    /// transaction. The caller promises that `snapshot` contains every update up to `through_seq`.
    /// Returns false, changing nothing, when the stored snapshot already covers `through_seq` (a
    /// later compaction won, perhaps on another node) or `through_seq` is beyond the head.
    async fn compact_doc(&self, doc_id: &DocId, snapshot: &[u8], through_seq: i64) -> StoreResult<bool>;

    async fn doc_size(&self, doc_id: &DocId) -> StoreResult<DocSize>;

    /// What a holder of every update through `seq` lacks, read at one moment: the updates after
    /// `seq`, and the snapshot too when a compaction since covered seqs after `seq` (their
    /// updates are gone; Yjs applies the snapshot over what the holder has without harm).
    /// `last_seq` is the head then; `None` if the document no longer exists. How a node that
    /// missed bus messages (or appended past another node's update) catches up.
    async fn doc_updates_after(&self, doc_id: &DocId, seq: i64) -> StoreResult<Option<StoredDoc>>;

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
