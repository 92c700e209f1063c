//! Store-level contract tests for accounts: single-use tokens, sign-in code attempts, password
//! reset revocation and cleanup, against a real SQLite file.

use concord_core::token::TokenHash;
use concord_store::sqlite::SqliteStore;
use concord_store::{
    AccountStore, AccountTokenPurpose, DeviceKind, NewDevice, NewUser, REVOKED_TOKEN_RETENTION_SECS, StoreError,
    TokenKind,
};

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("concord.db")).await.unwrap();
    (dir, store)
}

fn device(user_id: &str, kind: DeviceKind) -> NewDevice {
    NewDevice { user_id: user_id.to_owned(), kind, name: None, vault_id: None, client_version: None, user_agent: None }
}

#[tokio::test]
async fn sign_in_codes_work_once_and_lock_after_too_many_wrong_guesses() {
    let (_dir, store) = open().await;
    let (link, right, wrong) = (TokenHash::of("link"), TokenHash::of("right"), TokenHash::of("wrong"));
    store.insert_magic_token(&link, &right, "a@example.com", 1000, 0).await.unwrap();

    assert!(!store.consume_sign_in_code("b@example.com", &right, 5, 10).await.unwrap(), "other address");
    assert!(store.consume_sign_in_code("a@example.com", &right, 5, 10).await.unwrap());
    assert!(!store.consume_sign_in_code("a@example.com", &right, 5, 10).await.unwrap(), "used once");
    assert_eq!(store.consume_magic_token(&link, 10).await.unwrap(), None, "the code used up the link");

    let link2 = TokenHash::of("link2");
    store.insert_magic_token(&link2, &right, "a@example.com", 1000, 20).await.unwrap();
    for _ in 0..5 {
        assert!(!store.consume_sign_in_code("a@example.com", &wrong, 5, 30).await.unwrap());
    }
    assert!(!store.consume_sign_in_code("a@example.com", &right, 5, 30).await.unwrap(), "locked");
    assert_eq!(store.consume_magic_token(&link2, 30).await.unwrap().as_deref(), Some("a@example.com"));

    let link3 = TokenHash::of("link3");
    store.insert_magic_token(&link3, &right, "a@example.com", 100, 40).await.unwrap();
    assert!(!store.consume_sign_in_code("a@example.com", &right, 5, 100).await.unwrap(), "expired");
}

#[tokio::test]
async fn reset_revokes_every_device_and_account_tokens_are_single_use() {
    let (_dir, store) = open().await;
    let new = |name: &str| NewUser {
        email: format!("{name}@example.com"),
        username: name.to_owned(),
        password_hash: "old".to_owned(),
    };
    let alice = store.create_user(new("alice"), 0).await.unwrap();
    assert!(matches!(store.create_user(new("alice"), 0).await, Err(StoreError::Conflict(_))));
    assert!(!alice.confirmed);

    let confirm = TokenHash::of("confirm");
    store.insert_account_token(&confirm, &alice.id, AccountTokenPurpose::Confirm, 100, 0).await.unwrap();
    assert_eq!(store.consume_account_token(&confirm, AccountTokenPurpose::Reset, 1).await.unwrap(), None);
    assert_eq!(
        store.consume_account_token(&confirm, AccountTokenPurpose::Confirm, 1).await.unwrap(),
        Some(alice.id.clone())
    );
    assert_eq!(store.consume_account_token(&confirm, AccountTokenPurpose::Confirm, 1).await.unwrap(), None);

    let (t1, t2) = (TokenHash::of("t1"), TokenHash::of("t2"));
    store
        .create_device_with_token(device(&alice.id, DeviceKind::Client), &t1, TokenKind::Device, None, 0)
        .await
        .unwrap();
    store
        .create_device_with_token(device(&alice.id, DeviceKind::Session), &t2, TokenKind::Session, Some(50), 0)
        .await
        .unwrap();
    assert!(store.authenticate(&t1, 1).await.unwrap().is_some());

    let revoked = store.reset_password(&alice.id, "new", 2).await.unwrap();
    assert_eq!(revoked.len(), 2);
    for token in [&t1, &t2] {
        let principal = store.authenticate(token, 3).await.unwrap().unwrap();
        assert_eq!(principal.device.revoked_at, Some(2), "kept to answer `device revoked`");
    }
    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("new"));
    assert!(user.confirmed);

    // Within the retention the revoked devices' tokens stay; after it, cleanup removes them, the
    // session device (no tokens left) and the used confirm token, and keeps the revoked paired
    // client so its owner can see it.
    assert_eq!(store.cleanup_expired(10).await.unwrap().devices, 0);
    assert!(store.authenticate(&t1, 10).await.unwrap().is_some());
    let counts = store.cleanup_expired(3 + REVOKED_TOKEN_RETENTION_SECS).await.unwrap();
    assert_eq!((counts.tokens, counts.devices), (2, 1));
    assert!(store.authenticate(&t1, 10).await.unwrap().is_none());
    let devices = store.devices_of(&alice.id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].kind, DeviceKind::Client);
    assert_eq!(devices[0].revoked_at, Some(2));
}

#[tokio::test]
async fn cleanup_removes_expired_sessions_only() {
    let (_dir, store) = open().await;
    let user = store.user_for_verified_email("s@example.com", 0).await.unwrap();
    let (live, dead) = (TokenHash::of("live"), TokenHash::of("dead"));
    store
        .create_device_with_token(device(&user.id, DeviceKind::Session), &live, TokenKind::Session, Some(500), 0)
        .await
        .unwrap();
    store
        .create_device_with_token(device(&user.id, DeviceKind::Session), &dead, TokenKind::Session, Some(50), 0)
        .await
        .unwrap();
    store.insert_magic_token(&TokenHash::of("m"), &TokenHash::of("c"), "s@example.com", 60, 0).await.unwrap();

    assert!(store.authenticate(&dead, 49).await.unwrap().is_some());
    assert!(store.authenticate(&dead, 50).await.unwrap().is_none(), "expired sessions stop at once");
    let counts = store.cleanup_expired(100).await.unwrap();
    assert_eq!((counts.tokens, counts.magic_tokens, counts.devices), (1, 1, 1));
    assert!(store.authenticate(&live, 100).await.unwrap().is_some());
    assert_eq!(store.devices_of(&user.id).await.unwrap().len(), 1);
}
