//! Share stories: a share belongs to its owner's workspace, its token opens it while it is live
//! (not revoked, not expired, owner not blocked), and only its owner lists or revokes it.

use std::sync::Arc;

use concord_core::share::{Access, NewShareToken};
use concord_core::token::TokenHash;
use concord_store::{NewShare, Store, WorkspaceRecord};

async fn default_workspace(store: &dyn Store, email: &str) -> WorkspaceRecord {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    store.ensure_workspace(&user.id, "default", 1).await.unwrap()
}

fn new_share<'a>(workspace: &'a WorkspaceRecord, token: &'a NewShareToken, doc: Option<&'a str>) -> NewShare<'a> {
    NewShare {
        user_id: &workspace.user_id,
        workspace_id: &workspace.id,
        doc_name: doc,
        access: Access::ReadOnly,
        token,
        now: 10,
        expires_at: Some(100),
    }
}

pub async fn story_a_share_opens_while_live_and_only_its_owner_manages_it(store: Arc<dyn Store>) {
    let a = default_workspace(&*store, "a@example.com").await;
    let b = default_workspace(&*store, "b@example.com").await;
    let token = NewShareToken::generate();
    let share = store.create_share(new_share(&a, &token, Some("notes"))).await.unwrap().unwrap();
    assert_eq!(
        (share.doc_name.as_deref(), share.access, share.expires_at),
        (Some("notes"), Access::ReadOnly, Some(100))
    );

    // Only the owner's workspace can be shared, only by the owner.
    let other = NewShareToken::generate();
    assert!(
        store.create_share(NewShare { workspace_id: &b.id, ..new_share(&a, &other, None) }).await.unwrap().is_none()
    );
    assert!(
        store.create_share(NewShare { user_id: &b.user_id, ..new_share(&a, &other, None) }).await.unwrap().is_none()
    );

    let hash = token.token.hash;
    assert_eq!(store.share_by_token(&hash, 50).await.unwrap(), Some(share.clone()));
    assert_eq!(store.share_by_token(&hash, 100).await.unwrap(), None, "expired at its expiry");
    assert_eq!(store.share_by_token(&TokenHash::of("guess"), 50).await.unwrap(), None);
    assert_eq!(store.live_share_tokens(&[hash, TokenHash::of("guess")], 50).await.unwrap(), vec![hash]);
    assert!(store.live_share_tokens(&[hash], 100).await.unwrap().is_empty());

    assert_eq!(store.shares_of(&a.user_id).await.unwrap(), vec![share.clone()]);
    assert!(store.shares_of(&b.user_id).await.unwrap().is_empty());
    assert!(!store.revoke_share(&b.user_id, &share.id, 20).await.unwrap(), "another user cannot revoke it");
    assert!(store.revoke_share(&a.user_id, &share.id, 20).await.unwrap());
    assert!(!store.revoke_share(&a.user_id, &share.id, 21).await.unwrap(), "revoked once");
    assert_eq!(store.share_by_token(&hash, 50).await.unwrap(), None);
    assert!(store.live_share_tokens(&[hash], 50).await.unwrap().is_empty());
    assert!(store.shares_of(&a.user_id).await.unwrap().is_empty());
}

pub async fn story_a_share_ends_with_its_workspace_and_with_its_owners_block(store: Arc<dyn Store>) {
    let a = default_workspace(&*store, "a@example.com").await;
    let journal = store.create_workspace(&a.user_id, "journal", 1).await.unwrap();
    let in_journal = NewShareToken::generate();
    store.create_share(NewShare { expires_at: None, ..new_share(&journal, &in_journal, None) }).await.unwrap().unwrap();
    let in_default = NewShareToken::generate();
    store.create_share(NewShare { expires_at: None, ..new_share(&a, &in_default, None) }).await.unwrap().unwrap();
    assert!(store.share_by_token(&in_journal.token.hash, i64::MAX - 1).await.unwrap().is_some(), "no expiry");

    assert!(store.delete_workspace(&a.user_id, &journal.id).await.unwrap());
    assert_eq!(store.share_by_token(&in_journal.token.hash, 50).await.unwrap(), None);
    assert_eq!(store.shares_of(&a.user_id).await.unwrap().len(), 1);

    store.set_user_blocked(&a.user_id, true).await.unwrap();
    assert_eq!(store.share_by_token(&in_default.token.hash, 50).await.unwrap(), None, "a blocked owner shares nothing");
    assert!(store.live_share_tokens(&[in_default.token.hash], 50).await.unwrap().is_empty());
}
