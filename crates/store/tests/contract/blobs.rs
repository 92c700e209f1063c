//! Blob stories: references are per scope, re-uploads are idempotent, quotas count the vault and
//! the user and hold under concurrent uploads.

use std::sync::Arc;

use concord_core::blob::{BlobHash, BlobQuota};
use concord_store::{AddBlobRef, Scope, Store};

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
            AddBlobRef::AlreadyReferenced => panic!("every hash is new"),
        }
    }
    assert_eq!(added, 10);
}
