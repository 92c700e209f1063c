//! The accounts part of the contract: users, devices, bearer tokens, magic links, workspaces.

use concord_core::token::TokenHash;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    /// Lowercased; unique.
    pub email: String,
    /// Set for people who registered with a password (Verstak) or the bootstrap admin; unique.
    pub username: Option<String>,
    /// PHC string (Argon2id). `None` for people who only ever used magic links.
    pub password_hash: Option<String>,
    pub confirmed: bool,
    pub blocked: bool,
    pub is_admin: bool,
    pub created_at: i64,
}

/// What a device is: a sign-in from a browser or app (Diaryx session, web session), or a client
/// paired with a password (Verstak desktop), which is bound to a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Session,
    Client,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Session => "session",
            DeviceKind::Client => "client",
        }
    }

    pub(crate) fn parse(s: &str) -> DeviceKind {
        if s == "client" { DeviceKind::Client } else { DeviceKind::Session }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: String,
    pub user_id: String,
    pub kind: DeviceKind,
    pub name: Option<String>,
    /// The Verstak vault this client syncs; with the user id it scopes the operation log.
    pub vault_id: Option<String>,
    pub client_version: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub user_id: String,
    pub kind: DeviceKind,
    pub name: Option<String>,
    pub vault_id: Option<String>,
    pub client_version: Option<String>,
    pub user_agent: Option<String>,
}

/// Which surface minted a token; it decides the token's spelling and lifetime, never its power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Diaryx session token (expires after `SESSION_EXPIRY_DAYS`).
    Session,
    /// Verstak device token (never expires; revoked with its device).
    Device,
    /// Web session cookie and the Verstak user API token.
    Web,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Device => "device",
            TokenKind::Web => "web",
        }
    }

    pub(crate) fn parse(s: &str) -> TokenKind {
        match s {
            "device" => TokenKind::Device,
            "web" => TokenKind::Web,
            _ => TokenKind::Session,
        }
    }
}

/// Who a bearer token speaks for, resolved in one indexed lookup.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRecord,
    pub device: DeviceRecord,
    pub token_kind: TokenKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
}

/// A new password account (Verstak registration), unconfirmed until its mail link is opened.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub username: String,
    pub password_hash: String,
}

/// What a single-use account token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTokenPurpose {
    /// The owner reads mail at the account's address (registration).
    Confirm,
    /// The owner may choose a new password.
    Reset,
}

impl AccountTokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountTokenPurpose::Confirm => "confirm",
            AccountTokenPurpose::Reset => "reset",
        }
    }
}

/// How long the tokens of a revoked device are kept so its clients learn why they were refused.
pub const REVOKED_TOKEN_RETENTION_SECS: i64 = 30 * 86_400;

/// How many rows the periodic cleanup removed, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    pub tokens: u64,
    pub magic_tokens: u64,
    pub account_tokens: u64,
    pub devices: u64,
}

#[async_trait::async_trait]
pub trait AccountStore {
    /// Creates the user, or updates password, admin flag and confirmation of the user with this
    /// username. Used by the admin bootstrap at start.
    async fn upsert_admin(&self, username: &str, email: &str, password_hash: &str, now: i64)
    -> StoreResult<UserRecord>;

    /// Creates an unconfirmed password user; [`crate::StoreError::Conflict`] if the username or
    /// email is taken.
    async fn create_user(&self, user: NewUser, now: i64) -> StoreResult<UserRecord>;

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;

    /// Matches the username exactly or the email lowercased, as the Verstak client's login does.
    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>>;

    /// Returns the user with this email, creating a confirmed one if none exists (magic-link sign
    /// in proves the address).
    async fn user_for_verified_email(&self, email: &str, now: i64) -> StoreResult<UserRecord>;

    /// Blocks or unblocks a user; their tokens answer 403 from the next request on.
    async fn set_user_blocked(&self, user_id: &str, blocked: bool) -> StoreResult<()>;

    /// Stores a single-use magic link token and its sign-in code (both as hashes) for `email`.
    async fn insert_magic_token(
        &self,
        hash: &TokenHash,
        code_hash: &TokenHash,
        email: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;

    /// Marks the token used and returns its email, if it exists, is unused and is unexpired. The
    /// check and the marking happen in one statement, so a link works exactly once.
    async fn consume_magic_token(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<String>>;

    /// Accepts a sign-in code for `email`: marks the matching live link used and returns true, or
    /// counts a wrong attempt against every live link of the address and returns false. Links with
    /// `max_attempts` wrong guesses no longer accept any code.
    async fn consume_sign_in_code(
        &self,
        email: &str,
        code_hash: &TokenHash,
        max_attempts: i64,
        now: i64,
    ) -> StoreResult<bool>;

    /// Creates a device and its bearer token in one transaction.
    async fn create_device_with_token(
        &self,
        device: NewDevice,
        token: &TokenHash,
        token_kind: TokenKind,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<DeviceRecord>;

    /// Resolves a token hash to its user and device. Expired tokens resolve to `None`; revoked
    /// devices and blocked users are returned so the caller can answer precisely.
    async fn authenticate(&self, hash: &TokenHash, now: i64) -> StoreResult<Option<Principal>>;

    /// Records activity; callers throttle it so reads do not turn into writes on every request.
    async fn touch_device(&self, device_id: &str, now: i64) -> StoreResult<()>;

    async fn device_by_id(&self, device_id: &str) -> StoreResult<Option<DeviceRecord>>;

    /// Devices of a user, most recently seen first, revoked ones included.
    async fn devices_of(&self, user_id: &str) -> StoreResult<Vec<DeviceRecord>>;

    /// Marks a device revoked, if it belongs to `user_id`; returns whether it does. Its tokens stay
    /// (resolving to a revoked device) so clients are told `device revoked` rather than
    /// `invalid API key`, until the cleanup job removes them after [`REVOKED_TOKEN_RETENTION_SECS`].
    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool>;

    /// Deletes a device of `user_id` with its tokens (logout); returns whether it existed.
    async fn delete_device(&self, user_id: &str, device_id: &str) -> StoreResult<bool>;

    /// Stores a single-use confirm or reset token (as a hash).
    async fn insert_account_token(
        &self,
        hash: &TokenHash,
        user_id: &str,
        purpose: AccountTokenPurpose,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()>;

    /// Marks the token used and returns its user id, if it exists for this purpose, is unused and
    /// is unexpired (one statement, so it works exactly once).
    async fn consume_account_token(
        &self,
        hash: &TokenHash,
        purpose: AccountTokenPurpose,
        now: i64,
    ) -> StoreResult<Option<String>>;

    async fn confirm_user(&self, user_id: &str) -> StoreResult<()>;

    /// Sets a new password and, in the same transaction, confirms the address (the reset mail
    /// proved it) and revokes every device of the user, so a stolen session or device token dies
    /// with the old password (their requests get 401 at once). Returns the ids of the devices revoked.
    async fn reset_password(&self, user_id: &str, password_hash: &str, now: i64) -> StoreResult<Vec<String>>;

    /// Deletes expired bearer tokens, tokens of devices revoked more than
    /// [`REVOKED_TOKEN_RETENTION_SECS`] ago, used or expired magic and account tokens, and sign-in
    /// devices left without any token (their sessions ended).
    async fn cleanup_expired(&self, now: i64) -> StoreResult<CleanupCounts>;

    /// The user's workspace with this name, created if missing.
    async fn ensure_workspace(&self, user_id: &str, name: &str, now: i64) -> StoreResult<WorkspaceRecord>;

    async fn workspaces_of(&self, user_id: &str) -> StoreResult<Vec<WorkspaceRecord>>;

    /// The workspace with this id if it belongs to `user_id`; another user's id reads as absent.
    async fn workspace_of(&self, user_id: &str, workspace_id: &str) -> StoreResult<Option<WorkspaceRecord>>;

    /// Which of `hashes` still authenticate: unexpired, of a device not revoked, of a user not
    /// blocked (the rule `Auth` applies to each request). One query however many tokens, so the
    /// server re-checks all its long-lived connections together.
    async fn still_valid(&self, hashes: &[TokenHash], now: i64) -> StoreResult<Vec<TokenHash>>;
}
