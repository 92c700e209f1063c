//! PostgreSQL implementation of [`BlobStore`].

use concord_core::blob::{BlobHash, BlobQuota};

use super::PgStore;
use super::accounts::LOCK_USER;
use crate::{AddBlobRef, BlobStore, Scope, StoreResult};

/// Sizes are `u64` in Rust and `BIGINT` here; blob limits keep them far below i64::MAX.
fn to_db(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn from_db(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

/// The size of a blob referenced by a scope; shared with the push's reference check.
pub(super) const BLOB_SIZE: &str = "SELECT size FROM blob_refs WHERE user_id = $1 AND vault_id = $2 AND sha256 = $3";

#[async_trait::async_trait]
impl BlobStore for PgStore {
    async fn blob_size(&self, scope: &Scope, hash: &BlobHash) -> StoreResult<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(BLOB_SIZE)
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(size.map(from_db))
    }

    async fn add_blob_ref(
        &self,
        scope: &Scope,
        hash: &BlobHash,
        size: u64,
        quota: BlobQuota,
        now: i64,
    ) -> StoreResult<AddBlobRef> {
        let mut tx = self.write().await?;
        // The quota counts every vault of the user: uploads of one user, on any node, queue here
        // until the previous one committed, so the sum below includes it.
        sqlx::query(LOCK_USER).bind(&scope.user_id).execute(&mut *tx).await?;
        let known: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM blob_refs WHERE user_id = $1 AND vault_id = $2 AND sha256 = $3")
                .bind(&scope.user_id)
                .bind(&scope.vault_id)
                .bind(hash.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_some() {
            return Ok(AddBlobRef::AlreadyReferenced);
        }
        let (vault_used, user_used): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN vault_id = $2 THEN size ELSE 0 END), 0)::BIGINT, COALESCE(SUM(size), 0)::BIGINT
             FROM blob_refs WHERE user_id = $1",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .fetch_one(&mut *tx)
        .await?;
        if !quota.admits(from_db(vault_used), from_db(user_used), size) {
            return Ok(AddBlobRef::QuotaExceeded);
        }
        sqlx::query("INSERT INTO blob_refs (user_id, vault_id, sha256, size, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(hash.as_str())
            .bind(to_db(size))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AddBlobRef::Added)
    }

    async fn blob_referenced(&self, hash: &BlobHash) -> StoreResult<bool> {
        let any: Option<i32> = sqlx::query_scalar("SELECT 1 FROM blob_refs WHERE sha256 = $1 LIMIT 1")
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(any.is_some())
    }
}
