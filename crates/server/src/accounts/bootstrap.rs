//! The `--admin-user` account: created or updated at start with its password, confirmed and admin.

use concord_core::password::{self, HashMemory, Password};
use concord_store::{Store, StoreError};

use super::DEFAULT_WORKSPACE;
use crate::config::{AdminBootstrap, AdminPassword};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read the admin password: {0}")]
    Read(std::io::Error),
    #[error("admin password: {0}")]
    Policy(#[from] concord_core::password::PasswordError),
    #[error("cannot store the admin user: {0}")]
    Store(#[from] StoreError),
    #[error("hashing the admin password failed: {0}")]
    Hash(#[from] tokio::task::JoinError),
}

/// Creates or updates the `--admin-user` account with its password, confirmed and admin.
pub async fn bootstrap_admin(store: &dyn Store, admin: &AdminBootstrap, now: i64) -> Result<(), BootstrapError> {
    let raw = match &admin.password {
        AdminPassword::Given(secret) => secret.expose().to_owned(),
        AdminPassword::Stdin => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(BootstrapError::Read)?;
            first_line(line)
        }
    };
    let password = Password::parse(raw)?;
    let hash = tokio::task::spawn_blocking(move || password::hash(&password, &mut HashMemory::default())).await?;
    let user = store.upsert_admin(&admin.username, &admin.email, &hash, now).await?;
    store.ensure_workspace(&user.id, DEFAULT_WORKSPACE, now).await?;
    tracing::info!(username = %admin.username, user_id = %user.id, "admin user ready");
    Ok(())
}

/// Stdin holds the password on its first line; the line break is not part of it.
fn first_line(text: String) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line() {
        assert_eq!(first_line("pw with spaces \r\nsecond".to_owned()), "pw with spaces ");
    }
}
