//! The accounts part of the contract: users, devices, bearer tokens, magic links, workspaces.

use concord_core::token::TokenHash;

use crate::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    /// Lowercased; unique.
    pub email: String,
    /// Set for people who registered with a password (Verstak) or the bootstrap admin; unique
    /// regardless of ASCII case (`Bob` and `bob` are one name).
    pub username: Option<String>,
    /// PHC string (Argon2id). `None` for people who only ever used magic links.
    pub password_hash: Option<String>,
    /// Whether the owner of the address has proved it (confirm link, magic link, code or reset).
    /// Until then the username and password are a stranger's claim: they open nothing, and the
    /// address owner's first proof through another route discards them.
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

/// A per-user limit the store enforces in the statement that inserts (see
/// [`AccountStore::set_caps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Live (unrevoked) devices, sign-in sessions included (the oldest of which make room for a
    /// new sign-in).
    DevicesPerUser,
    /// Workspaces besides `default`, which is always allowed.
    WorkspacesPerUser,
}

impl Cap {
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::DevicesPerUser => "devices_per_user",
            Cap::WorkspacesPerUser => "workspaces_per_user",
        }
    }

    /// The cap named in a refusal raised by the cap triggers (`concord cap reached: <name>`).
    pub(crate) fn from_trigger_message(message: &str) -> Option<Cap> {
        let name = message.strip_prefix("concord cap reached: ")?;
        [Cap::DevicesPerUser, Cap::WorkspacesPerUser].into_iter().find(|cap| cap.as_str() == name)
    }
}

/// How long the tokens of a revoked device are kept so its clients learn why they were refused.
pub const REVOKED_TOKEN_RETENTION_SECS: i64 = 30 * 86_400;

/// How long an unconfirmed registration is kept. Its confirm link lives 48 hours; after that it
/// only holds its username and address away from their owners, so cleanup removes it.
pub const UNCONFIRMED_RETENTION_SECS: i64 = 7 * 86_400;

/// How many rows the periodic cleanup removed, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupCounts {
    pub tokens: u64,
    pub magic_tokens: u64,
    pub account_tokens: u64,
    pub devices: u64,
    pub unconfirmed_users: u64,
}

#[async_trait::async_trait]
pub trait AccountStore {
    /// Creates the user, or updates password, admin flag and confirmation of the user with this
    /// username (in any case). Used by the admin bootstrap at start.
    async fn upsert_admin(&self, username: &str, email: &str, password_hash: &str, now: i64)
    -> StoreResult<UserRecord>;

    /// Creates an unconfirmed password user; [`crate::StoreError::Conflict`] if the username or
    /// email is taken.
    async fn create_user(&self, user: NewUser, now: i64) -> StoreResult<UserRecord>;

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;

    /// Matches the username regardless of ASCII case, or the email lowercased, as the Verstak
    /// client's login does.
    async fn user_by_login(&self, login: &str) -> StoreResult<Option<UserRecord>>;

    /// The account of someone who has just proved they read mail at `email` by a magic link or a
    /// sign-in code. A confirmed account is returned as it is. An unconfirmed one is a stranger's
    /// claim (anyone can register any address), so it is deleted with its username, password and
    /// pending confirm and reset tokens, and the address owner gets a fresh confirmed account with
    /// no password: proving the address one way never activates credentials set another way.
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

    /// Creates a device and its bearer token in one transaction. At [`Cap::DevicesPerUser`] live
    /// devices, a new sign-in session first revokes the user's least recently seen sessions (so
    /// the owner can always sign in again; their ids are returned for announcing), while a new
    /// paired client, or a session when only paired clients are live, is refused with
    /// [`crate::StoreError::CapReached`].
    async fn create_device_with_token(
        &self,
        device: NewDevice,
        token: &TokenHash,
        token_kind: TokenKind,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<(DeviceRecord, Vec<String>)>;

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

    /// Confirms the account the confirm token named; false if it is gone (its address owner
    /// signed in another way meanwhile, which discarded it).
    async fn confirm_user(&self, user_id: &str) -> StoreResult<bool>;

    /// Sets a new password and, in the same transaction, confirms the address (the reset mail
    /// proved it) and revokes every device of the user, so a stolen session or device token dies
    /// with the old password (their requests get 401 at once). On an unconfirmed account the
    /// username is discarded too (whoever registered it may not be the address owner, who now
    /// signs in with the address and the password they just chose). Every other outstanding
    /// confirm and reset token of the user dies. Returns the ids of the devices revoked.
    async fn reset_password(&self, user_id: &str, password_hash: &str, now: i64) -> StoreResult<Vec<String>>;

    /// Deletes expired bearer tokens, tokens of devices revoked more than
    /// [`REVOKED_TOKEN_RETENTION_SECS`] ago, used or expired magic and account tokens, sign-in
    /// devices left without any token (their sessions ended), and registrations left unconfirmed
    /// for [`UNCONFIRMED_RETENTION_SECS`].
    async fn cleanup_expired(&self, now: i64) -> StoreResult<CleanupCounts>;

    /// Records the per-user caps that the inserting statements enforce (the server does this at
    /// start, from its settings).
    async fn set_caps(&self, devices_per_user: u32, workspaces_per_user: u32) -> StoreResult<()>;

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

/// What an operator does outside any client's request: the recovery CLI, `doctor` and backups.
/// Apart from [`AccountStore`] because no wire surface may reach these (they bypass ownership).
#[async_trait::async_trait]
pub trait AdminStore {
    /// Every user, oldest first.
    async fn all_users(&self) -> StoreResult<Vec<UserRecord>>;

    /// Replaces the password hash; returns whether the user exists. Devices stay signed in: this
    /// is how an operator lets someone back in, not a response to a stolen password (block for that).
    async fn set_password(&self, user_id: &str, password_hash: &str) -> StoreResult<bool>;

    /// Grants or withdraws admin rights; returns whether the user exists.
    async fn set_user_admin(&self, user_id: &str, is_admin: bool) -> StoreResult<bool>;

    /// Deletes the user and everything that is theirs (devices, tokens, workspaces, documents, the
    /// operation log, blob references), in one transaction; returns whether the user existed.
    async fn delete_user(&self, user_id: &str) -> StoreResult<bool>;

    /// Writes a consistent copy of the whole database to `path`, which must not exist or be an
    /// empty file. Writers are not blocked while it runs.
    async fn copy_database_to(&self, path: &std::path::Path) -> StoreResult<()>;

    /// What the backend's own consistency check finds; empty when the database is whole.
    async fn integrity_problems(&self) -> StoreResult<Vec<String>>;

    /// Every blob hash that at least one scope references, ascending.
    async fn referenced_blob_hashes(&self) -> StoreResult<Vec<String>>;
}
