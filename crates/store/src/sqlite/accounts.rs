//! SQLite implementation of [`AccountStore`].

use concord_core::id::{new_device_id, new_user_id, new_workspace_id};
use concord_core::token::TokenHash;
use sqlx::Row;

use super::{SqliteStore, write_error};
use crate::rows::{device_from, token_kind_from, user_from, workspace_from};
use crate::{
    AccountStore, AccountTokenPurpose, Cap, CleanupCounts, DeviceKind, DeviceRecord, NewDevice, NewUser, Principal,
    REVOKED_TOKEN_RETENTION_SECS, StoreResult, TokenKind, UNCONFIRMED_RETENTION_SECS, UserRecord, WorkspaceRecord,
};

// Macros rather than consts so that every query stays a `&'static str` built by `concat!`: sqlx
// refuses SQL assembled at run time, which keeps injection out by construction.
macro_rules! user_columns {
    () => {
        "u.id, u.email, u.username, u.password_hash, u.confirmed, u.blocked, u.is_admin, u.created_at"
    };
}
macro_rules! device_columns {
    () => {
        "d.id AS d_id, d.user_id, d.kind, d.name, d.vault_id, d.client_version, d.created_at AS d_created_at, d.last_seen_at, d.revoked_at"
    };
}
macro_rules! select_user_where {
    ($cond:literal) => {
        concat!("SELECT ", user_columns!(), " FROM users u WHERE ", $cond)
    };
}

#[async_trait::async_trait]
impl AccountStore for SqliteStore {
    async fn upsert_admin(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<UserRecord> {
        let mut tx = self.writer.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET password_hash = ?2, confirmed = 1, is_admin = 1 WHERE username = ?1 COLLATE NOCASE",
        )
        .bind(username)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO users (id, email, username, password_hash, confirmed, is_admin, created_at)
                 VALUES (?1, ?2, ?3, ?4, 1, 1, ?5)",
            )
            .bind(new_user_id())
            .bind(email)
            .bind(username)
            .bind(password_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        let row = sqlx::query(select_user_where!("u.username = ?1 COLLATE NOCASE"))
            .bind(username)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(user_from(&row))
    }

    async fn create_user(&self, user: NewUser, now: i64) -> StoreResult<UserRecord> {
        let id = new_user_id();
        sqlx::query(
            "INSERT INTO users (id, email, username, password_hash, confirmed, created_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
        )
        .bind(&id)
        .bind(&user.email)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(write_error)?;
        Ok(UserRecord {
            id,
            email: user.email,
            username: Some(user.username),
            password_hash: Some(user.password_hash),
            confirmed: false,
            blocked: false,
            is_admin: false,
            created_at: now,
        })
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>> {
        Ok(sqlx::query(select_user_where!("u.id = ?1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(user_from))
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        Ok(sqlx::query(select_user_where!("u.email = ?1"))
            .bind(email)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(user_from))
    }

    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>> {
        // A login with `@` is an email (usernames cannot contain one), so at most one row matches.
        let sql = select_user_where!("u.username = ?1 COLLATE NOCASE OR u.email = lower(?1) LIMIT 1");
        Ok(sqlx::query(sql).bind(login).fetch_optional(&self.reader).await?.as_ref().map(user_from))
    }

    async fn user_for_verified_email(&self, email: &str, now: i64) -> StoreResult<UserRecord> {
        let mut tx = self.writer.begin().await?;
        // An unconfirmed account is someone's unproved claim on this address; its row goes with
        // everything hanging off it (tokens, devices, workspaces: ON DELETE CASCADE), so nothing
        // its registrant set survives into the address owner's account.
        let discarded = sqlx::query("DELETE FROM users WHERE email = ?1 AND confirmed = 0")
            .bind(email)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if discarded > 0 {
            tracing::info!("an unconfirmed registration was discarded by its address owner's sign-in");
        }
        sqlx::query(
            "INSERT INTO users (id, email, confirmed, created_at, last_login_at) VALUES (?1, ?2, 1, ?3, ?3)
             ON CONFLICT (email) DO UPDATE SET last_login_at = ?3",
        )
        .bind(new_user_id())
        .bind(email)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(select_user_where!("u.email = ?1")).bind(email).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(user_from(&row))
    }

    async fn set_user_blocked(&self, user_id: &str, blocked: bool) -> StoreResult<()> {
        sqlx::query("UPDATE users SET blocked = ?2 WHERE id = ?1")
            .bind(user_id)
            .bind(blocked)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn insert_magic_token(
        &self,
        hash: &TokenHash,
        code_hash: &TokenHash,
        email: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO magic_tokens (hash, code_hash, email, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&hash.as_bytes()[..])
        .bind(&code_hash.as_bytes()[..])
        .bind(email)
        .bind(expires_at)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn consume_magic_token(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE magic_tokens SET used_at = ?2 WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING email",
        )
        .bind(&hash.as_bytes()[..])
        .bind(now)
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn consume_sign_in_code(
        &self,
        email: &str,
        code_hash: &TokenHash,
        max_attempts: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await?;
        let accepted = sqlx::query(
            "UPDATE magic_tokens SET used_at = ?3
             WHERE email = ?1 AND code_hash = ?2 AND used_at IS NULL AND expires_at > ?3 AND attempts < ?4",
        )
        .bind(email)
        .bind(&code_hash.as_bytes()[..])
        .bind(now)
        .bind(max_attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !accepted {
            sqlx::query(
                "UPDATE magic_tokens SET attempts = attempts + 1 WHERE email = ?1 AND used_at IS NULL AND expires_at > ?2",
            )
            .bind(email)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn create_device_with_token(
        &self,
        device: NewDevice,
        token: &TokenHash,
        token_kind: TokenKind,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<(DeviceRecord, Vec<String>)> {
        let id = new_device_id();
        let mut tx = self.writer.begin().await?;
        // At the cap, a new sign-in session revokes the user's least recently seen sessions to
        // make room (in this transaction, so the cap trigger below then passes); paired clients
        // are never evicted, so without sessions to spare the insert is refused. A missing cap
        // row evicts nothing.
        let evicted: Vec<String> = if device.kind == DeviceKind::Session {
            sqlx::query_scalar(
                "UPDATE devices SET revoked_at = ?2 WHERE id IN (
                     SELECT id FROM devices WHERE user_id = ?1 AND kind = 'session' AND revoked_at IS NULL
                     ORDER BY last_seen_at, created_at, id
                     LIMIT max(0, (SELECT count(*) FROM devices WHERE user_id = ?1 AND revoked_at IS NULL) + 1
                         - coalesce((SELECT value FROM account_caps WHERE name = 'devices_per_user'), 9223372036854775807)))
                 RETURNING id",
            )
            .bind(&device.user_id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        sqlx::query(
            "INSERT INTO devices (id, user_id, kind, name, vault_id, client_version, user_agent, created_at, last_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )
        .bind(&id)
        .bind(&device.user_id)
        .bind(device.kind.as_str())
        .bind(&device.name)
        .bind(&device.vault_id)
        .bind(&device.client_version)
        .bind(&device.user_agent)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        sqlx::query("INSERT INTO tokens (hash, device_id, kind, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(&token.as_bytes()[..])
            .bind(&id)
            .bind(token_kind.as_str())
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let record = DeviceRecord {
            id,
            user_id: device.user_id,
            kind: device.kind,
            name: device.name,
            vault_id: device.vault_id,
            client_version: device.client_version,
            created_at: now,
            last_seen_at: now,
            revoked_at: None,
        };
        Ok((record, evicted))
    }

    async fn authenticate(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<Principal>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            ", ",
            device_columns!(),
            ", t.kind AS token_kind
             FROM tokens t JOIN devices d ON d.id = t.device_id JOIN users u ON u.id = d.user_id
             WHERE t.hash = ?1 AND (t.expires_at IS NULL OR t.expires_at > ?2)"
        );
        let row = sqlx::query(sql).bind(&hash.as_bytes()[..]).bind(now).fetch_optional(&self.reader).await?;
        Ok(row.map(|row| Principal {
            user: user_from(&row),
            device: device_from(&row),
            token_kind: token_kind_from(&row),
        }))
    }

    async fn touch_device(&self, device_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1")
            .bind(device_id)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn device_by_id(&self, device_id: &str) -> StoreResult<Option<DeviceRecord>> {
        let sql = concat!("SELECT ", device_columns!(), " FROM devices d WHERE d.id = ?1");
        Ok(sqlx::query(sql).bind(device_id).fetch_optional(&self.reader).await?.as_ref().map(device_from))
    }

    async fn devices_of(&self, user_id: &str) -> StoreResult<Vec<DeviceRecord>> {
        let sql = concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d WHERE d.user_id = ?1 ORDER BY d.last_seen_at DESC, d.id"
        );
        Ok(sqlx::query(sql).bind(user_id).fetch_all(&self.reader).await?.iter().map(device_from).collect())
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        Ok(sqlx::query("UPDATE devices SET revoked_at = COALESCE(revoked_at, ?3) WHERE id = ?1 AND user_id = ?2")
            .bind(device_id)
            .bind(user_id)
            .bind(now)
            .execute(&self.writer)
            .await?
            .rows_affected()
            > 0)
    }

    async fn delete_device(&self, user_id: &str, device_id: &str) -> StoreResult<bool> {
        // Tokens go with the device (ON DELETE CASCADE).
        Ok(sqlx::query("DELETE FROM devices WHERE id = ?1 AND user_id = ?2")
            .bind(device_id)
            .bind(user_id)
            .execute(&self.writer)
            .await?
            .rows_affected()
            > 0)
    }

    async fn insert_account_token(
        &self,
        hash: &TokenHash,
        user_id: &str,
        purpose: AccountTokenPurpose,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO account_tokens (hash, user_id, purpose, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&hash.as_bytes()[..])
        .bind(user_id)
        .bind(purpose.as_str())
        .bind(expires_at)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn consume_account_token(
        &self,
        hash: &TokenHash,
        purpose: AccountTokenPurpose,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE account_tokens SET used_at = ?3
             WHERE hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3 RETURNING user_id",
        )
        .bind(&hash.as_bytes()[..])
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.writer)
        .await?)
    }

    async fn confirm_user(&self, user_id: &str) -> StoreResult<bool> {
        let updated =
            sqlx::query("UPDATE users SET confirmed = 1 WHERE id = ?1").bind(user_id).execute(&self.writer).await?;
        Ok(updated.rows_affected() > 0)
    }

    async fn reset_password(&self, user_id: &str, password_hash: &str, now: i64) -> StoreResult<Vec<String>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = ?2, username = CASE WHEN confirmed = 1 THEN username END, confirmed = 1
             WHERE id = ?1",
        )
        .bind(user_id)
        .bind(password_hash)
        .execute(&mut *tx)
        .await?;
        let revoked: Vec<String> = sqlx::query_scalar(
            "UPDATE devices SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL RETURNING id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        // Other outstanding reset and confirm links die too: the person has just chosen their
        // password, and the address is proved.
        sqlx::query("UPDATE account_tokens SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn cleanup_expired(&self, now: i64) -> StoreResult<CleanupCounts> {
        let mut tx = self.writer.begin().await?;
        let tokens = sqlx::query(
            "DELETE FROM tokens WHERE (expires_at IS NOT NULL AND expires_at <= ?1)
             OR device_id IN (SELECT id FROM devices WHERE revoked_at IS NOT NULL AND revoked_at <= ?2)",
        )
        .bind(now)
        .bind(now - REVOKED_TOKEN_RETENTION_SECS)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let magic_tokens = sqlx::query("DELETE FROM magic_tokens WHERE expires_at <= ?1 OR used_at IS NOT NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let account_tokens = sqlx::query("DELETE FROM account_tokens WHERE expires_at <= ?1 OR used_at IS NOT NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // A sign-in device is its session: once its last token is gone nothing can use it again.
        // Paired clients stay, revoked or not, so their owner still sees when they were revoked.
        let devices = sqlx::query(
            "DELETE FROM devices WHERE kind = 'session' AND NOT EXISTS (SELECT 1 FROM tokens t WHERE t.device_id = devices.id)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Their tokens go with them (ON DELETE CASCADE); nothing else can hang off an unconfirmed account.
        let unconfirmed_users = sqlx::query("DELETE FROM users WHERE confirmed = 0 AND created_at <= ?1")
            .bind(now - UNCONFIRMED_RETENTION_SECS)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(CleanupCounts { tokens, magic_tokens, account_tokens, devices, unconfirmed_users })
    }

    async fn set_caps(&self, devices_per_user: u32, workspaces_per_user: u32) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for (cap, value) in [(Cap::DevicesPerUser, devices_per_user), (Cap::WorkspacesPerUser, workspaces_per_user)] {
            sqlx::query(
                "INSERT INTO account_caps (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(cap.as_str())
            .bind(i64::from(value))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_workspace(&self, user_id: &str, name: &str, now: i64) -> StoreResult<WorkspaceRecord> {
        sqlx::query("INSERT INTO workspaces (id, user_id, name, created_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user_id, name) DO NOTHING")
            .bind(new_workspace_id())
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&self.writer)
            .await
            .map_err(write_error)?;
        let row = sqlx::query("SELECT id, user_id, name, created_at FROM workspaces WHERE user_id = ?1 AND name = ?2")
            .bind(user_id)
            .bind(name)
            .fetch_one(&self.writer)
            .await?;
        Ok(workspace_from(&row))
    }

    async fn workspaces_of(&self, user_id: &str) -> StoreResult<Vec<WorkspaceRecord>> {
        Ok(sqlx::query(
            "SELECT id, user_id, name, created_at FROM workspaces WHERE user_id = ?1 ORDER BY created_at, name",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(workspace_from)
        .collect())
    }

    async fn workspace_of(&self, user_id: &str, workspace_id: &str) -> StoreResult<Option<WorkspaceRecord>> {
        Ok(sqlx::query("SELECT id, user_id, name, created_at FROM workspaces WHERE id = ?1 AND user_id = ?2")
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(workspace_from))
    }

    async fn still_valid(&self, hashes: &[TokenHash], now: i64) -> StoreResult<Vec<TokenHash>> {
        // `unhex` turns the list back into the stored blobs, each then found through the key.
        let rows = sqlx::query(
            "SELECT t.hash FROM tokens t JOIN devices d ON d.id = t.device_id JOIN users u ON u.id = d.user_id
             WHERE t.hash IN (SELECT unhex(value) FROM json_each(?1))
               AND (t.expires_at IS NULL OR t.expires_at > ?2) AND d.revoked_at IS NULL AND u.blocked = 0",
        )
        .bind(super::hash_list(hashes))
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| <[u8; 32]>::try_from(row.get::<Vec<u8>, _>("hash")).ok())
            .map(TokenHash::from_bytes)
            .collect())
    }
}
