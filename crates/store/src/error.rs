//! The one error type every store method returns.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (duplicate username, email, op id …). Carries the constraint
    /// text so callers can map it to a precise client error.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The disk (or the database's size limit) is full: nothing of the write was stored. Callers
    /// tell the client to retry later; the store stays usable and recovers once space is freed.
    #[error("storage full: {0}")]
    Full(sqlx::Error),
    /// A per-user cap refused the insert (see `migrations/sqlite/0031_accounts_per_user_caps.sql`).
    #[error("cap reached: {}", .0.as_str())]
    CapReached(crate::Cap),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// SQLite's primary result code for a full disk or database; extended codes keep it in the low byte.
const SQLITE_FULL: i64 = 13;

impl From<sqlx::Error> for StoreError {
    /// Every sqlx error enters through here, so a full disk is named as such whichever query hit it.
    fn from(err: sqlx::Error) -> StoreError {
        let full = match &err {
            sqlx::Error::Database(db) => {
                db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == SQLITE_FULL)
            }
            // Opening a connection on a full disk fails before SQLite has a result code.
            sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        };
        if full { StoreError::Full(err) } else { StoreError::Database(err) }
    }
}

impl StoreError {
    /// Turns a unique-constraint failure into [`StoreError::Conflict`] and a cap trigger's refusal
    /// into [`StoreError::CapReached`], leaving other errors as is.
    pub(crate) fn from_write(err: sqlx::Error) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) => match crate::Cap::from_trigger_message(db.message()) {
                Some(cap) => StoreError::CapReached(cap),
                None => StoreError::from(err),
            },
            _ => StoreError::from(err),
        }
    }
}
