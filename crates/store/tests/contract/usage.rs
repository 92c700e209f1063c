//! Usage stories: what a user's vaults and workspaces take up is counted from what they hold, and
//! never includes another user's data.

use std::sync::Arc;

use concord_core::blob::{BlobHash, BlobQuota};
use concord_core::oplog::{PushOp, PushRequest, validate_push};
use concord_store::{DocumentUsage, NewDevice, NewDocUpdate, Scope, Store, TokenKind, VaultUsage};

pub async fn story_usage_counts_a_users_vaults_workspaces_and_documents_only(store: Arc<dyn Store>) {
    let user = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let other = store.user_for_verified_email("b@example.com", 1).await.unwrap();
    let v1 = Scope { user_id: user.id.clone(), vault_id: "v1".into() };
    let quota = BlobQuota { per_vault: 1000, per_user: 1000 };
    let ops = (0..3)
        .map(|i| PushOp {
            op_id: format!("op{i}"),
            entity_type: "file".into(),
            entity_id: format!("e{i}"),
            op_type: "create".into(),
            payload_json: "{}".into(),
            created_at: "2026-07-10T00:00:00Z".into(),
            ..PushOp::default()
        })
        .collect();
    let push = validate_push(PushRequest { ops, ..PushRequest::default() }).unwrap();
    store.push(&v1, "dev", push, |_| Vec::new(), 1).await.unwrap();
    store.add_blob_ref(&v1, &BlobHash::parse(&"a".repeat(64)).unwrap(), 70, quota, 1).await.unwrap();
    store.add_blob_ref(&v1, &BlobHash::parse(&"b".repeat(64)).unwrap(), 30, quota, 1).await.unwrap();
    // A vault known only from a paired device counts too, empty; another user's vault does not.
    let paired =
        NewDevice { vault_id: Some("v2".into()), ..crate::device(&user.id, concord_store::DeviceKind::Client) };
    let hash = concord_core::token::TokenHash::of("t");
    store.create_device_with_token(paired, &hash, TokenKind::Device, None, 1).await.unwrap();
    let theirs = Scope { user_id: other.id.clone(), vault_id: "v1".into() };
    store.add_blob_ref(&theirs, &BlobHash::parse(&"c".repeat(64)).unwrap(), 500, quota, 1).await.unwrap();

    let vaults = store.vault_usage(&user.id).await.unwrap();
    let expected = vec![
        VaultUsage { vault_id: "v1".into(), ops: 3, head: 3, blob_bytes: 100 },
        VaultUsage { vault_id: "v2".into(), ops: 0, head: 0, blob_bytes: 0 },
    ];
    assert_eq!(vaults, expected);

    let ws = store.ensure_workspace(&user.id, "default", 1).await.unwrap();
    store.ensure_workspace(&user.id, "empty", 1).await.unwrap();
    let notes = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    let todo = store.load_doc(&ws.id, "todo", 1).await.unwrap();
    let batch = [(&notes.id, &b"12345"[..]), (&notes.id, b"678"), (&todo.id, b"ab")];
    let batch: Vec<NewDocUpdate> =
        batch.iter().map(|(id, d)| NewDocUpdate { doc_id: (*id).clone(), data: d.to_vec(), at: 1 }).collect();
    let seqs = store.append_doc_updates(&batch).await.unwrap();
    // A snapshot replaces the updates it covers: 4 snapshot bytes plus the 3 left.
    store.compact_doc(&notes.id, b"snap", seqs[0]).await.unwrap();
    let theirs = store.ensure_workspace(&other.id, "default", 1).await.unwrap();
    store.load_doc(&theirs.id, "secret", 1).await.unwrap();

    let workspaces = store.workspace_usage(&user.id).await.unwrap();
    let summary: Vec<(&str, i64, i64)> = workspaces.iter().map(|w| (w.name.as_str(), w.documents, w.bytes)).collect();
    assert_eq!(summary, vec![("default", 2, 9), ("empty", 0, 0)]);
    let documents = store.document_usage(&user.id, 10).await.unwrap();
    let doc = |name: &str, bytes| DocumentUsage { workspace_id: ws.id.clone(), name: name.into(), bytes };
    assert_eq!(documents, vec![doc("notes", 7), doc("todo", 2)]);
    assert_eq!(store.document_usage(&user.id, 1).await.unwrap().len(), 1, "the limit holds");
}
