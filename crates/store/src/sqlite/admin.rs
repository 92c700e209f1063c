//! SQLite implementation of [`AdminStore`], and opening a database for inspection only.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::SqliteStore;
use crate::rows::user_from;
use crate::{AdminStore, StoreResult, UserRecord};

impl SqliteStore {
    /// Opens an existing database without creating, migrating or writing anything, for `doctor`
    /// and for checking a backup's copy. Every write through it fails.
    pub async fn open_read_only(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(SqliteStore { writer: pool.clone(), pushes: super::oplog::group_commit(pool.clone()), reader: pool })
    }

    /// The schema version this build migrates to: a database above it was written by a newer
    /// Concord, and this binary must not run on it.
    pub fn latest_schema_version() -> i64 {
        sqlx::migrate!("./migrations/sqlite").migrations.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// Closes every connection, so the file can be moved or archived with nothing left open.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

#[async_trait::async_trait]
impl AdminStore for SqliteStore {
    async fn all_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(
            "SELECT id, email, username, password_hash, confirmed, blocked, is_admin, created_at
             FROM users ORDER BY created_at, id",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(user_from).collect())
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET password_hash = ?2 WHERE id = ?1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_user_admin(&self, user_id: &str, is_admin: bool) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET is_admin = ?2 WHERE id = ?1")
            .bind(user_id)
            .bind(is_admin)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, user_id: &str) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        // Magic links are keyed by address, not by user, so no foreign key removes them.
        sqlx::query("DELETE FROM magic_tokens WHERE email = (SELECT email FROM users WHERE id = ?1)")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        // Everything else hangs off the user through ON DELETE CASCADE (devices and their tokens,
        // workspaces and their documents, operation-log heads and their ops, blob references).
        let done = sqlx::query("DELETE FROM users WHERE id = ?1").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn copy_database_to(&self, path: &Path) -> StoreResult<()> {
        // VACUUM INTO reads inside one read transaction, so the copy is a consistent snapshot; on a
        // reader connection it never holds the write lock (WAL), so pushes and edits go on.
        let target = path.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO ?1").bind(target).execute(&self.reader).await?;
        Ok(())
    }

    async fn integrity_problems(&self) -> StoreResult<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&self.reader).await?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    async fn referenced_blob_hashes(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT DISTINCT sha256 FROM blob_refs ORDER BY sha256").fetch_all(&self.reader).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountStore, NewUser, Store};

    async fn store_with_user(dir: &Path) -> (SqliteStore, UserRecord) {
        let store = SqliteStore::open(&dir.join("c.db")).await.unwrap();
        let new = NewUser { email: "a@example.com".into(), username: "alice".into(), password_hash: "h1".into() };
        let user = store.create_user(new, 1).await.unwrap();
        (store, user)
    }

    #[tokio::test]
    async fn copy_is_a_whole_database_and_read_only_opening_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, user) = store_with_user(dir.path()).await;
        let copy = dir.path().join("copy.db");
        store.copy_database_to(&copy).await.unwrap();
        assert!(store.copy_database_to(&copy).await.is_err(), "an existing target is never overwritten");

        let opened = SqliteStore::open_read_only(&copy).await.unwrap();
        assert_eq!(opened.integrity_problems().await.unwrap(), Vec::<String>::new());
        assert_eq!(opened.all_users().await.unwrap(), vec![user.clone()]);
        assert_eq!(opened.schema_version().await.unwrap(), SqliteStore::latest_schema_version());
        assert!(opened.set_password(&user.id, "h2").await.is_err(), "read-only");
        opened.close().await;
        assert!(SqliteStore::open_read_only(&dir.path().join("missing.db")).await.is_err(), "never creates");
    }
}
