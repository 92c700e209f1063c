//! The blob part of the contract: which scope may read which content-addressed blob, and quotas.
//! The bytes themselves live on the filesystem, managed by the server.

use concord_core::blob::{BlobHash, BlobQuota};

use crate::{Scope, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddBlobRef {
    Added,
    /// The scope had it already; uploading the same content again is idempotent.
    AlreadyReferenced,
    /// Adding it would take the vault or the user over quota; nothing was written.
    QuotaExceeded,
}

#[async_trait::async_trait]
pub trait BlobStore {
    /// The size of `hash` if this scope references it.
    async fn blob_size(&self, scope: &Scope, hash: &BlobHash) -> StoreResult<Option<u64>>;

    /// References `hash` from `scope`, checking quotas against the scope's and the user's current
    /// usage in the same transaction, so concurrent uploads cannot overshoot together.
    async fn add_blob_ref(
        &self,
        scope: &Scope,
        hash: &BlobHash,
        size: u64,
        quota: BlobQuota,
        now: i64,
    ) -> StoreResult<AddBlobRef>;

    /// Whether any scope still references `hash`; the garbage collector keeps only such files.
    async fn blob_referenced(&self, hash: &BlobHash) -> StoreResult<bool>;
}
