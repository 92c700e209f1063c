//! Operation-log stories: gap-free sequences per scope, once-only ops, idempotency replays, pull
//! paging with a consistent head, advisory conflicts, blob checks inside the push, and concurrent
//! pushers.

use std::sync::Arc;

use concord_core::blob::{BlobHash, BlobQuota};
use concord_core::oplog::{PushOp, PushRequest, ValidPush, validate_push};
use concord_store::{AddBlobRef, Conflict, PullSnapshot, PushOutcome, PushResult, Scope, Store};

async fn scope(store: &dyn Store, email: &str, vault: &str) -> Scope {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    Scope { user_id: user.id, vault_id: vault.into() }
}

fn op(id: &str, entity: &str, op_type: &str, last_seen: i64) -> PushOp {
    PushOp {
        op_id: id.into(),
        entity_type: "file".into(),
        entity_id: entity.into(),
        op_type: op_type.into(),
        payload_json: r#"{"path":"x"}"#.into(),
        last_seen_server_seq: last_seen,
        created_at: "2026-07-10T00:00:00Z".into(),
        ..PushOp::default()
    }
}

fn valid(key: &str, ops: Vec<PushOp>) -> ValidPush {
    validate_push(PushRequest { idempotency_key: key.into(), ops, ..PushRequest::default() }).unwrap()
}

fn encode(result: &PushResult) -> Vec<u8> {
    format!("{:?}", result.accepted).into_bytes()
}

/// Pushes at time 100.
async fn push(store: &dyn Store, scope: &Scope, device: &str, push: ValidPush) -> PushOutcome {
    store.push(scope, device, push, encode, 100).await.unwrap()
}

fn committed(outcome: PushOutcome) -> PushResult {
    match outcome {
        PushOutcome::Committed(result) => result,
        other => panic!("expected a commit, got {other:?}"),
    }
}

fn sequences(snapshot: &PullSnapshot) -> Vec<i64> {
    snapshot.ops.iter().map(|o| o.server_sequence).collect()
}

pub async fn story_sequences_are_per_scope_and_resent_ops_are_acknowledged_once(store: Arc<dyn Store>) {
    let store = &*store;
    let a = scope(store, "a@example.com", "v1").await;
    let a2 = scope(store, "a@example.com", "v2").await;
    let b = scope(store, "b@example.com", "v1").await;

    let r = committed(
        push(store, &a, "dev_a", valid("", vec![op("1", "x", "create", 0), op("2", "y", "create", 0)])).await,
    );
    assert_eq!((r.accepted.as_slice(), r.head), (&["1".to_owned(), "2".to_owned()][..], 2));
    // The same op ids in other scopes are different ops with their own sequences.
    assert_eq!(committed(push(store, &a2, "dev_a", valid("", vec![op("1", "x", "create", 0)])).await).head, 1);
    assert_eq!(committed(push(store, &b, "dev_b", valid("", vec![op("1", "x", "create", 0)])).await).head, 1);

    // A re-sent op (response lost) is accepted again but not stored twice; a repeat inside one
    // batch is listed once.
    let resent = vec![op("2", "y", "create", 0), op("3", "z", "create", 0), op("3", "z", "create", 0)];
    let r = committed(push(store, &a, "dev_a", valid("", resent)).await);
    assert_eq!((r.accepted, r.head), (vec!["2".to_owned(), "3".to_owned()], 3));
    let snap = store.pull(&a, 0, 100).await.unwrap();
    assert_eq!((snap.head, sequences(&snap)), (3, vec![1, 2, 3]));
    let stored = &snap.ops[2];
    assert_eq!((stored.op_id.as_str(), stored.device_id.as_str(), stored.entity_id.as_str()), ("3", "dev_a", "z"));
    assert_eq!((stored.payload_json.as_str(), stored.op_type.as_str()), (r#"{"path":"x"}"#, "create"));
    assert_eq!(store.pull(&b, 0, 100).await.unwrap().ops.len(), 1);
    assert_eq!(store.head(&a2).await.unwrap(), 1);
    assert_eq!(store.head(&Scope { user_id: a.user_id.clone(), vault_id: "none".into() }).await.unwrap(), 0);
}

/// A batch is written in one statement per backend (the batch travels as JSON on SQLite, as
/// arrays on PostgreSQL): every field must come back exactly as sent, and a batch that re-sends
/// some stored ops among new ones numbers only the new ones.
pub async fn story_a_full_batch_is_stored_field_for_field_and_resent_parts_take_no_number(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope(store, "a@example.com", "v1").await;
    let tricky = |i: usize| PushOp {
        op_id: format!("op-{i}"),
        entity_type: "file".into(),
        entity_id: format!("notes/ü \\ \"q\" {i}.md"),
        op_type: "update".into(),
        payload_json: format!(r#"{{"path":"ü\\n\"{i}\"","big":9007199254740993,"emoji":"🙂"}}"#),
        client_sequence: i64::MAX - i as i64,
        last_seen_server_seq: 0,
        created_at: format!("2026-07-10T00:00:{:02}Z", i % 60),
    };
    let first: Vec<PushOp> = (0..100).map(tricky).collect();
    let r = committed(push(store, &s, "dev_a", valid("", first.clone())).await);
    assert_eq!((r.accepted.len(), r.head), (100, 100));
    let snap = store.pull(&s, 0, 100).await.unwrap();
    assert_eq!(sequences(&snap), (1..=100).collect::<Vec<_>>());
    for (sent, stored) in first.iter().zip(&snap.ops) {
        assert_eq!(
            (&stored.op_id, &stored.entity_id, &stored.op_type, &stored.payload_json, &stored.created_at),
            (&sent.op_id, &sent.entity_id, &sent.op_type, &sent.payload_json, &sent.created_at)
        );
        assert_eq!((stored.entity_type.as_str(), stored.device_id.as_str()), ("file", "dev_a"));
    }

    // Stored ops interleaved with new ones: the new ones take 101, 102 in request order.
    let mixed = vec![tricky(5), tricky(100), tricky(7), tricky(101), tricky(100)];
    let r = committed(push(store, &s, "dev_b", valid("", mixed)).await);
    assert_eq!(r.accepted, ["op-5", "op-100", "op-7", "op-101"]);
    assert_eq!(r.head, 102);
    let snap = store.pull(&s, 100, 100).await.unwrap();
    let tail: Vec<(i64, &str)> = snap.ops.iter().map(|o| (o.server_sequence, o.op_id.as_str())).collect();
    assert_eq!(tail, [(101, "op-100"), (102, "op-101")]);
    // Nothing new at all: the head stays.
    assert_eq!(committed(push(store, &s, "dev_b", valid("", vec![tricky(1)])).await).head, 102);
}

pub async fn story_pull_pages_through_the_log_with_the_head(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope(store, "a@example.com", "v1").await;
    let ops = (1..=5).map(|i| op(&i.to_string(), "e", "update", 0)).collect();
    committed(push(store, &s, "dev", valid("", ops)).await);
    // (since, limit) → the sequences returned; the head is 5 on every page.
    for (since, limit, expected) in [
        (0, 2, vec![1, 2]),
        (2, 2, vec![3, 4]),
        (4, 2, vec![5]),
        (5, 2, vec![]),
        (0, 100, vec![1, 2, 3, 4, 5]),
        (3, 1, vec![4]),
        (9, 10, vec![]),
    ] {
        let page = store.pull(&s, since, limit).await.unwrap();
        assert_eq!((page.head, sequences(&page)), (5, expected), "since {since}, limit {limit}");
    }
    let empty = store.pull(&scope(store, "b@example.com", "v1").await, 0, 10).await.unwrap();
    assert_eq!((empty.head, empty.ops.len()), (0, 0));
}

pub async fn story_idempotency_key_replays_the_stored_response_per_scope(store: Arc<dyn Store>) {
    let store = &*store;
    let a = scope(store, "a@example.com", "v1").await;
    let b = scope(store, "a@example.com", "v2").await;
    let first = committed(push(store, &a, "dev_a", valid("k", vec![op("1", "x", "create", 0)])).await);
    let again = push(store, &a, "dev_a", valid("k", vec![op("9", "x", "create", 0)])).await;
    assert_eq!(again, PushOutcome::Replayed(encode(&first)));
    assert_eq!(store.head(&a).await.unwrap(), 1, "a replay stores nothing");
    // The key means nothing in another scope.
    assert_eq!(committed(push(store, &b, "dev_a", valid("k", vec![op("9", "x", "create", 0)])).await).accepted, ["9"]);
}

pub async fn story_purged_idempotency_keys_are_new_pushes_and_younger_ones_still_replay(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope(store, "a@example.com", "v1").await;
    committed(push(store, &s, "dev_a", valid("old", vec![op("1", "x", "create", 0)])).await);
    assert_eq!(store.purge_idempotency_keys(100).await.unwrap(), 0, "made at 100, not before it");
    assert_eq!(store.purge_idempotency_keys(101).await.unwrap(), 1);
    let retried = committed(push(store, &s, "dev_a", valid("old", vec![op("2", "x", "update", 1)])).await);
    assert_eq!(retried.accepted, ["2"], "a purged key no longer replays");
    let again = push(store, &s, "dev_a", valid("old", vec![op("3", "x", "update", 2)])).await;
    assert!(matches!(again, PushOutcome::Replayed(_)), "the new record replays: {again:?}");
}

pub async fn story_conflicts_are_advisory(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope(store, "a@example.com", "v1").await;
    committed(push(store, &s, "dev_a", valid("", vec![op("1", "doc", "create", 0)])).await);
    committed(
        push(store, &s, "dev_b", valid("", vec![op("2", "doc", "update", 1), op("3", "doc", "delete", 1)])).await,
    );
    committed(push(store, &s, "dev_b", valid("", vec![op("4", "other", "update", 0)])).await);

    // dev_a last saw sequence 1: dev_b's update (2) conflicts, its delete (3) does not, nor do
    // its own ops or ops on other entities.
    let r = committed(push(store, &s, "dev_a", valid("", vec![op("5", "doc", "update", 1)])).await);
    assert_eq!(r.accepted, ["5"], "the op is stored despite the conflict");
    let conflict = Conflict {
        device_id: "dev_b".into(),
        entity_type: "file".into(),
        entity_id: "doc".into(),
        op_id: "2".into(),
        op_type: "update".into(),
        server_sequence: 2,
    };
    assert_eq!(r.conflicts, [conflict]);
    let none = committed(push(store, &s, "dev_a", valid("", vec![op("6", "doc", "update", 0)])).await);
    assert!(none.conflicts.is_empty(), "last_seen 0 reports nothing");
    assert_eq!(store.head(&s).await.unwrap(), 6);
}

pub async fn story_blob_references_are_checked_per_scope_inside_the_push(store: Arc<dyn Store>) {
    let store = &*store;
    let a = scope(store, "a@example.com", "v1").await;
    let b = scope(store, "b@example.com", "v1").await;
    let hash = BlobHash::parse(&"ab".repeat(32)).unwrap();
    let quota = BlobQuota { per_vault: 1000, per_user: 1000 };
    assert_eq!(store.add_blob_ref(&a, &hash, 10, quota, 1).await.unwrap(), AddBlobRef::Added);
    let file_op = |id: &str, size: u64| PushOp {
        payload_json: format!(r#"{{"path":"p","blob":{{"sha256":"{hash}","size":{size}}}}}"#),
        ..op(id, "p", "create", 0)
    };
    committed(push(store, &a, "dev_a", valid("", vec![file_op("1", 10)])).await);
    let code = |o: PushOutcome| match o {
        PushOutcome::Rejected(e) => e.code,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(code(push(store, &a, "dev_a", valid("", vec![file_op("2", 11)])).await), "invalid_blob_reference");
    assert_eq!(code(push(store, &b, "dev_b", valid("", vec![file_op("1", 10)])).await), "blob_not_owned");
    assert_eq!(store.head(&b).await.unwrap(), 0, "a rejected push writes nothing");
    assert_eq!(store.head(&a).await.unwrap(), 1);
}

/// Four pushers of 25 batches of 4 ops into one scope, with a puller following along: enough
/// interleavings to catch a shared counter or a head read outside the writing transaction, small
/// enough to stay well under a second.
pub async fn story_concurrent_pushers_get_every_op_once_gap_free_in_commit_order(store: Arc<dyn Store>) {
    let s = scope(&*store, "a@example.com", "v1").await;
    const PUSHERS: usize = 4;
    const BATCHES: usize = 25;
    const PER_BATCH: usize = 4;
    const TOTAL: i64 = (PUSHERS * BATCHES * PER_BATCH) as i64;
    let mut tasks = Vec::new();
    for p in 0..PUSHERS {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let ops = (0..PER_BATCH).map(|i| op(&format!("{p}-{b}-{i}"), "e", "update", 0)).collect();
                committed(push(&*store, &s, &format!("dev_{p}"), valid("", ops)).await);
            }
        }));
    }
    // A puller following along must only ever see strictly increasing sequences, each page
    // ending at or below the head read with it.
    let puller = {
        let (store, s) = (store.clone(), s.clone());
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            while cursor < TOTAL {
                let snap = store.pull(&s, cursor, 7).await.unwrap();
                for o in &snap.ops {
                    assert_eq!(o.server_sequence, cursor + 1, "no gaps, no repeats");
                    assert!(o.server_sequence <= snap.head);
                    cursor = o.server_sequence;
                    seen.push(o.op_id.clone());
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = puller.await.unwrap();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as i64, TOTAL);
    let all = store.pull(&s, 0, 1000).await.unwrap();
    assert_eq!((all.head, sequences(&all)), (TOTAL, (1..=TOTAL).collect::<Vec<_>>()));
    // Each pusher's ops appear in the order it pushed them.
    for p in 0..PUSHERS {
        let device = format!("dev_{p}");
        let mine: Vec<&str> = all.ops.iter().filter(|o| o.device_id == device).map(|o| o.op_id.as_str()).collect();
        let expected: Vec<String> =
            (0..BATCHES).flat_map(|b| (0..PER_BATCH).map(move |i| format!("{p}-{b}-{i}"))).collect();
        assert_eq!(mine, expected);
    }
}

/// Many pushes at once into one scope, as SQLite's group commit runs them in one transaction:
/// among them rejected ones (a blob the scope does not own) and one idempotency key sent by
/// several. Each push must get its own outcome: the rejected store nothing and leave no gap, the
/// key commits once and replays the same bytes to the others, every committed op is stored once.
pub async fn story_concurrent_pushes_with_mixed_outcomes_each_get_their_own(store: Arc<dyn Store>) {
    let s = scope(&*store, "a@example.com", "v1").await;
    const PUSHERS: usize = 16;
    let unowned = format!(r#"{{"path":"p","blob":{{"sha256":"{}","size":1}}}}"#, "cd".repeat(32));
    let mut tasks = Vec::new();
    for p in 0..PUSHERS {
        let (store, s, unowned) = (store.clone(), s.clone(), unowned.clone());
        tasks.push(tokio::spawn(async move {
            let ops: Vec<PushOp> = (0..10).map(|i| op(&format!("{p}-{i}"), "e", "update", 0)).collect();
            let request = match p % 4 {
                // A rejected push: its last op references a blob nobody stored.
                0 => {
                    let mut ops = ops;
                    ops[9].payload_json = unowned;
                    valid("", ops)
                }
                // Four pushers send the same key, each with its own ops: one of them commits.
                1 => valid("shared-key", ops),
                _ => valid("", ops),
            };
            (p, push(&*store, &s, &format!("dev_{p}"), request).await)
        }));
    }
    let mut keyed = Vec::new();
    let mut expected = Vec::new();
    for t in tasks {
        let (p, outcome) = t.await.unwrap();
        match (p % 4, outcome) {
            (0, PushOutcome::Rejected(e)) => assert_eq!(e.code, "blob_not_owned"),
            (1, outcome) => keyed.push((p, outcome)),
            (_, PushOutcome::Committed(r)) => {
                assert_eq!(r.accepted.len(), 10);
                expected.extend(r.accepted);
            }
            (p, other) => panic!("pusher {p}: unexpected {other:?}"),
        }
    }
    let first: Vec<&PushResult> = keyed
        .iter()
        .filter_map(|(_, o)| match o {
            PushOutcome::Committed(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(first.len(), 1, "one push of the shared key commits: {keyed:?}");
    expected.extend(first[0].accepted.clone());
    for (p, outcome) in &keyed {
        if !matches!(outcome, PushOutcome::Committed(_)) {
            assert_eq!(outcome, &PushOutcome::Replayed(encode(first[0])), "pusher {p}");
        }
    }
    let snap = store.pull(&s, 0, 1000).await.unwrap();
    assert_eq!(
        sequences(&snap),
        (1..=expected.len() as i64).collect::<Vec<_>>(),
        "gap-free, rejections took no number"
    );
    assert_eq!(snap.head, expected.len() as i64);
    let mut stored: Vec<String> = snap.ops.into_iter().map(|o| o.op_id).collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "every committed op exactly once, nothing of the others");
}
