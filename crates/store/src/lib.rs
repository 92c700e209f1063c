//! Concord's storage contract and its backends.
//!
//! The contract is the [`Store`] trait, split into one sub-trait per area ([`AccountStore`], …) so
//! that each area reads on one screen. Callers hold an `Arc<dyn Store>` and never learn which backend
//! is behind it. Today that is [`sqlite::SqliteStore`]; a PostgreSQL backend implements the same
//! traits and runs the same contract tests.
//!
//! Architecture invariant: this crate knows SQL and files, never HTTP or JSON. Times are unix
//! seconds passed in by the caller, so every rule about expiry is decided by the caller's clock;
//! the one exception, blob claims, is timed by the database's clock (see [`BlobStore`]).

mod accounts;
mod admin;
mod blobs;
mod docs;
mod error;
mod history;
mod oplog;
pub mod postgres;
mod rows;
mod shares;
pub mod sqlite;
mod usage;
mod webhooks;

pub use accounts::AdminStore;
pub use accounts::{
    AccountStore, AccountTokenPurpose, Cap, CleanupCounts, DeviceKind, DeviceRecord, NewDevice, NewUser, Principal,
    REVOKED_TOKEN_RETENTION_SECS, TokenKind, UNCONFIRMED_RETENTION_SECS, UserRecord, WorkspaceRecord,
};
pub use admin::{
    AuditEntry, AuditQuery, ConsoleStore, DeviceListing, DeviceQuery, DeviceState, NewAuditEntry, Page, Paging, Stats,
    UserFilter, UserQuery, UserSort, UserSummary, VaultStats, WorkspaceStats,
};
pub use blobs::{AddBlobRef, BlobClaim, BlobStore};
pub use docs::{DocId, DocSize, DocStore, DocSummary, NewDocUpdate, StoredDoc};
pub use error::{BackendError, ConflictKind, StoreError, StoreResult};
pub use history::{HistoryStore, VersionRecord};
pub use oplog::{Conflict, EncodeResponse, OplogStore, PullSnapshot, PushOutcome, PushResult, Scope, StoredOp};
pub use shares::{NewShare, ShareRecord, ShareStore};
pub use usage::{DocumentUsage, UsageStore, VaultUsage, WorkspaceUsage};
pub use webhooks::{
    Attempt, DeliveryRecord, DueDelivery, HookOwner, NewEvent, NewWebhook, Reach, WebhookRecord, WebhookStore,
};

/// Everything Concord persists. Backends implement every sub-trait.
#[async_trait::async_trait]
pub trait Store:
    AccountStore
    + AdminStore
    + OplogStore
    + BlobStore
    + DocStore
    + ShareStore
    + UsageStore
    + ConsoleStore
    + HistoryStore
    // Webhooks.
    + WebhookStore
    + Send
    + Sync
    + 'static
{
    /// A round trip to the database, for health checks.
    async fn ping(&self) -> StoreResult<()>;

    /// The highest applied migration; recorded so operators and health checks can see it.
    async fn schema_version(&self) -> StoreResult<i64>;

    /// Commits a tiny write through the same path as every other write, for health checks: it
    /// fails while the disk is full and succeeds again once writes would.
    async fn probe_write(&self, now: i64) -> StoreResult<()>;

    /// Copies the write-ahead log into the database and truncates it, so the log does not grow
    /// without bound between SQLite's own partial checkpoints (SQLite `wal_checkpoint(TRUNCATE)`).
    async fn checkpoint_wal(&self) -> StoreResult<()>;
}
