//! PostgreSQL implementation of [`AdminStore`]. A database copy and an integrity check are
//! PostgreSQL's own tools (`pg_dump`, `amcheck`), so those two refuse with
//! [`StoreError::Unsupported`] rather than pretend.

use std::path::Path;

use super::PgStore;
use crate::rows::user_from;
use crate::{AdminStore, StoreError, StoreResult, UserRecord};

#[async_trait::async_trait]
impl AdminStore for PgStore {
    async fn all_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(
            "SELECT id, email, username, password_hash, confirmed, blocked, is_admin, created_at
             FROM users ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_from).collect())
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_user_admin(&self, user_id: &str, is_admin: bool) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET is_admin = $2 WHERE id = $1")
            .bind(user_id)
            .bind(is_admin)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        // Magic links are keyed by address, not by user, so no foreign key removes them.
        sqlx::query("DELETE FROM magic_tokens WHERE email = (SELECT email FROM users WHERE id = $1)")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn copy_database_to(&self, _path: &Path) -> StoreResult<()> {
        Err(StoreError::Unsupported("copying the database to a file is SQLite-only; on PostgreSQL use pg_dump"))
    }

    async fn integrity_problems(&self) -> StoreResult<Vec<String>> {
        Err(StoreError::Unsupported("the integrity check is SQLite-only; on PostgreSQL use amcheck (pg_amcheck)"))
    }

    async fn referenced_blob_hashes(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT sha256 FROM blob_refs ORDER BY sha256").fetch_all(&self.pool).await?)
    }
}
