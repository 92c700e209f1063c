//! Document stories: a Yjs document is its snapshot plus the updates appended after it; seqs are
//! per document, gap-free and in commit order under concurrent appenders; batches are all or
//! nothing; compaction drops exactly the updates its snapshot covers, and a stale one does nothing.

use std::sync::Arc;

use concord_store::{DocId, DocSize, DocSummary, NewDocUpdate, Store, WorkspaceRecord};

async fn workspace(store: &dyn Store, email: &str) -> WorkspaceRecord {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    store.ensure_workspace(&user.id, "default", 1).await.unwrap()
}

fn updates(doc_id: &DocId, payloads: &[&[u8]]) -> Vec<NewDocUpdate> {
    payloads.iter().map(|p| NewDocUpdate { doc_id: doc_id.clone(), data: p.to_vec(), at: 10 }).collect()
}

pub async fn story_a_document_is_its_snapshot_plus_later_updates(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    assert_eq!((doc.snapshot.clone(), doc.updates.len(), doc.last_seq), (None, 0, 0));
    // Loading again finds the same document; another name is another document.
    assert_eq!(store.load_doc(&ws.id, "notes", 2).await.unwrap().id, doc.id);
    let other = store.load_doc(&ws.id, "other", 2).await.unwrap();
    assert_ne!(other.id, doc.id);

    // Seqs are per document: each counts 1, 2, … whatever the batch mixes.
    let mut batch = updates(&doc.id, &[b"u1"]);
    batch.extend(updates(&other.id, &[b"o1"]));
    batch.extend(updates(&doc.id, &[b"u2"]));
    assert_eq!(store.append_doc_updates(&batch).await.unwrap(), vec![1, 1, 2]);
    let loaded = store.load_doc(&ws.id, "notes", 3).await.unwrap();
    assert_eq!(loaded.updates, vec![b"u1".to_vec(), b"u2".to_vec()]);
    assert_eq!(loaded.last_seq, 2);
    assert_eq!(store.load_doc(&ws.id, "other", 3).await.unwrap().updates, vec![b"o1".to_vec()]);

    assert!(store.compact_doc(&doc.id, b"snap", 1).await.unwrap());
    assert_eq!(store.append_doc_updates(&updates(&doc.id, &[b"u3"])).await.unwrap(), vec![3]);
    let loaded = store.load_doc(&ws.id, "notes", 4).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap"[..]));
    assert_eq!(loaded.updates, vec![b"u2".to_vec(), b"u3".to_vec()]);
    assert_eq!(loaded.last_seq, 3);
    let size = store.doc_size(&doc.id).await.unwrap();
    assert_eq!(size, DocSize { snapshot_bytes: 4, update_bytes: 4, update_count: 2 });

    // Compacting everything leaves only the snapshot, and seqs go on from the head afterwards.
    assert!(store.compact_doc(&doc.id, b"snap2", 3).await.unwrap());
    assert_eq!(store.doc_size(&doc.id).await.unwrap().update_count, 0);
    assert_eq!(store.append_doc_updates(&updates(&doc.id, &[b"u4"])).await.unwrap(), vec![4]);
    let loaded = store.load_doc(&ws.id, "notes", 5).await.unwrap();
    assert_eq!(
        (loaded.snapshot.as_deref(), loaded.updates, loaded.last_seq),
        (Some(&b"snap2"[..]), vec![b"u4".to_vec()], 4)
    );
    // Compacting one document leaves the other alone.
    assert_eq!(store.doc_size(&other.id).await.unwrap().update_count, 1);
}

pub async fn story_a_stale_or_overreaching_compaction_changes_nothing(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    store.append_doc_updates(&updates(&doc.id, &[b"u1", b"u2", b"u3"])).await.unwrap();
    // (snapshot, through, applied): beyond the head would claim seqs never stored; at or below
    // the stored snapshot's seq is a compaction that lost to a later one (another node's).
    let steps: [(&[u8], i64, bool); 5] =
        [(b"x", 4, false), (b"s2", 2, true), (b"old", 1, false), (b"old", 2, false), (b"s3", 3, true)];
    for (snapshot, through, applied) in steps {
        assert_eq!(store.compact_doc(&doc.id, snapshot, through).await.unwrap(), applied, "through {through}");
    }
    let loaded = store.load_doc(&ws.id, "notes", 2).await.unwrap();
    assert_eq!((loaded.snapshot.as_deref(), loaded.updates.len(), loaded.last_seq), (Some(&b"s3"[..]), 0, 3));
}

pub async fn story_racing_compactions_keep_the_latest_snapshot(store: Arc<dyn Store>) {
    // Two compactions of one document race (as two nodes would), 10 rounds of each order: the
    // later snapshot always wins, whichever commits first, and nothing it lacks is deleted.
    let ws = workspace(&*store, "a@example.com").await;
    for round in 0..10i64 {
        let doc = store.load_doc(&ws.id, &format!("notes{round}"), 1).await.unwrap();
        store.append_doc_updates(&updates(&doc.id, &[b"u1", b"u2", b"u3"])).await.unwrap();
        let race = |through: i64, snapshot: &'static [u8]| {
            let (store, id) = (store.clone(), doc.id.clone());
            tokio::spawn(async move { store.compact_doc(&id, snapshot, through).await.unwrap() })
        };
        // Spawned in alternating order, so either may reach the store first.
        let (older, newer) = if round % 2 == 0 {
            let older = race(1, b"s1");
            (older, race(2, b"s2"))
        } else {
            let newer = race(2, b"s2");
            (race(1, b"s1"), newer)
        };
        let (older_applied, newer_applied) = (older.await.unwrap(), newer.await.unwrap());
        assert!(newer_applied, "the later compaction is never refused");
        let loaded = store.load_doc(&ws.id, &format!("notes{round}"), 2).await.unwrap();
        assert_eq!(
            (loaded.snapshot.as_deref(), loaded.updates),
            (Some(&b"s2"[..]), vec![b"u3".to_vec()]),
            "round {round}, older applied: {older_applied}"
        );
    }
}

pub async fn story_concurrent_appenders_get_gap_free_seqs_in_commit_order(store: Arc<dyn Store>) {
    // 4 writers × 20 batches of 2 is enough to interleave on every backend (each batch is its own
    // transaction) while staying well under a second on a loaded machine.
    const WRITERS: u8 = 4;
    const BATCHES: u8 = 20;
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, id) = (store.clone(), doc.id.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for b in 0..BATCHES {
                    let batch = updates(&id, &[&[w, b, 0], &[w, b, 1]]);
                    let seqs = store.append_doc_updates(&batch).await.unwrap();
                    assert_eq!(seqs[1], seqs[0] + 1, "one batch numbers its updates together");
                    seen.push((seqs, (w, b)));
                }
                seen
            })
        })
        .collect();
    let mut by_seq = Vec::new();
    for task in tasks {
        for (seqs, (w, b)) in task.await.unwrap() {
            by_seq.push((seqs[0], vec![w, b, 0]));
            by_seq.push((seqs[1], vec![w, b, 1]));
        }
    }
    by_seq.sort();
    let total = i64::from(WRITERS) * i64::from(BATCHES) * 2;
    assert_eq!(by_seq.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>(), "gap-free");
    // What a load returns is the updates in seq order, and each writer's own appear in its order.
    let loaded = store.load_doc(&ws.id, "notes", 2).await.unwrap();
    assert_eq!(loaded.updates, by_seq.into_iter().map(|(_, data)| data).collect::<Vec<_>>());
    assert_eq!(loaded.last_seq, total);
}

pub async fn story_a_large_interleaved_batch_is_numbered_in_batch_order(store: Arc<dyn Store>) {
    // More updates than one multi-row insert holds on any backend, three documents interleaved:
    // each document's seqs follow on from its head in the order the batch holds its updates.
    let ws = workspace(&*store, "a@example.com").await;
    let docs = [
        store.load_doc(&ws.id, "a", 1).await.unwrap(),
        store.load_doc(&ws.id, "b", 1).await.unwrap(),
        store.load_doc(&ws.id, "c", 1).await.unwrap(),
    ];
    store.append_doc_updates(&updates(&docs[1].id, &[b"b0"])).await.unwrap();
    let batch: Vec<NewDocUpdate> = (0..2500u32)
        .map(|i| NewDocUpdate { doc_id: docs[(i % 3) as usize].id.clone(), data: i.to_be_bytes().to_vec(), at: 10 })
        .collect();
    let seqs = store.append_doc_updates(&batch).await.unwrap();
    let expected: Vec<i64> = (0..2500i64).map(|i| i / 3 + 1 + i64::from(i % 3 == 1)).collect();
    assert_eq!(seqs, expected);
    for (d, doc) in docs.iter().enumerate() {
        let loaded = store.load_doc(&ws.id, ["a", "b", "c"][d], 2).await.unwrap();
        let mut want: Vec<Vec<u8>> =
            (0..2500u32).filter(|i| *i as usize % 3 == d).map(|i| i.to_be_bytes().to_vec()).collect();
        if d == 1 {
            want.insert(0, b"b0".to_vec());
        }
        assert_eq!(loaded.last_seq, want.len() as i64, "document {d}");
        assert_eq!(loaded.updates, want, "document {d}");
        assert_eq!(loaded.id, doc.id);
    }
}

pub async fn story_concurrent_batches_sharing_documents_in_opposite_orders_both_commit(store: Arc<dyn Store>) {
    // Two writers (on PostgreSQL, two nodes) appending to the same two documents, one naming them
    // x-then-y, the other y-then-x: neither waits on the other for ever, and every seq is taken once.
    const ROUNDS: u8 = 20;
    let ws = workspace(&*store, "a@example.com").await;
    let x = store.load_doc(&ws.id, "x", 1).await.unwrap().id;
    let y = store.load_doc(&ws.id, "y", 1).await.unwrap().id;
    let tasks: Vec<_> = [(x.clone(), y.clone()), (y.clone(), x.clone())]
        .into_iter()
        .map(|(first, second)| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let mut batch = updates(&first, &[&[round]]);
                    batch.extend(updates(&second, &[&[round]]));
                    store.append_doc_updates(&batch).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(30), task).await.expect("no deadlock").unwrap();
    }
    for name in ["x", "y"] {
        let loaded = store.load_doc(&ws.id, name, 2).await.unwrap();
        assert_eq!((loaded.last_seq, loaded.updates.len()), (2 * i64::from(ROUNDS), 2 * usize::from(ROUNDS)), "{name}");
    }
}

pub async fn story_a_failed_batch_stores_nothing(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    // The second update names a document whose workspace has been deleted.
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let doomed_ws = store.create_workspace(&user.id, "doomed", 1).await.unwrap();
    let doomed = store.load_doc(&doomed_ws.id, "gone", 1).await.unwrap();
    assert!(store.delete_workspace(&user.id, &doomed_ws.id).await.unwrap());
    let mut batch = updates(&doc.id, &[b"u1"]);
    batch.extend(updates(&doomed.id, &[b"x"]));
    assert!(store.append_doc_updates(&batch).await.is_err());
    assert!(store.load_doc(&ws.id, "notes", 2).await.unwrap().updates.is_empty());
    // The store stays usable for the next batch, and the failed one consumed no seq.
    store.ping().await.unwrap();
    assert_eq!(store.append_doc_updates(&updates(&doc.id, &[b"u2"])).await.unwrap(), vec![1]);
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
            NewDocUpdate { doc_id: notes.id.clone(), data: b"u1".to_vec(), at: 20 },
            NewDocUpdate { doc_id: notes.id.clone(), data: b"u22".to_vec(), at: 30 },
        ])
        .await
        .unwrap();
    store.compact_doc(&notes.id, b"snap", seqs[0]).await.unwrap();
    let listed = store.docs_of(&ws.id).await.unwrap();
    assert_eq!(
        listed,
        vec![
            DocSummary { name: "a-first".into(), bytes: 0, updated_at: 6 },
            DocSummary { name: "notes".into(), bytes: 4 + 3, updated_at: 30 },
        ]
    );
    // An update stamped earlier than the last change (clocks step back) does not move it back.
    store.append_doc_updates(&[NewDocUpdate { doc_id: notes.id.clone(), data: b"x".to_vec(), at: 25 }]).await.unwrap();
    assert_eq!(store.docs_of(&ws.id).await.unwrap()[1].updated_at, 30);
    let found = store.find_doc(&ws.id, "notes").await.unwrap().unwrap();
    assert_eq!((&found.id, found.snapshot.as_deref(), found.updates.len()), (&notes.id, Some(&b"snap"[..]), 2));
    assert_eq!(store.find_doc(&other_ws.id, "notes").await.unwrap(), None, "names are per workspace");

    assert!(!store.delete_doc(&other_ws.id, "notes").await.unwrap(), "another workspace's name deletes nothing");
    assert!(store.delete_doc(&ws.id, "notes").await.unwrap());
    assert!(!store.delete_doc(&ws.id, "notes").await.unwrap());
    assert_eq!(store.find_doc(&ws.id, "notes").await.unwrap(), None);
    assert_eq!(store.docs_of(&ws.id).await.unwrap().len(), 1);
    assert_eq!(store.docs_of(&other_ws.id).await.unwrap().len(), 1);
    // Appending to a deleted document fails; a new one of the same name starts empty.
    assert!(
        store
            .append_doc_updates(&[NewDocUpdate { doc_id: notes.id.clone(), data: b"y".to_vec(), at: 40 }])
            .await
            .is_err()
    );
    let again = store.load_doc(&ws.id, "notes", 50).await.unwrap();
    assert_eq!((again.snapshot, again.updates.len()), (None, 0));
}

pub async fn story_updates_after_a_seq_are_what_a_holder_of_it_lacks(store: Arc<dyn Store>) {
    let ws = workspace(&*store, "a@example.com").await;
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    let other = store.load_doc(&ws.id, "other", 1).await.unwrap();
    let tail = |seq| {
        let store = store.clone();
        let id = doc.id.clone();
        async move {
            let t = store.doc_updates_after(&id, seq).await.unwrap().unwrap();
            (t.snapshot, t.updates, t.last_seq)
        }
    };
    assert_eq!(tail(0).await, (None, vec![], 0), "an empty document lacks nothing");
    store.append_doc_updates(&updates(&doc.id, &[b"u1", b"u2", b"u3"])).await.unwrap();
    store.append_doc_updates(&updates(&other.id, &[b"o1"])).await.unwrap();
    assert_eq!(tail(1).await, (None, vec![b"u2".to_vec(), b"u3".to_vec()], 3), "only this document's, after 1");
    assert_eq!(tail(3).await, (None, vec![], 3), "a holder of the head lacks nothing");
    assert_eq!(tail(0).await.1.len(), 3);

    // After a compaction through 2, a holder of 1 gets the snapshot (2 is gone) and 3; a holder
    // of 2 or more needs no snapshot.
    assert!(store.compact_doc(&doc.id, b"snap", 2).await.unwrap());
    assert_eq!(tail(1).await, (Some(b"snap".to_vec()), vec![b"u3".to_vec()], 3));
    assert_eq!(tail(2).await, (None, vec![b"u3".to_vec()], 3));
    assert_eq!(tail(3).await, (None, vec![], 3));

    // A deleted document has no tail.
    assert!(store.delete_doc(&ws.id, "notes").await.unwrap());
    assert_eq!(store.doc_updates_after(&doc.id, 0).await.unwrap(), None);
}
