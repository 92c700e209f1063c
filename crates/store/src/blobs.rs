//! The blob part of the contract: which scope may read which content-addressed blob, quotas, and
//! the claims that order the collector's deletes against new references on every node. The bytes
//! themselves live in the server's blob store.

use std::time::Duration;

use concord_core::blob::{BlobHash, BlobQuota};

use crate::{Scope, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddBlobRef {
    Added,
    /// The scope had it already; uploading the same content again is idempotent.
    AlreadyReferenced,
    /// Adding it would take the vault or the user over quota; nothing was written.
    QuotaExceeded,
    /// A collector holds a live claim to delete the blob's bytes ([`BlobStore::claim_unreferenced_blob`]);
    /// nothing was written. Retry once the claim is released or has expired, and then place the
    /// bytes again: the collector may have deleted them.
    BeingCollected,
}

/// A collector's claim to delete the bytes of one blob no scope references. While it is live, no
/// scope can reference the blob, on any node; it expires by itself so that a collector that dies
/// holding it blocks nothing for long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobClaim {
    pub hash: BlobHash,
    /// Which claim on `hash` this is: a claim that expired and was taken again is another one.
    pub token: String,
}

#[async_trait::async_trait]
pub trait BlobStore {
    /// The size of `hash` if this scope references it.
    async fn blob_size(&self, scope: &Scope, hash: &BlobHash) -> StoreResult<Option<u64>>;

    /// References `hash` from `scope`, checking quotas against the scope's and the user's current
    /// usage in the same transaction, so concurrent uploads cannot overshoot together. Refused
    /// ([`AddBlobRef::BeingCollected`]) while a live claim on `hash` exists.
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

    /// Claims `hash` for deletion for `ttl`, atomically with the check that no scope references it
    /// and that no other live claim exists (an expired one is taken over): `None` otherwise.
    ///
    /// Claims are timed by the database's clock, not by the caller's as every other expiry in this
    /// contract is: a claim made on one node is judged by `add_blob_ref` on another, and the
    /// database's clock is the one clock both read.
    async fn claim_unreferenced_blob(&self, hash: &BlobHash, ttl: Duration) -> StoreResult<Option<BlobClaim>>;

    /// How long `claim` stays live, by the database's clock; `None` once it has expired or was
    /// released or taken over.
    async fn blob_claim_left(&self, claim: &BlobClaim) -> StoreResult<Option<Duration>>;

    /// Ends `claim` (and no later claim on the same blob); ending one that has gone is no error.
    async fn release_blob_claim(&self, claim: &BlobClaim) -> StoreResult<()>;
}
