//! The batched credential check long-lived connections rely on: one call tells which of many
//! tokens still authenticate, by the same rules as a single authentication.

use std::collections::HashSet;

use concord_core::token::TokenHash;
use concord_store::sqlite::SqliteStore;
use concord_store::{AccountStore, DeviceKind, NewDevice, TokenKind};

fn device(user_id: &str) -> NewDevice {
    NewDevice {
        user_id: user_id.to_owned(),
        kind: DeviceKind::Session,
        name: None,
        vault_id: None,
        client_version: None,
        user_agent: None,
    }
}

#[tokio::test]
async fn still_valid_applies_expiry_revocation_and_blocking_to_every_token_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("concord.db")).await.unwrap();
    let alice = store.user_for_verified_email("alice@example.com", 0).await.unwrap();
    let bob = store.user_for_verified_email("bob@example.com", 0).await.unwrap();
    let [forever, until_50, revoked, blocked, unknown] =
        ["forever", "until-50", "revoked", "blocked", "unknown"].map(TokenHash::of);
    for (token, expires) in [(&forever, None), (&until_50, Some(50))] {
        store.create_device_with_token(device(&alice.id), token, TokenKind::Session, expires, 0).await.unwrap();
    }
    let (gone, _) =
        store.create_device_with_token(device(&alice.id), &revoked, TokenKind::Session, None, 0).await.unwrap();
    assert!(store.revoke_device(&alice.id, &gone.id, 1).await.unwrap());
    store.create_device_with_token(device(&bob.id), &blocked, TokenKind::Session, None, 0).await.unwrap();
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
    // Many tokens in one call: the list is not limited by SQLite's bound parameters.
    let many: Vec<TokenHash> = (0..5000).map(|i| TokenHash::of(&format!("t{i}"))).chain([forever]).collect();
    assert_eq!(store.still_valid(&many, 0).await.unwrap(), vec![forever]);
}
