//! The SQLite backend: connection setup, migrations, and the read/write pool split.
//!
//! SQLite allows one writer at a time. Rather than let several pooled connections race for the
//! write lock (and fail with `SQLITE_BUSY` when a deferred transaction tries to upgrade), every write
//! goes through a pool of exactly one connection, so writes queue in memory and commit in order.
//! Reads use a separate pool of read-only connections and, thanks to WAL, never wait for writes.
//!
//! Durability: `synchronous=FULL` in WAL mode fsyncs the log at every commit, so a write is on disk
//! before the caller is told it succeeded. Callers that write often (Yjs updates) batch many changes
//! into one transaction to share that fsync.

mod accounts;
mod admin;
mod blobs;
mod docs;
mod oplog;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{Store, StoreResult};

/// Readers beyond this gain nothing on the small machines Concord targets.
const READERS: u32 = 4;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: the single writer (see the module docs).
    writer: SqlitePool,
    /// Read-only connections for queries that change nothing.
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn schema_version(&self) -> StoreResult<i64> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&self.reader)
            .await?;
        Ok(version.unwrap_or(0))
    }
}
