//! Account stories: users and their lookup, magic links and sign-in codes, confirm and reset
//! tokens, devices with their bearer tokens, revocation, blocking, cleanup and the per-user caps.

use std::collections::HashSet;
use std::sync::Arc;

use concord_core::token::TokenHash;
use concord_store::{
    AccountTokenPurpose, Cap, ConflictKind, DeviceKind, NewUser, REVOKED_TOKEN_RETENTION_SECS, Store, StoreError,
    TokenKind, UNCONFIRMED_RETENTION_SECS,
};

use crate::{device, registration};

pub async fn story_usernames_are_one_name_in_any_case(store: Arc<dyn Store>) {
    let bob = store.create_user(registration("Bob", "bob@example.com"), 0).await.unwrap();
    assert!(matches!(
        store.create_user(registration("bob", "other@example.com"), 0).await,
        Err(StoreError::Conflict(ConflictKind::Username))
    ));
    assert!(matches!(
        store.create_user(registration("robert", "bob@example.com"), 0).await,
        Err(StoreError::Conflict(ConflictKind::Email)),
    ));
    // Login is the username in any ASCII case, or the address in any case.
    for (login, found) in
        [("Bob", true), ("bob", true), ("BOB", true), ("BOB@Example.com", true), ("bo", false), ("", false)]
    {
        let user = store.user_by_login(login).await.unwrap();
        assert_eq!(user.map(|u| u.id), found.then(|| bob.id.clone()), "{login:?}");
    }
    assert_eq!(store.user_by_email("bob@example.com").await.unwrap().map(|u| u.id), Some(bob.id.clone()));
    assert!(!bob.confirmed);
    assert!(store.confirm_user(&bob.id).await.unwrap());
    assert!(store.user_by_id(&bob.id).await.unwrap().unwrap().confirmed);
    assert!(!store.confirm_user("nobody").await.unwrap());
    // The admin bootstrap updates the account of that name rather than failing or adding one.
    let admin = store.upsert_admin("BOB", "admin@example.com", "admin's", 1).await.unwrap();
    assert_eq!(admin.id, bob.id);
    assert!(admin.is_admin && admin.confirmed);
    let fresh = store.upsert_admin("root", "root@example.com", "root's", 1).await.unwrap();
    assert_ne!(fresh.id, bob.id);
    assert_eq!(store.user_by_login("ROOT").await.unwrap().map(|u| u.id), Some(fresh.id));
}

pub async fn story_sign_in_codes_work_once_and_lock_after_too_many_wrong_guesses(store: Arc<dyn Store>) {
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
    assert_eq!(store.consume_magic_token(&link2, 30).await.unwrap(), None, "a link works once");

    let link3 = TokenHash::of("link3");
    store.insert_magic_token(&link3, &right, "a@example.com", 100, 40).await.unwrap();
    assert!(!store.consume_sign_in_code("a@example.com", &right, 5, 100).await.unwrap(), "expired");
    assert_eq!(store.consume_magic_token(&link3, 100).await.unwrap(), None, "expired at its expiry");
}

pub async fn story_account_tokens_are_single_use_and_for_their_purpose(store: Arc<dyn Store>) {
    let alice = store.create_user(registration("alice", "alice@example.com"), 0).await.unwrap();
    let (confirm, reset) = (TokenHash::of("confirm"), TokenHash::of("reset"));
    store.insert_account_token(&confirm, &alice.id, AccountTokenPurpose::Confirm, 100, 0).await.unwrap();
    store.insert_account_token(&reset, &alice.id, AccountTokenPurpose::Reset, 100, 0).await.unwrap();
    // (token, purpose, now, expected): wrong purpose, then once, then never again; expiry holds.
    let steps = [
        (&confirm, AccountTokenPurpose::Reset, 1, false),
        (&confirm, AccountTokenPurpose::Confirm, 1, true),
        (&confirm, AccountTokenPurpose::Confirm, 1, false),
        (&reset, AccountTokenPurpose::Reset, 100, false),
    ];
    for (token, purpose, now, expected) in steps {
        let got = store.consume_account_token(token, purpose, now).await.unwrap();
        assert_eq!(got, expected.then(|| alice.id.clone()), "{purpose:?} at {now}");
    }
}

pub async fn story_reset_revokes_every_device(store: Arc<dyn Store>) {
    let alice = store
        .create_user(
            NewUser { email: "alice@example.com".into(), username: "alice".into(), password_hash: "old".into() },
            0,
        )
        .await
        .unwrap();
    let (t1, t2) = (TokenHash::of("t1"), TokenHash::of("t2"));
    store
        .create_device_with_token(device(&alice.id, DeviceKind::Client), &t1, TokenKind::Device, None, 0)
        .await
        .unwrap();
    store
        .create_device_with_token(device(&alice.id, DeviceKind::Session), &t2, TokenKind::Session, Some(50), 0)
        .await
        .unwrap();
    let principal = store.authenticate(&t1, 1).await.unwrap().unwrap();
    assert_eq!((principal.user.id.as_str(), principal.token_kind), (alice.id.as_str(), TokenKind::Device));

    let revoked = store.reset_password(&alice.id, "new", 2).await.unwrap();
    assert_eq!(revoked.len(), 2);
    for token in [&t1, &t2] {
        let principal = store.authenticate(token, 3).await.unwrap().unwrap();
        assert_eq!(principal.device.revoked_at, Some(2), "kept to answer `device revoked`");
    }
    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("new"));
    assert!(user.confirmed);

    // Within the retention the revoked devices' tokens stay; after it, cleanup removes them and the
    // session device (no tokens left), and keeps the revoked paired client so its owner can see it.
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

pub async fn story_cleanup_removes_expired_sessions_only(store: Arc<dyn Store>) {
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

pub async fn story_proving_an_address_discards_an_unconfirmed_registration_of_it(store: Arc<dyn Store>) {
    let claim = store.create_user(registration("mallory", "victim@example.com"), 0).await.unwrap();
    let confirm = TokenHash::of("claim-confirm");
    store.insert_account_token(&confirm, &claim.id, AccountTokenPurpose::Confirm, 100, 0).await.unwrap();

    let owner = store.user_for_verified_email("victim@example.com", 5).await.unwrap();
    assert_ne!(owner.id, claim.id, "a fresh account, nothing of the claim carried over");
    assert!(owner.confirmed);
    assert_eq!((owner.username, owner.password_hash), (None, None));
    assert!(store.user_by_login("mallory").await.unwrap().is_none(), "the claimed username is free again");
    assert_eq!(store.consume_account_token(&confirm, AccountTokenPurpose::Confirm, 6).await.unwrap(), None);
    assert!(!store.confirm_user(&claim.id).await.unwrap(), "the claim is gone");
    // A confirmed account is kept as it is.
    let again = store.user_for_verified_email("victim@example.com", 7).await.unwrap();
    assert_eq!(again.id, owner.id);
}

pub async fn story_a_reset_of_an_unconfirmed_account_keeps_only_the_new_password(store: Arc<dyn Store>) {
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

/// A registration nobody confirmed stops holding its username and address once its link is long
/// dead; confirmed accounts of the same age stay.
pub async fn story_cleanup_frees_names_held_by_stale_unconfirmed_registrations(store: Arc<dyn Store>) {
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

/// Revoking keeps the device (and its tokens) to explain refusals; logging out deletes both; neither
/// reaches another user's device. Activity orders the list.
pub async fn story_devices_are_revoked_and_deleted_only_by_their_owner(store: Arc<dyn Store>) {
    let alice = store.user_for_verified_email("alice@example.com", 0).await.unwrap();
    let eve = store.user_for_verified_email("eve@example.com", 0).await.unwrap();
    let (a1, a2) = (TokenHash::of("a1"), TokenHash::of("a2"));
    let (first, _) = store
        .create_device_with_token(device(&alice.id, DeviceKind::Session), &a1, TokenKind::Web, None, 0)
        .await
        .unwrap();
    let (second, _) = store
        .create_device_with_token(device(&alice.id, DeviceKind::Session), &a2, TokenKind::Session, None, 1)
        .await
        .unwrap();
    store.touch_device(&first.id, 5).await.unwrap();
    let order: Vec<String> = store.devices_of(&alice.id).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(order, [first.id.clone(), second.id.clone()], "most recently seen first");
    assert_eq!(store.device_by_id(&first.id).await.unwrap().unwrap().last_seen_at, 5);

    assert!(!store.revoke_device(&eve.id, &first.id, 6).await.unwrap(), "not eve's device");
    assert!(!store.delete_device(&eve.id, &second.id).await.unwrap(), "not eve's device");
    assert!(store.authenticate(&a1, 6).await.unwrap().unwrap().device.revoked_at.is_none());

    assert!(store.revoke_device(&alice.id, &first.id, 6).await.unwrap());
    assert_eq!(store.authenticate(&a1, 7).await.unwrap().unwrap().device.revoked_at, Some(6));
    assert!(store.delete_device(&alice.id, &second.id).await.unwrap());
    assert!(!store.delete_device(&alice.id, &second.id).await.unwrap(), "gone already");
    assert!(store.authenticate(&a2, 7).await.unwrap().is_none(), "its token went with it");
    assert!(store.device_by_id(&second.id).await.unwrap().is_none());

    // Blocking shows on the principal (so the caller can answer 403), and unblocking lifts it.
    let e1 = TokenHash::of("e1");
    store
        .create_device_with_token(device(&eve.id, DeviceKind::Session), &e1, TokenKind::Session, None, 0)
        .await
        .unwrap();
    for blocked in [true, false] {
        store.set_user_blocked(&eve.id, blocked).await.unwrap();
        assert_eq!(store.authenticate(&e1, 8).await.unwrap().unwrap().user.blocked, blocked);
    }
}

/// Concurrent inserts cannot overshoot: the count and the insert are one step.
pub async fn story_device_caps_hold_under_concurrent_inserts(store: Arc<dyn Store>) {
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
    for attempt in attempts.collect::<Vec<_>>() {
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
}

/// At the cap a new sign-in session makes room by revoking the least recently seen sessions;
/// paired clients are never evicted, and refuse to be added instead.
pub async fn story_a_new_session_at_the_cap_evicts_the_oldest_session_never_a_client(store: Arc<dyn Store>) {
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

/// The batched credential check long-lived connections rely on: one call tells which of many
/// tokens still authenticate, by the same rules as a single authentication.
pub async fn story_still_valid_applies_expiry_revocation_and_blocking_to_every_token_at_once(store: Arc<dyn Store>) {
    let alice = store.user_for_verified_email("alice@example.com", 0).await.unwrap();
    let bob = store.user_for_verified_email("bob@example.com", 0).await.unwrap();
    let session = |user_id: &str| device(user_id, DeviceKind::Session);
    let [forever, until_50, revoked, blocked, unknown] =
        ["forever", "until-50", "revoked", "blocked", "unknown"].map(TokenHash::of);
    for (token, expires) in [(&forever, None), (&until_50, Some(50))] {
        store.create_device_with_token(session(&alice.id), token, TokenKind::Session, expires, 0).await.unwrap();
    }
    let (gone, _) =
        store.create_device_with_token(session(&alice.id), &revoked, TokenKind::Session, None, 0).await.unwrap();
    assert!(store.revoke_device(&alice.id, &gone.id, 1).await.unwrap());
    store.create_device_with_token(session(&bob.id), &blocked, TokenKind::Session, None, 0).await.unwrap();
    store.set_user_blocked(&bob.id, true).await.unwrap();

    let all = [forever, until_50, revoked, blocked, unknown];
    let valid = |now| {
        let store = &store;
        async move { store.still_valid(&all, now).await.unwrap().into_iter().collect::<HashSet<_>>() }
    };
    assert_eq!(valid(49).await, HashSet::from([forever, until_50]));
    assert_eq!(valid(50).await, HashSet::from([forever]), "expired at its expiry, as authenticate says");
    assert!(store.still_valid(&[], 0).await.unwrap().is_empty());
    // Each answer agrees with authenticating the token alone.
    for token in all {
        let alone = store.authenticate(&token, 49).await.unwrap();
        let ok = alone.is_some_and(|p| p.device.revoked_at.is_none() && !p.user.blocked);
        assert_eq!(ok, valid(49).await.contains(&token));
    }
    // Many tokens in one call: the list is not limited by a backend's bound parameters.
    let many: Vec<TokenHash> = (0..5000).map(|i| TokenHash::of(&format!("t{i}"))).chain([forever]).collect();
    assert_eq!(store.still_valid(&many, 0).await.unwrap(), vec![forever]);
}

pub async fn story_admin_changes_report_whether_the_user_exists(store: Arc<dyn Store>) {
    let new = NewUser { email: "a@example.com".into(), username: "alice".into(), password_hash: "h1".into() };
    let user = store.create_user(new, 1).await.unwrap();
    assert_eq!(store.all_users().await.unwrap(), vec![user.clone()]);
    assert!(store.set_password(&user.id, "h2").await.unwrap());
    assert!(store.set_user_admin(&user.id, true).await.unwrap());
    let changed = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!((changed.password_hash.as_deref(), changed.is_admin), (Some("h2"), true));
    for missing in [store.set_password("nobody", "h").await, store.set_user_admin("nobody", true).await] {
        assert!(!missing.unwrap());
    }
    let ws = store.ensure_workspace(&user.id, "default", 1).await.unwrap();
    assert!(store.delete_user(&user.id).await.unwrap());
    assert!(!store.delete_user(&user.id).await.unwrap());
    assert!(store.user_by_id(&user.id).await.unwrap().is_none());
    assert!(store.workspace_of(&user.id, &ws.id).await.unwrap().is_none(), "workspaces go with the user");
    assert!(store.all_users().await.unwrap().is_empty());
}
