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
//!
//! A failed write must leave the writer usable. When a statement fails with `SQLITE_FULL` (or an
//! I/O error), SQLite may roll the whole transaction back by itself; sqlx's own `ROLLBACK` then
//! fails ("no transaction is active") and sqlx keeps counting the connection as one transaction
//! deep. Its next `begin()` would issue a `SAVEPOINT` instead of `BEGIN`, and after one more
//! failure a `ROLLBACK TO` leaves a real transaction open that nothing ever commits: every later
//! write, acknowledged as committed, would live only in that transaction and vanish at restart.
//! So the writer connection is checked each time it returns to its pool ([`writer_is_clean`]) and
//! closed if it is not idle outside any transaction; the pool then opens a fresh one.

mod accounts;
mod admin;
mod blobs;
mod console;
mod docs;
mod history;
mod oplog;
mod shares;
mod usage;
mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use concord_core::oplog::MAX_PULL_PAGE;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{ConflictKind, Store, StoreError, StoreResult};

/// Readers beyond this gain nothing on the small machines Concord targets.
const READERS: u32 = 4;

/// Rows a reader's SQLite thread may hand over before the async side takes them. sqlx's default
/// (50) stopped a pull's page (up to `MAX_PULL_PAGE + 1` rows) twice to wait for the consumer, each
/// stop a futex wait, a wake and two context switches; with room for the whole page the statement
/// runs through in one go. Every caller of a large read collects all its rows anyway (`fetch_all`),
/// so this holds no more in memory than the caller already does.
const READER_ROW_BUFFER: usize = MAX_PULL_PAGE as usize + 1;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: the single writer (see the module docs).
    writer: SqlitePool,
    /// Read-only connections for queries that change nothing.
    reader: SqlitePool,
    /// The op-log pushes' queue to their group-commit task (see `oplog`).
    pushes: tokio::sync::mpsc::Sender<oplog::PendingPush>,
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
            // Statement journals and sorts in memory, not in files under /var/tmp: with files, a
            // busy Yjs server created, unlinked and closed one about every 30 ms (strace, Y3).
            // What goes there is a statement's or a query's working set, bounded by the pages
            // of rows every caller reads.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_release(|conn, _| Box::pin(writer_is_clean(conn)))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true).row_buffer_size(READER_ROW_BUFFER))
            .await?;
        let pushes = oplog::group_commit(writer.clone());
        Ok(SqliteStore { writer, reader, pushes })
    }
}

/// A write's error, with this backend's unique-constraint messages (`UNIQUE constraint failed:
/// users.email`) named as the rule they enforce.
pub(super) fn write_error(err: sqlx::Error) -> StoreError {
    StoreError::from_write(err, |db| {
        let failed = db.message().strip_prefix("UNIQUE constraint failed: ").unwrap_or_default();
        match failed {
            "users.email" => ConflictKind::Email,
            "users.username" => ConflictKind::Username,
            "workspaces.user_id, workspaces.name" => ConflictKind::WorkspaceName,
            _ => ConflictKind::Other,
        }
    })
}

/// Whether the writer connection may serve the next write: neither sqlx nor SQLite thinks it is
/// inside a transaction. `BEGIN` fails inside a transaction and, deferred, touches no file
/// outside one, so `BEGIN; ROLLBACK` asks SQLite without `unsafe` and without I/O. Returning
/// false closes the connection, which rolls back whatever it still held (never acknowledged).
async fn writer_is_clean(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    let sqlx_in_transaction = conn.is_in_transaction();
    let clean = !sqlx_in_transaction && sqlx::raw_sql("BEGIN; ROLLBACK").execute(&mut *conn).await.is_ok();
    if !clean {
        tracing::warn!(
            sqlx_in_transaction,
            "the writer connection was left inside a transaction by a failed write; replacing it"
        );
    }
    Ok(clean)
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

    async fn probe_write(&self, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO health_probe (id, probed_at) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn checkpoint_wal(&self) -> StoreResult<()> {
        // Through the single writer, so no write of ours is in progress; readers may still hold
        // old snapshots, in which case SQLite checkpoints what it can and reports busy.
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.writer).await?;
        if busy != 0 {
            tracing::debug!("WAL checkpoint incomplete: a reader still holds an old snapshot");
        }
        Ok(())
    }
}

/// Token hashes as one JSON array of hex strings, for `json_each`: sqlx 0.9 takes only static SQL,
/// so a list cannot become `IN (?, ?, …)`.
fn hash_list(hashes: &[concord_core::token::TokenHash]) -> String {
    let quoted: Vec<String> = hashes
        .iter()
        .map(|h| format!("\"{}\"", h.as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()))
        .collect();
    format!("[{}]", quoted.join(","))
}
