//! Blob stories: references are per scope, re-uploads are idempotent, quotas count the vault and
//! the user and hold under concurrent uploads; a collector's claim on an unreferenced blob holds
//! off every new reference until it is released or expires, and a claim and a reference racing
//! for one blob never both win.

use std::sync::Arc;
use std::time::Duration;

use concord_core::blob::{BlobHash, BlobQuota};
use concord_store::{AddBlobRef, Scope, Store};

/// Long enough never to expire during a story.
const HOUR: Duration = Duration::from_secs(3600);
const QUOTA: BlobQuota = BlobQuota { per_vault: 1 << 30, per_user: 1 << 30 };

fn hash(c: char) -> BlobHash {
    BlobHash::parse(&c.to_string().repeat(64)).unwrap()
}

pub async fn story_references_are_per_scope_and_quotas_count_vault_and_user(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let other = store.user_for_verified_email("b@example.com", 1).await.unwrap();
    let v1 = Scope { user_id: user.id.clone(), vault_id: "v1".into() };
    let v2 = Scope { user_id: user.id.clone(), vault_id: "v2".into() };
    let b = Scope { user_id: other.id.clone(), vault_id: "v1".into() };
    let quota = BlobQuota { per_vault: 100, per_user: 150 };

    assert!(!store.blob_referenced(&hash('a')).await.unwrap());
    // (scope, blob, size) → outcome, in order: each step sees the usage the earlier ones left.
    for (scope, blob, size, expected) in [
        (&v1, 'a', 60, AddBlobRef::Added),
        (&v1, 'a', 60, AddBlobRef::AlreadyReferenced),
        (&v1, 'b', 41, AddBlobRef::QuotaExceeded),
        (&v1, 'b', 40, AddBlobRef::Added),
        // v1 holds 100 of the user's 150.
        (&v2, 'c', 51, AddBlobRef::QuotaExceeded),
        (&v2, 'c', 50, AddBlobRef::Added),
        // Another user's usage is their own.
        (&b, 'a', 60, AddBlobRef::Added),
    ] {
        let got = store.add_blob_ref(scope, &hash(blob), size, quota, 1).await.unwrap();
        assert_eq!(got, expected, "{} {blob} {size}", scope.vault_id);
    }
    for (scope, blob, size) in [(&v1, 'a', Some(60)), (&v2, 'a', None), (&b, 'b', None), (&v2, 'c', Some(50))] {
        assert_eq!(store.blob_size(scope, &hash(blob)).await.unwrap(), size, "{} {blob}", scope.vault_id);
    }
    assert!(store.blob_referenced(&hash('c')).await.unwrap());
    assert!(!store.blob_referenced(&hash('d')).await.unwrap());
    let all = ['a', 'b', 'c'].map(|c| hash(c).to_string()).to_vec();
    assert_eq!(store.referenced_blob_hashes().await.unwrap(), all, "each hash once, ascending");
}

/// Twenty uploads of 10 bytes race for a 100-byte vault: exactly ten fit, whatever the order.
pub async fn story_concurrent_uploads_cannot_overshoot_a_quota(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let scope = Scope { user_id: user.id, vault_id: "v".into() };
    let quota = BlobQuota { per_vault: 100, per_user: 1000 };
    let uploads: Vec<_> = (0..20)
        .map(|i| {
            let (store, scope) = (store.clone(), scope.clone());
            let blob = BlobHash::parse(&format!("{i:064x}")).unwrap();
            tokio::spawn(async move { store.add_blob_ref(&scope, &blob, 10, quota, 1).await.unwrap() })
        })
        .collect();
    let mut added = 0;
    for upload in uploads {
        match upload.await.unwrap() {
            AddBlobRef::Added => added += 1,
            AddBlobRef::QuotaExceeded => {}
            other => panic!("every hash is new and unclaimed: {other:?}"),
        }
    }
    assert_eq!(added, 10);
}

pub async fn story_a_claim_holds_off_references_until_released(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let scope = Scope { user_id: user.id, vault_id: "v".into() };
    assert_eq!(store.add_blob_ref(&scope, &hash('b'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::Added);
    assert_eq!(store.claim_unreferenced_blob(&hash('b'), HOUR).await.unwrap(), None, "b is referenced");

    let claim = store.claim_unreferenced_blob(&hash('a'), HOUR).await.unwrap().expect("a is unreferenced");
    assert_eq!(claim.hash, hash('a'));
    let left = store.blob_claim_left(&claim).await.unwrap().expect("live");
    assert!(left <= HOUR && left > HOUR - Duration::from_secs(60), "{left:?}");
    assert_eq!(store.claim_unreferenced_blob(&hash('a'), HOUR).await.unwrap(), None, "one live claim at a time");
    assert_eq!(store.add_blob_ref(&scope, &hash('a'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::BeingCollected);
    assert_eq!(store.blob_size(&scope, &hash('a')).await.unwrap(), None, "a refused reference writes nothing");
    assert!(!store.blob_referenced(&hash('a')).await.unwrap());
    // Another blob is not held up by a's claim.
    assert_eq!(store.add_blob_ref(&scope, &hash('c'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::Added);

    store.release_blob_claim(&claim).await.unwrap();
    assert_eq!(store.blob_claim_left(&claim).await.unwrap(), None);
    store.release_blob_claim(&claim).await.unwrap();
    assert_eq!(store.add_blob_ref(&scope, &hash('a'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::Added);
    assert_eq!(store.claim_unreferenced_blob(&hash('a'), HOUR).await.unwrap(), None, "referenced again");
}

pub async fn story_an_expired_claim_blocks_nothing_and_is_taken_over(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let scope = Scope { user_id: user.id, vault_id: "v".into() };
    // A claim of no length has expired as soon as it is made: a collector that died holding it.
    let dead = store.claim_unreferenced_blob(&hash('a'), Duration::ZERO).await.unwrap().expect("unreferenced");
    assert_eq!(store.blob_claim_left(&dead).await.unwrap(), None, "expired");
    let taken = store.claim_unreferenced_blob(&hash('a'), HOUR).await.unwrap().expect("an expired claim is taken over");
    assert_ne!(taken.token, dead.token);
    assert_eq!(store.blob_claim_left(&dead).await.unwrap(), None, "the old claim stays lost");
    // Releasing the lost claim leaves the one that took it over.
    store.release_blob_claim(&dead).await.unwrap();
    assert!(store.blob_claim_left(&taken).await.unwrap().is_some());
    assert_eq!(store.add_blob_ref(&scope, &hash('a'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::BeingCollected);
    store.release_blob_claim(&taken).await.unwrap();
    assert_eq!(store.add_blob_ref(&scope, &hash('a'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::Added);

    // An expired claim does not refuse a reference either, and the reference ends it.
    let dead = store.claim_unreferenced_blob(&hash('d'), Duration::ZERO).await.unwrap().expect("unreferenced");
    assert_eq!(store.add_blob_ref(&scope, &hash('d'), 5, QUOTA, 1).await.unwrap(), AddBlobRef::Added);
    assert_eq!(store.blob_claim_left(&dead).await.unwrap(), None);
    assert_eq!(store.claim_unreferenced_blob(&hash('d'), HOUR).await.unwrap(), None, "referenced now");
}

/// For each of 24 blobs a claim and a reference race: exactly one wins, whatever the order. With
/// several writers at once (PostgreSQL) this is what the blob's lock decides.
pub async fn story_a_claim_and_a_reference_racing_never_both_win(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let scope = Scope { user_id: user.id, vault_id: "v".into() };
    let races: Vec<_> = (0..24)
        .map(|i| {
            let blob = BlobHash::parse(&format!("{i:064x}")).unwrap();
            let claim = tokio::spawn({
                let (store, blob) = (store.clone(), blob.clone());
                async move { store.claim_unreferenced_blob(&blob, HOUR).await.unwrap() }
            });
            let reference = tokio::spawn({
                let (store, scope, blob) = (store.clone(), scope.clone(), blob.clone());
                async move { store.add_blob_ref(&scope, &blob, 1, QUOTA, 1).await.unwrap() }
            });
            (blob, claim, reference)
        })
        .collect();
    for (blob, claim, reference) in races {
        let (claim, reference) = (claim.await.unwrap(), reference.await.unwrap());
        match (&claim, reference) {
            (Some(_), AddBlobRef::BeingCollected) => assert!(!store.blob_referenced(&blob).await.unwrap()),
            (None, AddBlobRef::Added) => assert!(store.blob_referenced(&blob).await.unwrap()),
            other => panic!("{blob}: both or neither won: {other:?}"),
        }
    }
}
