//! Document stories: a Yjs document is its snapshot plus the updates appended after it; batches
//! are all or nothing; compaction drops exactly the updates its snapshot covers.

use std::sync::Arc;

use concord_store::{DocSize, NewDocUpdate, Store, WorkspaceRecord};

async fn workspace(store: &dyn Store, email: &str) -> WorkspaceRecord {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    store.ensure_workspace(&user.id, "default", 1).await.unwrap()
}

fn updates(doc_id: i64, payloads: &[&[u8]]) -> Vec<NewDocUpdate> {
    payloads.iter().map(|p| NewDocUpdate { doc_id, data: p.to_vec() }).collect()
}

pub async fn story_a_document_is_its_snapshot_plus_later_updates(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    assert_eq!((doc.snapshot.clone(), doc.updates.len(), doc.last_seq), (None, 0, 0));
    // Loading again finds the same document; another name is another document.
    assert_eq!(store.load_doc(&ws.id, "notes", 2).await.unwrap().id, doc.id);
    let other = store.load_doc(&ws.id, "other", 2).await.unwrap();
    assert_ne!(other.id, doc.id);

    let mut batch = updates(doc.id, &[b"u1", b"u2"]);
    batch.extend(updates(other.id, &[b"o1"]));
    let seqs = store.append_doc_updates(&batch).await.unwrap();
    assert_eq!(seqs.len(), 3, "one seq per update, in order");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let loaded = store.load_doc(&ws.id, "notes", 3).await.unwrap();
    assert_eq!(loaded.updates, vec![b"u1".to_vec(), b"u2".to_vec()]);
    assert_eq!(loaded.last_seq, seqs[1]);
    assert_eq!(store.load_doc(&ws.id, "other", 3).await.unwrap().updates, vec![b"o1".to_vec()]);

    store.compact_doc(doc.id, b"snap", seqs[0]).await.unwrap();
    let seq3 = store.append_doc_updates(&updates(doc.id, &[b"u3"])).await.unwrap()[0];
    let loaded = store.load_doc(&ws.id, "notes", 4).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap"[..]));
    assert_eq!(loaded.updates, vec![b"u2".to_vec(), b"u3".to_vec()]);
    assert_eq!(loaded.last_seq, seq3);
    let size = store.doc_size(doc.id).await.unwrap();
    assert_eq!(size, DocSize { snapshot_bytes: 4, update_bytes: 4, update_count: 2 });

    // Compacting everything leaves only the snapshot, and seqs keep increasing afterwards.
    store.compact_doc(doc.id, b"snap2", seq3).await.unwrap();
    assert_eq!(store.doc_size(doc.id).await.unwrap().update_count, 0);
    let seq4 = store.append_doc_updates(&updates(doc.id, &[b"u4"])).await.unwrap()[0];
    assert!(seq4 > seq3);
    let loaded = store.load_doc(&ws.id, "notes", 5).await.unwrap();
    assert_eq!((loaded.snapshot.as_deref(), loaded.updates), (Some(&b"snap2"[..]), vec![b"u4".to_vec()]));
    // Compacting one document leaves the other alone.
    assert_eq!(store.doc_size(other.id).await.unwrap().update_count, 1);
}

pub async fn story_a_failed_batch_stores_nothing(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    // The second update names a document that does not exist.
    let mut batch = updates(doc.id, &[b"u1"]);
    batch.extend(updates(doc.id + 1000, &[b"x"]));
    assert!(store.append_doc_updates(&batch).await.is_err());
    assert!(store.load_doc(&ws.id, "notes", 2).await.unwrap().updates.is_empty());
    // The store stays usable for the next batch.
    store.ping().await.unwrap();
    assert_eq!(store.append_doc_updates(&updates(doc.id, &[b"u2"])).await.unwrap().len(), 1);
}
