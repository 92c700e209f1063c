//! SQLite implementation of [`BlobStore`].
//!
//! # Why a claimed blob is never referenced, on any number of nodes
//!
//! The collector may delete a blob's bytes only while nobody can reference it. It first claims the
//! blob: one write transaction checks that no `blob_refs` row names the hash and that no live
//! `blob_claims` row does, and inserts (or takes over an expired) claim. `add_blob_ref` checks for a
//! live claim inside its own write transaction and refuses while there is one. The two transactions
//! cannot interleave (here every write goes through the single writer connection, and SQLite admits
//! one write transaction at a time anyway), so one of them commits first and the other sees it:
//! either the reference exists and the claim is refused, or the claim exists and the reference is
//! refused until the claim is released or expires. "Live" is judged by the database's clock in
//! both transactions, so the nodes' clocks never have to agree.
//!
//! The same carries to PostgreSQL with several nodes: its transactions run at READ COMMITTED and
//! would not see each other's uncommitted rows, so both first take a transaction-scoped advisory
//! lock on the hash, and the statement after the lock wait sees what the holder committed.
//!
//! What the collector does with its claim (delete the bytes while enough of it is left, then
//! release it) and why the expiry is safe is argued next to it, in the server's `blobstore`.

use std::time::Duration;

use concord_core::blob::{BlobHash, BlobQuota};

use super::SqliteStore;
use crate::{AddBlobRef, BlobClaim, BlobStore, Scope, StoreResult};

/// The database's clock in unix milliseconds: claims are timed by it alone.
macro_rules! now_ms {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
    };
}

/// Sizes are `u64` in Rust and `INTEGER` (i64) in SQLite; blob limits keep them far below i64::MAX.
fn to_db(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

fn from_db(size: i64) -> u64 {
    u64::try_from(size).unwrap_or(0)
}

/// The size of a blob referenced by a scope; shared with the push's reference check.
pub(super) const BLOB_SIZE: &str = "SELECT size FROM blob_refs WHERE user_id = ?1 AND vault_id = ?2 AND sha256 = ?3";

#[async_trait::async_trait]
impl BlobStore for SqliteStore {
    async fn blob_size(&self, scope: &Scope, hash: &BlobHash) -> StoreResult<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(BLOB_SIZE)
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(hash.as_str())
            .fetch_optional(&self.reader)
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
        let mut tx = self.writer.begin().await?;
        let claimed: Option<i64> =
            sqlx::query_scalar(concat!("SELECT 1 FROM blob_claims WHERE sha256 = ?1 AND expires_ms > ", now_ms!()))
                .bind(hash.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if claimed.is_some() {
            return Ok(AddBlobRef::BeingCollected);
        }
        let known: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM blob_refs WHERE user_id = ?1 AND vault_id = ?2 AND sha256 = ?3")
                .bind(&scope.user_id)
                .bind(&scope.vault_id)
                .bind(hash.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_some() {
            return Ok(AddBlobRef::AlreadyReferenced);
        }
        let (vault_used, user_used): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN vault_id = ?2 THEN size ELSE 0 END), 0), COALESCE(SUM(size), 0)
             FROM blob_refs WHERE user_id = ?1",
        )
        .bind(&scope.user_id)
        .bind(&scope.vault_id)
        .fetch_one(&mut *tx)
        .await?;
        if !quota.admits(from_db(vault_used), from_db(user_used), size) {
            return Ok(AddBlobRef::QuotaExceeded);
        }
        sqlx::query("INSERT INTO blob_refs (user_id, vault_id, sha256, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(&scope.user_id)
            .bind(&scope.vault_id)
            .bind(hash.as_str())
            .bind(to_db(size))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // A claim left here has expired (its collector died holding it): no longer needed.
        sqlx::query("DELETE FROM blob_claims WHERE sha256 = ?1").bind(hash.as_str()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(AddBlobRef::Added)
    }

    async fn blob_referenced(&self, hash: &BlobHash) -> StoreResult<bool> {
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blob_refs WHERE sha256 = ?1 LIMIT 1")
            .bind(hash.as_str())
            .fetch_optional(&self.reader)
            .await?;
        Ok(any.is_some())
    }

    async fn claim_unreferenced_blob(&self, hash: &BlobHash, ttl: Duration) -> StoreResult<Option<BlobClaim>> {
        let mut tx = self.writer.begin().await?;
        let referenced: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blob_refs WHERE sha256 = ?1 LIMIT 1")
            .bind(hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if referenced.is_some() {
            return Ok(None);
        }
        // Inserted, or taken over from a claim that has expired; a live claim is left alone.
        let token: Option<String> = sqlx::query_scalar(concat!(
            "INSERT INTO blob_claims (sha256, token, expires_ms) VALUES (?1, lower(hex(randomblob(16))), ",
            now_ms!(),
            " + ?2)
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
            " FROM blob_claims WHERE sha256 = ?1 AND token = ?2"
        ))
        .bind(claim.hash.as_str())
        .bind(&claim.token)
        .fetch_optional(&self.reader)
        .await?;
        Ok(left.filter(|ms| *ms > 0).map(|ms| Duration::from_millis(from_db(ms))))
    }

    async fn release_blob_claim(&self, claim: &BlobClaim) -> StoreResult<()> {
        sqlx::query("DELETE FROM blob_claims WHERE sha256 = ?1 AND token = ?2")
            .bind(claim.hash.as_str())
            .bind(&claim.token)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
