//! Store-level contract tests for accounts: single-use tokens, sign-in code attempts, password
//! reset revocation and cleanup, against a real SQLite file.

use concord_core::token::TokenHash;
use concord_store::sqlite::SqliteStore;
use concord_store::{
    AccountStore, AccountTokenPurpose, Cap, DeviceKind, NewDevice, NewUser, REVOKED_TOKEN_RETENTION_SECS, StoreError,
    TokenKind, UNCONFIRMED_RETENTION_SECS,
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

fn registration(username: &str, email: &str) -> NewUser {
    NewUser { email: email.to_owned(), username: username.to_owned(), password_hash: "stranger's".to_owned() }
}

#[tokio::test]
async fn proving_an_address_discards_an_unconfirmed_registration_of_it() {
    let (_dir, store) = open().await;
    let claim = store.create_user(registration("mallory", "victim@example.com"), 0).await.unwrap();
    let confirm = TokenHash::of("claim-confirm");
    store.insert_account_token(&confirm, &claim.id, AccountTokenPurpose::Confirm, 100, 0).await.unwrap();

    let owner = store.user_for_verified_email("victim@example.com", 5).await.unwrap();
    assert_ne!(owner.id, claim.id, "a fresh account, nothing of the claim carried over");
    assert!(owner.confirmed);
    assert_eq!((owner.username, owner.password_hash), (None, None));
    assert!(store.user_by_login("mallory").await.unwrap().is_none(), "the claimed username is free again");
    assert_eq!(store.consume_account_token(&confirm, AccountTokenPurpose::Confirm, 6).await.unwrap(), None);
    // A confirmed account is kept as it is.
    let again = store.user_for_verified_email("victim@example.com", 7).await.unwrap();
    assert_eq!(again.id, owner.id);
}

#[tokio::test]
async fn a_reset_of_an_unconfirmed_account_keeps_only_the_new_password() {
    let (_dir, store) = open().await;
    let claim = store.create_user(registration("mallory", "victim@example.com"), 0).await.unwrap();
    let confirm = TokenHash::of("claim-confirm");
    store.insert_account_token(&confirm, &claim.id, AccountTokenPurpose::Confirm, 100, 0).await.unwrap();
    store.reset_password(&claim.id, "owner's", 1).await.unwrap();
    let user = store.user_by_id(&claim.id).await.unwrap().unwrap();
    assert_eq!((user.username, user.password_hash.as_deref(), user.confirmed), (None, Some("owner's"), true));
    assert_eq!(store.consume_account_token(&confirm, AccountTokenPurpose::Confirm, 2).await.unwrap(), None);

    // A confirmed account keeps its username through a reset.
    let bob = store.create_user(registration("bob", "bob@example.com"), 0).await.unwrap();
    store.confirm_user(&bob.id).await.unwrap();
    store.reset_password(&bob.id, "new", 1).await.unwrap();
    assert_eq!(store.user_by_id(&bob.id).await.unwrap().unwrap().username.as_deref(), Some("bob"));
}

#[tokio::test]
async fn usernames_are_one_name_in_any_case() {
    let (_dir, store) = open().await;
    let bob = store.create_user(registration("Bob", "bob@example.com"), 0).await.unwrap();
    assert!(matches!(
        store.create_user(registration("bob", "other@example.com"), 0).await,
        Err(StoreError::Conflict(_))
    ));
    for login in ["Bob", "bob", "BOB", "BOB@Example.com"] {
        assert_eq!(store.user_by_login(login).await.unwrap().map(|u| u.id), Some(bob.id.clone()), "{login}");
    }
    // The admin bootstrap updates the account of that name rather than failing or adding one.
    let admin = store.upsert_admin("BOB", "admin@example.com", "admin's", 1).await.unwrap();
    assert_eq!(admin.id, bob.id);
    assert!(admin.is_admin && admin.confirmed);
}

#[tokio::test]
async fn the_case_migration_keeps_one_account_per_name_and_the_others_their_email() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    let store = SqliteStore::open(&path).await.unwrap();
    drop(store);
    // Recreate a database from before migration 0030: the index gone, names differing in case.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display())).await.unwrap();
    for sql in [
        "DROP INDEX users_username_nocase",
        "DELETE FROM _sqlx_migrations WHERE version = 30",
        "INSERT INTO users (id, email, username, confirmed, created_at) VALUES
            ('u1', 'early@example.com', 'bob', 0, 1),
            ('u2', 'confirmed@example.com', 'BOB', 1, 2),
            ('u3', 'late@example.com', 'Bob', 1, 3),
            ('u4', 'alone@example.com', 'alice', 0, 4)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let name = |id: &'static str| {
        let store = &store;
        async move { store.user_by_id(id).await.unwrap().unwrap().username }
    };
    assert_eq!(name("u2").await.as_deref(), Some("BOB"), "the earliest confirmed account keeps the name");
    assert_eq!((name("u1").await, name("u3").await), (None, None));
    assert_eq!(name("u4").await.as_deref(), Some("alice"));
    assert_eq!(store.user_by_login("late@example.com").await.unwrap().unwrap().id, "u3", "email login stays");
    assert!(matches!(store.create_user(registration("ALICE", "x@example.com"), 5).await, Err(StoreError::Conflict(_))));
}

/// Concurrent inserts cannot overshoot: the trigger counts inside the inserting statement.
#[tokio::test]
async fn caps_hold_under_concurrent_inserts() {
    let (_dir, store) = open().await;
    store.set_caps(10, 5).await.unwrap();
    let user = store.user_for_verified_email("c@example.com", 0).await.unwrap();
    let attempts = (0..40).map(|i| {
        let (store, user_id) = (store.clone(), user.id.clone());
        tokio::spawn(async move {
            let token = TokenHash::of(&format!("t{i}"));
            store
                .create_device_with_token(device(&user_id, DeviceKind::Client), &token, TokenKind::Device, None, 0)
                .await
        })
    });
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::CapReached(cap)) => assert_eq!(cap, Cap::DevicesPerUser),
            Err(err) => panic!("{err}"),
        }
    }
    assert_eq!(created, 10);
    // A revoked device frees its place.
    let first = store.devices_of(&user.id).await.unwrap().remove(0);
    assert!(store.revoke_device(&user.id, &first.id, 1).await.unwrap());
    store
        .create_device_with_token(
            device(&user.id, DeviceKind::Session),
            &TokenHash::of("x"),
            TokenKind::Session,
            None,
            1,
        )
        .await
        .unwrap();

    // Workspaces: `default` beyond the cap still works, and so does asking for an existing one.
    for i in 0..5 {
        store.ensure_workspace(&user.id, &format!("w{i}"), 0).await.unwrap();
    }
    assert!(matches!(
        store.ensure_workspace(&user.id, "w5", 0).await,
        Err(StoreError::CapReached(Cap::WorkspacesPerUser))
    ));
    store.ensure_workspace(&user.id, "w4", 0).await.unwrap();
    store.ensure_workspace(&user.id, "default", 0).await.unwrap();
    assert_eq!(store.workspaces_of(&user.id).await.unwrap().len(), 6);
}

/// At the cap a new sign-in session makes room by revoking the least recently seen sessions;
/// paired clients are never evicted, and refuse to be added instead.
#[tokio::test]
async fn a_new_session_at_the_cap_evicts_the_oldest_session_never_a_client() {
    let (_dir, store) = open().await;
    store.set_caps(3, 1).await.unwrap();
    let user = store.user_for_verified_email("s@example.com", 0).await.unwrap();
    let new = |kind: DeviceKind, name: &str, now: i64| {
        let (store, user_id, token) = (store.clone(), user.id.clone(), TokenHash::of(name));
        let token_kind = if kind == DeviceKind::Client { TokenKind::Device } else { TokenKind::Session };
        async move { store.create_device_with_token(device(&user_id, kind), &token, token_kind, None, now).await }
    };
    let (client, _) = new(DeviceKind::Client, "client", 0).await.unwrap();
    let (oldest, _) = new(DeviceKind::Session, "s1", 1).await.unwrap();
    let (newer, _) = new(DeviceKind::Session, "s2", 2).await.unwrap();
    let (_, evicted) = new(DeviceKind::Session, "s3", 3).await.unwrap();
    assert_eq!(evicted, vec![oldest.id.clone()]);
    let principal = store.authenticate(&TokenHash::of("s1"), 4).await.unwrap().unwrap();
    assert_eq!(principal.device.revoked_at, Some(3), "kept to answer `device revoked`");
    assert!(matches!(new(DeviceKind::Client, "client2", 5).await, Err(StoreError::CapReached(Cap::DevicesPerUser))));
    let live: Vec<String> = store
        .devices_of(&user.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.revoked_at.is_none())
        .map(|d| d.id)
        .collect();
    assert_eq!(live.len(), 3);
    assert!(live.contains(&client.id) && live.contains(&newer.id));
}

/// A registration nobody confirmed stops holding its username and address once its link is long
/// dead; confirmed accounts of the same age stay.
#[tokio::test]
async fn cleanup_frees_names_held_by_stale_unconfirmed_registrations() {
    let (_dir, store) = open().await;
    let stale = store.create_user(registration("squatter", "victim@example.com"), 0).await.unwrap();
    let kept = store.create_user(registration("owner", "owner@example.com"), 0).await.unwrap();
    store.confirm_user(&kept.id).await.unwrap();
    let fresh = store.create_user(registration("newcomer", "new@example.com"), 10).await.unwrap();
    let counts = store.cleanup_expired(UNCONFIRMED_RETENTION_SECS).await.unwrap();
    assert_eq!(counts.unconfirmed_users, 1);
    assert!(store.user_by_id(&stale.id).await.unwrap().is_none());
    assert!(store.user_by_id(&kept.id).await.unwrap().is_some());
    assert!(store.user_by_id(&fresh.id).await.unwrap().is_some());
    store.create_user(registration("squatter", "victim@example.com"), 20).await.unwrap();
}
