//! The one error type every store method returns, the same for every backend.
//!
//! No driver type crosses it: callers match on what happened (a uniqueness rule, a cap, a full
//! disk), and the driver's own error is kept only as an opaque [`BackendError`] for the log.

use crate::Cap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated; which one is typed so callers can answer precisely.
    #[error("conflict: {} already taken", .0.as_str())]
    Conflict(ConflictKind),
    /// The disk (or the database's size limit) is full: nothing of the write was stored. Callers
    /// tell the client to retry later; the store stays usable and recovers once space is freed.
    #[error("storage full: {0}")]
    Full(BackendError),
    /// A per-user cap refused the insert (see `migrations/sqlite/0031_accounts_per_user_caps.sql`).
    #[error("cap reached: {}", .0.as_str())]
    CapReached(Cap),
    /// A write named something that no longer exists (a document whose workspace was deleted
    /// while it was open); nothing was stored.
    #[error("{0}")]
    Missing(&'static str),
    /// The operation exists only on another backend (an SQLite file copy on PostgreSQL, say).
    #[error("{0}")]
    Unsupported(&'static str),
    /// Anything else the database or its driver reported (connection lost, migration failed, …).
    #[error("database error: {0}")]
    Backend(BackendError),
}

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Another account has this username (in any ASCII case).
    Username,
    /// Another account has this address.
    Email,
    /// The user already has a workspace of this name.
    WorkspaceName,
    /// A rule no caller expects to meet (a bug, or a race the store could not absorb).
    Other,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictKind::Username => "username",
            ConflictKind::Email => "email",
            ConflictKind::WorkspaceName => "workspace name",
            ConflictKind::Other => "unique value",
        }
    }
}

/// The driver's error, opaque: shown in logs, never matched on.
#[derive(Debug)]
pub struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// SQLite's primary result code for a full disk or database; extended codes keep it in the low byte.
const SQLITE_FULL: i64 = 13;
/// PostgreSQL's SQLSTATE `disk_full`.
const PG_DISK_FULL: &str = "53100";

impl From<sqlx::Error> for StoreError {
    /// Every sqlx error enters through here, so a full disk is named as such whichever query and
    /// whichever backend hit it.
    fn from(err: sqlx::Error) -> StoreError {
        let full = match &err {
            sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                Some(_) => db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == SQLITE_FULL),
                None => db.code().as_deref() == Some(PG_DISK_FULL),
            },
            // Opening a connection on a full disk fails before SQLite has a result code.
            sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        };
        let backend = BackendError(Box::new(err));
        if full { StoreError::Full(backend) } else { StoreError::Backend(backend) }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Backend(BackendError(Box::new(err)))
    }
}

impl StoreError {
    /// Turns a unique-constraint failure into [`StoreError::Conflict`] (naming the rule through
    /// the backend's `conflict_kind`, which reads its constraint names) and a cap trigger's
    /// refusal into [`StoreError::CapReached`], leaving other errors as [`StoreError::from`] does.
    pub(crate) fn from_write(
        err: sqlx::Error,
        conflict_kind: fn(&dyn sqlx::error::DatabaseError) -> ConflictKind,
    ) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(conflict_kind(db.as_ref())),
            sqlx::Error::Database(db) => match Cap::from_trigger_message(db.message()) {
                Some(cap) => StoreError::CapReached(cap),
                None => StoreError::from(err),
            },
            _ => StoreError::from(err),
        }
    }
}
