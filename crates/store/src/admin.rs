//! The admin console part of the contract: counts, searching and paging users and devices, the
//! sizes of vaults and workspaces (never their contents), the audit log and the live settings.
//!
//! Apart from [`crate::AccountStore`] because only an admin reaches these (they see every user).
//! Every query is plain SQL that PostgreSQL runs as well (`LIKE` on `lower(...)`, `CASE` for the
//! sort order, `LIMIT`/`OFFSET`), so a second backend implements the same statements.

use crate::{DeviceKind, DeviceRecord, StoreResult, UserRecord, WorkspaceRecord};

/// Totals for the admin dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub users: i64,
    /// Live (unrevoked) devices.
    pub devices: i64,
    /// Distinct (user, vault) scopes with an operation log, blob references or a paired client.
    pub vaults: i64,
    pub workspaces: i64,
    pub documents: i64,
    pub operations: i64,
    /// Operations pushed in the 24 hours before `now`.
    pub operations_24h: i64,
    /// Bytes of the distinct blobs referenced (each file counted once, however many scopes share it).
    pub blob_bytes: i64,
}

/// Which users a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserFilter {
    #[default]
    All,
    /// Confirmed and not blocked.
    Active,
    Blocked,
    Unconfirmed,
    Admin,
}

impl UserFilter {
    pub const ALL: [UserFilter; 5] =
        [UserFilter::All, UserFilter::Active, UserFilter::Blocked, UserFilter::Unconfirmed, UserFilter::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            UserFilter::All => "all",
            UserFilter::Active => "active",
            UserFilter::Blocked => "blocked",
            UserFilter::Unconfirmed => "unconfirmed",
            UserFilter::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<UserFilter> {
        UserFilter::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// The order of a user listing; ties are broken by id so pages never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    /// Newest first.
    #[default]
    Newest,
    Oldest,
    Email,
    Username,
}

impl UserSort {
    pub const ALL: [UserSort; 4] = [UserSort::Newest, UserSort::Oldest, UserSort::Email, UserSort::Username];

    pub fn as_str(self) -> &'static str {
        match self {
            UserSort::Newest => "newest",
            UserSort::Oldest => "oldest",
            UserSort::Email => "email",
            UserSort::Username => "username",
        }
    }

    pub fn parse(s: &str) -> Option<UserSort> {
        UserSort::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A page of a listing: `offset` rows skipped, at most `limit` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub offset: i64,
    pub limit: i64,
}

/// One page and how many rows match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Matched case-insensitively anywhere in the email or username; empty matches all.
    pub text: String,
    pub filter: UserFilter,
    pub sort: UserSort,
}

/// A user as the console lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub user: UserRecord,
    /// Live devices.
    pub devices: i64,
    /// The most recent activity of any of their devices.
    pub last_seen_at: Option<i64>,
}

/// Which devices a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceState {
    #[default]
    All,
    Live,
    Revoked,
}

impl DeviceState {
    pub const ALL: [DeviceState; 3] = [DeviceState::All, DeviceState::Live, DeviceState::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::All => "all",
            DeviceState::Live => "live",
            DeviceState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceState> {
        DeviceState::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Only this user's devices.
    pub user_id: Option<String>,
    pub kind: Option<DeviceKind>,
    pub state: DeviceState,
}

/// A device with its owner's address, most recently seen first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListing {
    pub device: DeviceRecord,
    pub email: String,
}

/// One (user, vault) scope's size: no op payload is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultStats {
    pub user_id: String,
    pub email: String,
    pub vault_id: String,
    pub operations: i64,
    pub head: i64,
    pub blobs: i64,
    pub blob_bytes: i64,
    /// Live paired clients of the vault.
    pub devices: i64,
}

/// One workspace's size: no document content is read, only lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceStats {
    pub workspace: WorkspaceRecord,
    pub email: String,
    pub documents: i64,
    /// Snapshot and update bytes of its documents.
    pub bytes: i64,
}

#[async_trait::async_trait]
pub trait ConsoleStore {
    async fn stats(&self, now: i64) -> StoreResult<Stats>;

    async fn list_users(&self, query: &UserQuery, page: Paging) -> StoreResult<Page<UserSummary>>;

    /// Changes a user's email (lowercased by the caller) and username (`None` removes it);
    /// [`crate::StoreError::Conflict`] if another user has either. Returns whether the user exists.
    async fn edit_user(&self, user_id: &str, email: &str, username: Option<&str>) -> StoreResult<bool>;

    async fn list_devices(&self, query: &DeviceQuery, page: Paging) -> StoreResult<Page<DeviceListing>>;

    /// Scopes ordered by email then vault id.
    async fn list_vaults(&self, page: Paging) -> StoreResult<Page<VaultStats>>;

    /// Deletes a scope's operation log and blob references (the collector then reclaims files no
    /// other scope references) and revokes the clients paired with it, in one transaction.
    /// Returns the revoked device ids, or `None` if the scope had nothing.
    async fn delete_vault(&self, user_id: &str, vault_id: &str, now: i64) -> StoreResult<Option<Vec<String>>>;

    /// Workspaces ordered by email then name.
    async fn list_workspaces(&self, page: Paging) -> StoreResult<Page<WorkspaceStats>>;

    /// Any user's workspace by id (the owner-scoped lookup is [`crate::AccountStore::workspace_of`]).
    async fn workspace_by_id(&self, workspace_id: &str) -> StoreResult<Option<WorkspaceRecord>>;

    /// Appends an audit entry.
    async fn append_audit(&self, entry: &NewAuditEntry) -> StoreResult<()>;

    /// Entries matching every given condition, newest first.
    async fn audit_entries(&self, query: &AuditQuery, page: Paging) -> StoreResult<Page<AuditEntry>>;

    /// Deletes entries older than `before`; returns how many went.
    async fn purge_audit(&self, before: i64) -> StoreResult<u64>;

    /// Every saved setting, by name.
    async fn live_settings(&self) -> StoreResult<Vec<(String, String)>>;

    /// Saves (`Some`) or clears (`None`) each named setting, all in one transaction.
    async fn save_live_settings(&self, changes: &[(&str, Option<&str>)], now: i64) -> StoreResult<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: i64,
    pub event: String,
    /// Who acted (an email or username), if anyone known did.
    pub actor: Option<String>,
    /// What it was done to (an email, a device id, a setting group).
    pub subject: Option<String>,
    /// What changed, in words; never a secret.
    pub detail: String,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub entry: NewAuditEntry,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub event: Option<String>,
    /// Entries whose actor or subject is exactly this (case-insensitive).
    pub user: Option<String>,
    /// Matched case-insensitively anywhere in actor, subject, detail or IP.
    pub text: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

/// `text` as a `LIKE` pattern matching it anywhere, with `\` escaping `%`, `_` and itself (the
/// statements say `ESCAPE '\'`), lowercased for matching against `lower(column)`.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(contains_pattern(input), expected, "input {input:?}");
    }

    #[test]
    fn patterns_match_text_literally() {
        check("", "%%");
        check("Bob", "%bob%");
        check("50%_off\\", "%50\\%\\_off\\\\%");
    }

    #[test]
    fn names_round_trip() {
        for f in UserFilter::ALL {
            assert_eq!(UserFilter::parse(f.as_str()), Some(f));
        }
        for s in UserSort::ALL {
            assert_eq!(UserSort::parse(s.as_str()), Some(s));
        }
        for s in DeviceState::ALL {
            assert_eq!(DeviceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(UserFilter::parse("ALL"), None);
    }
}
