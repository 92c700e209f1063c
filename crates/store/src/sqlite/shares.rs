//! SQLite implementation of [`ShareStore`].

use concord_core::token::TokenHash;
use sqlx::Row;

use super::{SqliteStore, write_error};
use crate::rows::share_from;
use crate::{NewShare, ShareRecord, ShareStore, StoreResult};

#[async_trait::async_trait]
impl ShareStore for SqliteStore {
    async fn create_share(&self, share: NewShare<'_>) -> StoreResult<Option<ShareRecord>> {
        // The ownership check and the insert are one statement, so a workspace deleted meanwhile
        // cannot get a share.
        let row = sqlx::query(
            "INSERT INTO shares (id, token_hash, user_id, workspace_id, doc_name, access, created_at, expires_at)
             SELECT ?1, ?2, ?3, id, ?5, ?6, ?7, ?8 FROM workspaces WHERE id = ?4 AND user_id = ?3
             RETURNING id, user_id, workspace_id, doc_name, access, created_at, expires_at, revoked_at",
        )
        .bind(&share.token.id)
        .bind(share.token.token.hash.as_bytes().as_slice())
        .bind(share.user_id)
        .bind(share.workspace_id)
        .bind(share.doc_name)
        .bind(share.access.as_str())
        .bind(share.now)
        .bind(share.expires_at)
        .fetch_optional(&self.writer)
        .await
        .map_err(write_error)?;
        row.as_ref().map(share_from).transpose()
    }

    async fn shares_of(&self, user_id: &str) -> StoreResult<Vec<ShareRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, workspace_id, doc_name, access, created_at, expires_at, revoked_at
             FROM shares WHERE user_id = ?1 AND revoked_at IS NULL ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(share_from).collect()
    }

    async fn revoke_share(&self, user_id: &str, share_id: &str, now: i64) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE shares SET revoked_at = ?3 WHERE id = ?1 AND user_id = ?2 AND revoked_at IS NULL")
                .bind(share_id)
                .bind(user_id)
                .bind(now)
                .execute(&self.writer)
                .await
                .map_err(write_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn share_by_token(&self, token: &TokenHash, now: i64) -> StoreResult<Option<ShareRecord>> {
        let row = sqlx::query(
            "SELECT s.id, s.user_id, s.workspace_id, s.doc_name, s.access, s.created_at, s.expires_at, s.revoked_at
             FROM shares s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ?1 AND s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > ?2)
               AND u.blocked = 0",
        )
        .bind(token.as_bytes().as_slice())
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(share_from).transpose()
    }

    async fn live_share_tokens(&self, hashes: &[TokenHash], now: i64) -> StoreResult<Vec<TokenHash>> {
        let rows = sqlx::query(
            "SELECT s.token_hash FROM shares s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash IN (SELECT unhex(value) FROM json_each(?1))
               AND s.revoked_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > ?2) AND u.blocked = 0",
        )
        .bind(super::hash_list(hashes))
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| <[u8; 32]>::try_from(row.get::<Vec<u8>, _>("token_hash")).ok())
            .map(TokenHash::from_bytes)
            .collect())
    }
}
