//! The one error type every store method returns.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (duplicate username, email, op id …). Carries the constraint
    /// text so callers can map it to a precise client error.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A per-user cap refused the insert (see `migrations/sqlite/0004_accounts_per_user_caps.sql`).
    #[error("cap reached: {}", .0.as_str())]
    CapReached(crate::Cap),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// Turns a unique-constraint failure into [`StoreError::Conflict`] and a cap trigger's refusal
    /// into [`StoreError::CapReached`], leaving other errors as is.
    pub(crate) fn from_write(err: sqlx::Error) -> StoreError {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) => match crate::Cap::from_trigger_message(db.message()) {
                Some(cap) => StoreError::CapReached(cap),
                None => StoreError::Database(err),
            },
            _ => StoreError::Database(err),
        }
    }
}
