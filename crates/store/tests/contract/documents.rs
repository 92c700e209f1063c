//! Document stories: a Yjs document is its snapshot plus the updates appended after it; batches
//! are all or nothing; compaction drops exactly the updates its snapshot covers.

use std::sync::Arc;

use concord_store::{DocSize, DocSummary, NewDocUpdate, Store, WorkspaceRecord};

async fn workspace(store: &dyn Store, email: &str) -> WorkspaceRecord {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    store.ensure_workspace(&user.id, "default", 1).await.unwrap()
}

fn updates(doc_id: i64, payloads: &[&[u8]]) -> Vec<NewDocUpdate> {
    payloads.iter().map(|p| NewDocUpdate { doc_id, data: p.to_vec(), at: 10 }).collect()
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

pub async fn story_documents_are_listed_found_and_deleted_by_name(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let other_ws = workspace(&*store, "b@example.com").await;
    assert_eq!(store.find_doc(&ws.id, "notes").await.unwrap(), None, "finding never creates");
    assert!(store.docs_of(&ws.id).await.unwrap().is_empty());
    let notes = store.load_doc(&ws.id, "notes", 5).await.unwrap();
    store.load_doc(&ws.id, "a-first", 6).await.unwrap();
    store.load_doc(&other_ws.id, "theirs", 6).await.unwrap();
    let seqs = store
        .append_doc_updates(&[
            NewDocUpdate { doc_id: notes.id, data: b"u1".to_vec(), at: 20 },
            NewDocUpdate { doc_id: notes.id, data: b"u22".to_vec(), at: 30 },
        ])
        .await
        .unwrap();
    store.compact_doc(notes.id, b"snap", seqs[0]).await.unwrap();
    let listed = store.docs_of(&ws.id).await.unwrap();
    assert_eq!(
        listed,
        vec![
            DocSummary { name: "a-first".into(), bytes: 0, updated_at: 6 },
            DocSummary { name: "notes".into(), bytes: 4 + 3, updated_at: 30 },
        ]
    );
    // An update stamped earlier than the last change (clocks step back) does not move it back.
    store.append_doc_updates(&[NewDocUpdate { doc_id: notes.id, data: b"x".to_vec(), at: 25 }]).await.unwrap();
    assert_eq!(store.docs_of(&ws.id).await.unwrap()[1].updated_at, 30);
    let found = store.find_doc(&ws.id, "notes").await.unwrap().unwrap();
    assert_eq!((found.id, found.snapshot.as_deref(), found.updates.len()), (notes.id, Some(&b"snap"[..]), 2));
    assert_eq!(store.find_doc(&other_ws.id, "notes").await.unwrap(), None, "names are per workspace");

    assert!(!store.delete_doc(&other_ws.id, "notes").await.unwrap(), "another workspace's name deletes nothing");
    assert!(store.delete_doc(&ws.id, "notes").await.unwrap());
    assert!(!store.delete_doc(&ws.id, "notes").await.unwrap());
    assert_eq!(store.find_doc(&ws.id, "notes").await.unwrap(), None);
    assert_eq!(store.docs_of(&ws.id).await.unwrap().len(), 1);
    assert_eq!(store.docs_of(&other_ws.id).await.unwrap().len(), 1);
    // Appending to a deleted document fails; a new one of the same name starts empty.
    assert!(store.append_doc_updates(&[NewDocUpdate { doc_id: notes.id, data: b"y".to_vec(), at: 40 }]).await.is_err());
    let again = store.load_doc(&ws.id, "notes", 50).await.unwrap();
    assert_eq!((again.snapshot, again.updates.len()), (None, 0));
}
