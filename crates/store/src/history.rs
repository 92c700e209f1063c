//! The document history part of the contract: versions of a document (its whole state at a
//! moment), added with retention applied in the same transaction, listed, and read back.

use concord_core::history::Retention;

use crate::{DocId, StoreResult};

/// A version as listed (without its state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// Increasing per store: a later version has a larger id.
    pub id: i64,
    pub created_at: i64,
    /// `None` for automatic versions.
    pub label: Option<String>,
    /// Size of the stored state.
    pub bytes: i64,
}

#[async_trait::async_trait]
pub trait HistoryStore {
    /// Stores a version of document `doc_id`, then deletes the document's versions that
    /// `retention` no longer keeps at `now` (the new one counts), in one transaction. Returns the
    /// new version; retention may delete even it (a `max_age_secs` below zero).
    async fn add_version(
        &self,
        doc_id: &DocId,
        state: &[u8],
        label: Option<&str>,
        now: i64,
        retention: Retention,
    ) -> StoreResult<VersionRecord>;

    /// The document's versions, newest first.
    async fn versions_of(&self, doc_id: &DocId) -> StoreResult<Vec<VersionRecord>>;

    /// The state of one of the document's versions; `None` if it has no such version.
    async fn version_state(&self, doc_id: &DocId, version_id: i64) -> StoreResult<Option<Vec<u8>>>;

    /// Bytes of version states stored for the document.
    async fn history_bytes(&self, doc_id: &DocId) -> StoreResult<i64>;
}
