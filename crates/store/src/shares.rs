//! The share tokens part of the contract: an owner's grants of one document or one workspace to
//! whoever holds a token, read-only or read-write, with an optional expiry, until revoked.

use concord_core::share::{Access, NewShareToken};
use concord_core::token::TokenHash;

use crate::StoreResult;

/// A share as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub id: String,
    /// The owner: the user whose workspace it shares.
    pub user_id: String,
    pub workspace_id: String,
    /// The one document shared, or `None` for every document of the workspace.
    pub doc_name: Option<String>,
    pub access: Access,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What [`ShareStore::create_share`] stores.
#[derive(Debug)]
pub struct NewShare<'a> {
    pub user_id: &'a str,
    pub workspace_id: &'a str,
    pub doc_name: Option<&'a str>,
    pub access: Access,
    pub token: &'a NewShareToken,
    pub now: i64,
    pub expires_at: Option<i64>,
}

#[async_trait::async_trait]
pub trait ShareStore {
    /// Stores a share of one of the user's workspaces; `None` if the workspace is not theirs.
    async fn create_share(&self, share: NewShare<'_>) -> StoreResult<Option<ShareRecord>>;

    /// The user's shares that are not revoked (expired ones included, so the owner sees them),
    /// by creation time (ties, within one second, in id order).
    async fn shares_of(&self, user_id: &str) -> StoreResult<Vec<ShareRecord>>;

    /// Revokes the user's share; returns whether a share of theirs that was not yet revoked was.
    async fn revoke_share(&self, user_id: &str, share_id: &str, now: i64) -> StoreResult<bool>;

    /// The share a token stands for, if it is live: not revoked, not expired at `now`, its owner
    /// not blocked.
    async fn share_by_token(&self, token: &TokenHash, now: i64) -> StoreResult<Option<ShareRecord>>;

    /// Of `hashes`, the tokens of shares that are still live (the rule of
    /// [`ShareStore::share_by_token`]); one query, for re-checking every open connection.
    async fn live_share_tokens(&self, hashes: &[TokenHash], now: i64) -> StoreResult<Vec<TokenHash>>;
}
