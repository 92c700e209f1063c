//! The PostgreSQL backend: the same traits and contract as SQLite, for deployments of several
//! Concord nodes on one database.
//!
//! A pool of connections serves every request; PostgreSQL orders concurrent writers itself, so
//! there is no single-writer pool. Where SQLite relies on its one writer to serialise a rule (a
//! cap, a quota, a scope's or a document's numbering), this backend takes a row lock held until
//! commit on the row that owns the rule: the user's row for caps and quotas, the head row for
//! sequences (the arguments are next to the code: `src/sqlite/oplog.rs`, `src/sqlite/docs.rs`,
//! `migrations/postgres/0001_schema.sql`). Writes run at READ COMMITTED, so the statement after
//! a lock wait sees what the previous holder committed; snapshot reads (pull, load) run as one
//! REPEATABLE READ READ ONLY transaction.
//!
//! Durability: every connection sets `synchronous_commit = on`, whatever the server's default, so
//! a commit has reached the WAL on disk (and any synchronous standby) before the store returns and
//! the caller acknowledges. Operator chores that SQLite needs from Concord (WAL checkpoints, file
//! copies, integrity checks) are PostgreSQL's own (`checkpointer`, `pg_dump`, `amcheck`); see
//! ARCHITECTURE.md.

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

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{ConflictKind, Store, StoreError, StoreResult};

/// Connections per node. A pushing, appending or uploading request holds one for one short
/// transaction, so 16 serve far more requests per second than one node receives, while 16 per
/// node keeps several nodes well inside PostgreSQL's default `max_connections` of 100.
const CONNECTIONS: u32 = 16;

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations. sqlx's migrator takes an
    /// advisory lock, so nodes starting together migrate once.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let options = PgConnectOptions::from_str(url)?.options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A READ COMMITTED write transaction.
    async fn write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// One snapshot for several statements that change nothing.
    async fn snapshot(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?)
    }
}

/// A write's error, with this schema's unique constraints named as the rule they enforce.
pub(super) fn write_error(err: sqlx::Error) -> StoreError {
    StoreError::from_write(err, |db| match db.constraint() {
        Some("users_email_key") => ConflictKind::Email,
        Some("users_username_lower") => ConflictKind::Username,
        Some("workspaces_user_id_name_key") => ConflictKind::WorkspaceName,
        _ => ConflictKind::Other,
    })
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn schema_version(&self) -> StoreResult<i64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await?;
        Ok(version.unwrap_or(0))
    }

    async fn probe_write(&self, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO health_probe (id, probed_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoint_wal(&self) -> StoreResult<()> {
        // PostgreSQL's checkpointer bounds its WAL by itself (`max_wal_size`), and `CHECKPOINT`
        // needs a privileged role, so the maintenance job has nothing to do here.
        Ok(())
    }
}
