//! PostgreSQL implementation of [`BlobStore`]. Why a claimed blob is never referenced is argued in
//! `src/sqlite/blobs.rs`; here, where writers run concurrently at READ COMMITTED, the claim and the
//! reference both first take the blob's advisory lock ([`LOCK_BLOB`]), so whichever comes second
//! sees what the first committed.

use std::time::Duration;

use concord_core::blob::{BlobHash, BlobQuota};

use super::PgStore;
use super::accounts::LOCK_USER;
use crate::{AddBlobRef, BlobClaim, BlobStore, Scope, StoreResult};

/// Held until commit by a transaction that claims a blob or references it. Keys of two 32-bit
/// halves, a key space apart from the single 64-bit keys other locks use; two hashes sharing a
/// key only wait for each other.
const LOCK_BLOB: &str = "SELECT pg_advisory_xact_lock(hashtext('concord blob'), hashtext($1))";

/// The database's clock in unix milliseconds (`clock_timestamp`, not the transaction's start, so a
/// transaction that waited for a lock judges a claim by the time it reads it).
macro_rules! now_ms {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

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
        sqlx::query(LOCK_BLOB).bind(hash.as_str()).execute(&mut *tx).await?;
        let claimed: Option<i32> =
            sqlx::query_scalar(concat!("SELECT 1 FROM blob_claims WHERE sha256 = $1 AND expires_ms > ", now_ms!()))
                .bind(hash.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if claimed.is_some() {
            return Ok(AddBlobRef::BeingCollected);
        }
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
        // A claim left here has expired (its collector died holding it): no longer needed.
        sqlx::query("DELETE FROM blob_claims WHERE sha256 = $1").bind(hash.as_str()).execute(&mut *tx).await?;
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

    async fn claim_unreferenced_blob(&self, hash: &BlobHash, ttl: Duration) -> StoreResult<Option<BlobClaim>> {
        let mut tx = self.write().await?;
        sqlx::query(LOCK_BLOB).bind(hash.as_str()).execute(&mut *tx).await?;
        let referenced: Option<i32> = sqlx::query_scalar("SELECT 1 FROM blob_refs WHERE sha256 = $1 LIMIT 1")
            .bind(hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if referenced.is_some() {
            return Ok(None);
        }
        // Inserted, or taken over from a claim that has expired; a live claim is left alone.
        let token: Option<String> = sqlx::query_scalar(concat!(
            "INSERT INTO blob_claims (sha256, token, expires_ms) VALUES ($1, gen_random_uuid()::TEXT, ",
            now_ms!(),
            " + $2)
             ON CONFLICT (sha256) DO UPDATE SET token = excluded.token, expires_ms = excluded.expires_ms
             WHERE blob_claims.expires_ms <= ",
            now_ms!(),
            "
             RETURNING token"
        ))
        .bind(hash.as_str())
        .bind(to_db(ttl.as_millis().try_into().unwrap_or(u64::MAX)))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token.map(|token| BlobClaim { hash: hash.clone(), token }))
    }

    async fn blob_claim_left(&self, claim: &BlobClaim) -> StoreResult<Option<Duration>> {
        let left: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT expires_ms - ",
            now_ms!(),
            " FROM blob_claims WHERE sha256 = $1 AND token = $2"
        ))
        .bind(claim.hash.as_str())
        .bind(&claim.token)
        .fetch_optional(&self.pool)
        .await?;
        Ok(left.filter(|ms| *ms > 0).map(|ms| Duration::from_millis(from_db(ms))))
    }

    async fn release_blob_claim(&self, claim: &BlobClaim) -> StoreResult<()> {
        sqlx::query("DELETE FROM blob_claims WHERE sha256 = $1 AND token = $2")
            .bind(claim.hash.as_str())
            .bind(&claim.token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
