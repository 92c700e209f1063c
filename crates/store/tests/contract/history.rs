//! History stories: versions are listed newest first with label and size, read back per
//! document, bounded by retention in the transaction that adds them, and deleted with their
//! document.

use std::sync::Arc;

use concord_core::history::Retention;
use concord_store::Store;

const FOREVER: Retention = Retention { keep: 1000, max_age_secs: i64::MAX / 2 };

pub async fn story_versions_are_listed_read_back_and_kept_within_retention(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let ws = store.ensure_workspace(&user.id, "default", 1).await.unwrap();
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    let other = store.load_doc(&ws.id, "other", 1).await.unwrap();
    assert!(store.versions_of(&doc.id).await.unwrap().is_empty());

    let first = store.add_version(&doc.id, b"state-1", None, 10, FOREVER).await.unwrap();
    let second = store.add_version(&doc.id, b"state-22", Some("draft"), 20, FOREVER).await.unwrap();
    assert!(second.id > first.id);
    assert_eq!((second.label.as_deref(), second.bytes, second.created_at), (Some("draft"), 8, 20));
    let listed = store.versions_of(&doc.id).await.unwrap();
    assert_eq!(listed, vec![second.clone(), first.clone()], "newest first");
    assert_eq!(store.version_state(&doc.id, first.id).await.unwrap().as_deref(), Some(&b"state-1"[..]));
    assert_eq!(store.version_state(&other.id, first.id).await.unwrap(), None, "a version is its document's");
    assert_eq!(store.history_bytes(&doc.id).await.unwrap(), 15);

    // By count: adding past `keep` deletes the oldest in the same call.
    let keep_two = Retention { keep: 2, max_age_secs: 1_000_000 };
    let third = store.add_version(&doc.id, b"s3", None, 30, keep_two).await.unwrap();
    let ids: Vec<i64> = store.versions_of(&doc.id).await.unwrap().iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![third.id, second.id]);
    // By age: versions older than the bound go, whatever the count.
    let young = Retention { keep: 10, max_age_secs: 15 };
    let fourth = store.add_version(&doc.id, b"s4", None, 40, young).await.unwrap();
    let ids: Vec<i64> = store.versions_of(&doc.id).await.unwrap().iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![fourth.id, third.id]);
    assert!(store.versions_of(&other.id).await.unwrap().is_empty());

    // Many versions under retention keep the history bounded: at most `keep` states.
    for i in 0..40 {
        store
            .add_version(&other.id, &[7u8; 100], None, 100 + i, Retention { keep: 5, max_age_secs: 1_000 })
            .await
            .unwrap();
    }
    assert_eq!(store.versions_of(&other.id).await.unwrap().len(), 5);
    assert_eq!(store.history_bytes(&other.id).await.unwrap(), 500);

    // Versions go with their document; a version of a document that no longer exists is refused.
    assert!(store.delete_doc(&ws.id, "notes").await.unwrap());
    assert_eq!(store.version_state(&doc.id, fourth.id).await.unwrap(), None);
    assert_eq!(store.history_bytes(&doc.id).await.unwrap(), 0);
    assert!(store.add_version(&doc.id, b"x", None, 50, FOREVER).await.is_err());
    assert!(store.versions_of(&doc.id).await.unwrap().is_empty(), "the refused version stored nothing");
}
