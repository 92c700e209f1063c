//! Admin console stories: totals count each thing once, user and device listings filter, sort and
//! page without overlap, deleting a user or a vault frees its blobs for the collector, the audit
//! log filters and ages out, live settings are saved and cleared together.

use std::sync::Arc;

use concord_core::blob::{BlobHash, BlobQuota};
use concord_core::oplog::{PushOp, PushRequest, validate_push};
use concord_core::token::TokenHash;
use concord_store::{
    AddBlobRef, AuditQuery, DeviceKind, DeviceQuery, DeviceState, NewAuditEntry, NewDocUpdate, Paging, PushResult,
    Scope, Store, StoreError, TokenKind, UserFilter, UserQuery, UserSort,
};

use crate::{device, registration};

const ALL: Paging = Paging { offset: 0, limit: 100 };
const QUOTA: BlobQuota = BlobQuota { per_vault: 1 << 20, per_user: 1 << 20 };

fn hash(c: char) -> BlobHash {
    BlobHash::parse(&c.to_string().repeat(64)).unwrap()
}

fn encode(result: &PushResult) -> Vec<u8> {
    format!("{:?}", result.accepted).into_bytes()
}

/// Pushes `n` ops into the scope at time `now`.
async fn push_ops(store: &dyn Store, scope: &Scope, n: usize, now: i64) {
    let ops = (0..n)
        .map(|i| PushOp {
            op_id: format!("{now}-{i}"),
            entity_type: "file".into(),
            entity_id: format!("e{i}"),
            op_type: "create".into(),
            payload_json: r#"{"secret":"payload"}"#.into(),
            created_at: "2026-07-10T00:00:00Z".into(),
            ..PushOp::default()
        })
        .collect();
    let push = validate_push(PushRequest { ops, ..PushRequest::default() }).unwrap();
    store.push(scope, "dev", push, encode, now).await.unwrap();
}

async fn client(store: &dyn Store, user_id: &str, vault: &str, token: &str) -> String {
    let mut new = device(user_id, DeviceKind::Client);
    new.vault_id = Some(vault.into());
    store.create_device_with_token(new, &TokenHash::of(token), TokenKind::Device, None, 1).await.unwrap().0.id
}

pub async fn story_stats_count_each_thing_once(store: Arc<dyn Store>) {
    let store = &*store;
    let now = 10 * 86_400;
    let a = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let b = store.user_for_verified_email("b@example.com", 1).await.unwrap();
    client(store, &a.id, "v1", "t1").await;
    let revoked = client(store, &a.id, "v1", "t2").await;
    store.revoke_device(&a.id, &revoked, 2).await.unwrap();
    let (a1, b1) =
        (Scope { user_id: a.id.clone(), vault_id: "v1".into() }, Scope { user_id: b.id, vault_id: "v1".into() });
    push_ops(store, &a1, 3, 100).await;
    push_ops(store, &b1, 2, now - 60).await;
    // One file shared by two scopes is one file's bytes; a blob-only scope is a vault too.
    let a2 = Scope { user_id: a.id.clone(), vault_id: "v2".into() };
    for scope in [&a1, &b1] {
        assert_eq!(store.add_blob_ref(scope, &hash('a'), 100, QUOTA, 1).await.unwrap(), AddBlobRef::Added);
    }
    store.add_blob_ref(&a2, &hash('b'), 7, QUOTA, 1).await.unwrap();
    let ws = store.ensure_workspace(&a.id, "default", 1).await.unwrap();
    store.load_doc(&ws.id, "d1", 1).await.unwrap();
    store.load_doc(&ws.id, "d2", 1).await.unwrap();

    let stats = store.stats(now).await.unwrap();
    assert_eq!(
        (stats.users, stats.devices, stats.vaults, stats.workspaces, stats.documents),
        (2, 1, 3, 1, 2),
        "{stats:?}"
    );
    assert_eq!((stats.operations, stats.operations_24h, stats.blob_bytes), (5, 2, 107), "{stats:?}");
}

pub async fn story_user_listings_filter_sort_and_page_without_overlap(store: Arc<dyn Store>) {
    let store = &*store;
    let carol = store.create_user(registration("Carol", "carol@example.com"), 3).await.unwrap();
    let bob = store.create_user(registration("bob", "bob@example.com"), 2).await.unwrap();
    let admin = store.upsert_admin("root", "root@example.com", "h", 1).await.unwrap();
    let blocked = store.user_for_verified_email("mallory@example.com", 4).await.unwrap();
    store.set_user_blocked(&blocked.id, true).await.unwrap();
    store.confirm_user(&bob.id).await.unwrap();
    store
        .create_device_with_token(device(&bob.id, DeviceKind::Session), &TokenHash::of("b"), TokenKind::Web, None, 9)
        .await
        .unwrap();

    let ids = |query: UserQuery, page: Paging| async move {
        let page = store.list_users(&query, page).await.unwrap();
        (page.items.iter().map(|u| u.user.id.clone()).collect::<Vec<_>>(), page.total)
    };
    let q = |text: &str, filter, sort| UserQuery { text: text.into(), filter, sort };
    let (all, newest, oldest) = (UserFilter::All, UserSort::Newest, UserSort::Oldest);
    let everyone = vec![blocked.id.clone(), carol.id.clone(), bob.id.clone(), admin.id.clone()];
    assert_eq!(ids(q("", all, newest), ALL).await, (everyone.clone(), 4));
    let reversed: Vec<String> = everyone.iter().rev().cloned().collect();
    assert_eq!(ids(q("", all, oldest), ALL).await, (reversed, 4));
    assert_eq!(
        ids(q("", all, UserSort::Email), ALL).await.0,
        [&bob.id, &carol.id, &blocked.id, &admin.id].map(String::clone)
    );
    // Usernames sort regardless of case; a user without one comes first.
    assert_eq!(
        ids(q("", all, UserSort::Username), ALL).await.0,
        [&blocked.id, &bob.id, &carol.id, &admin.id].map(String::clone)
    );
    for (filter, expected) in [
        (UserFilter::Active, vec![&bob.id, &admin.id]),
        (UserFilter::Blocked, vec![&blocked.id]),
        (UserFilter::Unconfirmed, vec![&carol.id]),
        (UserFilter::Admin, vec![&admin.id]),
    ] {
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        let n = expected.len() as i64;
        assert_eq!(ids(q("", filter, newest), ALL).await, (expected, n), "{filter:?}");
    }
    // Text matches email or username, in any case, literally (`%` is no wildcard).
    assert_eq!(ids(q("CAROL", all, newest), ALL).await, (vec![carol.id.clone()], 1));
    assert_eq!(ids(q("ob@ex", all, newest), ALL).await, (vec![bob.id.clone()], 1));
    assert_eq!(ids(q("%", all, newest), ALL).await, (vec![], 0));
    // Pages of two cover everyone once; the total is the whole match.
    let first = ids(q("", all, newest), Paging { offset: 0, limit: 2 }).await;
    let second = ids(q("", all, newest), Paging { offset: 2, limit: 2 }).await;
    assert_eq!((first.1, second.1), (4, 4));
    assert_eq!([first.0, second.0].concat(), everyone);
    assert_eq!(ids(q("", all, newest), Paging { offset: 10, limit: 2 }).await, (vec![], 4));

    let listed = store.list_users(&q("bob", all, newest), ALL).await.unwrap().items.remove(0);
    assert_eq!((listed.devices, listed.last_seen_at), (1, Some(9)));
}

pub async fn story_editing_a_user_refuses_names_another_user_has(store: Arc<dyn Store>) {
    let alice = store.create_user(registration("alice", "alice@example.com"), 1).await.unwrap();
    store.create_user(registration("bob", "bob@example.com"), 1).await.unwrap();
    assert!(store.edit_user(&alice.id, "alice2@example.com", Some("Alicia")).await.unwrap());
    let edited = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!((edited.email.as_str(), edited.username.as_deref()), ("alice2@example.com", Some("Alicia")));
    for (email, username) in [("bob@example.com", Some("alicia")), ("alice3@example.com", Some("BOB"))] {
        let refused = store.edit_user(&alice.id, email, username).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{email} {username:?}: {refused:?}");
    }
    assert_eq!(store.user_by_id(&alice.id).await.unwrap().unwrap(), edited, "a refused edit changes nothing");
    assert!(store.edit_user(&alice.id, "alice2@example.com", None).await.unwrap());
    assert_eq!(store.user_by_id(&alice.id).await.unwrap().unwrap().username, None);
    assert!(!store.edit_user("nobody", "n@example.com", None).await.unwrap());
}

pub async fn story_device_listings_filter_by_user_kind_and_state(store: Arc<dyn Store>) {
    let store = &*store;
    let a = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let b = store.user_for_verified_email("b@example.com", 1).await.unwrap();
    let a_client = client(store, &a.id, "v1", "t1").await;
    let (a_session, _) = store
        .create_device_with_token(device(&a.id, DeviceKind::Session), &TokenHash::of("t2"), TokenKind::Session, None, 1)
        .await
        .unwrap();
    let b_client = client(store, &b.id, "v1", "t3").await;
    store.revoke_device(&b.id, &b_client, 2).await.unwrap();

    let list = |user_id: Option<&str>, kind, state| {
        let query = DeviceQuery { user_id: user_id.map(str::to_owned), kind, state };
        async move {
            let page = store.list_devices(&query, ALL).await.unwrap();
            let mut ids: Vec<String> = page.items.iter().map(|d| d.device.id.clone()).collect();
            ids.sort();
            assert_eq!(page.total, ids.len() as i64);
            ids
        }
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(list(None, None, DeviceState::All).await, sorted(vec![&a_client, &a_session.id, &b_client]));
    assert_eq!(list(Some(&a.id), None, DeviceState::All).await, sorted(vec![&a_client, &a_session.id]));
    assert_eq!(list(None, Some(DeviceKind::Client), DeviceState::All).await, sorted(vec![&a_client, &b_client]));
    assert_eq!(list(None, None, DeviceState::Revoked).await, vec![b_client.clone()]);
    assert_eq!(list(Some(&b.id), None, DeviceState::Live).await, Vec::<String>::new());
    let of_b = DeviceQuery { user_id: Some(b.id.clone()), ..DeviceQuery::default() };
    assert_eq!(store.list_devices(&of_b, ALL).await.unwrap().items[0].email, "b@example.com");
}

pub async fn story_deleting_a_user_or_a_vault_unreferences_its_blobs(store: Arc<dyn Store>) {
    let store = &*store;
    let a = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let b = store.user_for_verified_email("b@example.com", 1).await.unwrap();
    let (a1, a2, b1) = (
        Scope { user_id: a.id.clone(), vault_id: "v1".into() },
        Scope { user_id: a.id.clone(), vault_id: "v2".into() },
        Scope { user_id: b.id.clone(), vault_id: "v1".into() },
    );
    let a1_client = client(store, &a.id, "v1", "t1").await;
    push_ops(store, &a1, 2, 5).await;
    push_ops(store, &a2, 1, 5).await;
    store.add_blob_ref(&a1, &hash('a'), 10, QUOTA, 1).await.unwrap();
    store.add_blob_ref(&a2, &hash('b'), 20, QUOTA, 1).await.unwrap();
    store.add_blob_ref(&b1, &hash('b'), 20, QUOTA, 1).await.unwrap();

    let vaults = store.list_vaults(ALL).await.unwrap();
    let rows: Vec<(&str, &str, i64, i64, i64, i64, i64)> = vaults
        .items
        .iter()
        .map(|v| (v.email.as_str(), v.vault_id.as_str(), v.operations, v.head, v.blobs, v.blob_bytes, v.devices))
        .collect();
    assert_eq!(
        rows,
        [
            ("a@example.com", "v1", 2, 2, 1, 10, 1),
            ("a@example.com", "v2", 1, 1, 1, 20, 0),
            ("b@example.com", "v1", 0, 0, 1, 20, 0)
        ]
    );
    assert_eq!(vaults.total, 3);

    // Deleting a vault revokes its clients and drops its log and references, nothing else.
    assert_eq!(store.delete_vault(&a.id, "v1", 9).await.unwrap(), Some(vec![a1_client.clone()]));
    assert_eq!(store.delete_vault(&a.id, "nothing", 9).await.unwrap(), None);
    assert!(!store.blob_referenced(&hash('a')).await.unwrap(), "the collector may reclaim it");
    assert_eq!(store.head(&a1).await.unwrap(), 0);
    assert!(store.device_by_id(&a1_client).await.unwrap().unwrap().revoked_at.is_some());
    assert_eq!(store.head(&a2).await.unwrap(), 1);

    // Deleting the user takes the rest of theirs; another user's reference keeps a shared file.
    let ws = store.ensure_workspace(&a.id, "default", 1).await.unwrap();
    assert!(store.delete_user(&a.id).await.unwrap());
    assert!(store.blob_referenced(&hash('b')).await.unwrap(), "still b's");
    assert!(store.blob_size(&a2, &hash('b')).await.unwrap().is_none());
    assert!(store.workspace_by_id(&ws.id).await.unwrap().is_none());
    assert!(store.device_by_id(&a1_client).await.unwrap().is_none());
    assert_eq!(store.list_vaults(ALL).await.unwrap().total, 1);
}

pub async fn story_workspace_listings_count_documents_and_bytes(store: Arc<dyn Store>) {
    let a = store.user_for_verified_email("a@example.com", 1).await.unwrap();
    let ws = store.ensure_workspace(&a.id, "default", 1).await.unwrap();
    let other = store.create_workspace(&a.id, "notes", 1).await.unwrap();
    let d1 = store.load_doc(&ws.id, "d1", 1).await.unwrap();
    let d2 = store.load_doc(&ws.id, "d2", 1).await.unwrap();
    let batch = [
        NewDocUpdate { doc_id: d1.id.clone(), data: vec![1; 10], at: 1 },
        NewDocUpdate { doc_id: d2.id.clone(), data: vec![2; 5], at: 1 },
    ];
    let seqs = store.append_doc_updates(&batch).await.unwrap();
    store.compact_doc(&d2.id, &[3; 7], seqs[1]).await.unwrap();

    let page = store.list_workspaces(ALL).await.unwrap();
    let rows: Vec<(&str, i64, i64)> =
        page.items.iter().map(|w| (w.workspace.name.as_str(), w.documents, w.bytes)).collect();
    assert_eq!(rows, [("default", 2, 17), ("notes", 0, 0)]);
    assert_eq!(page.items[0].email, "a@example.com");
    assert_eq!(store.workspace_by_id(&other.id).await.unwrap(), Some(other.clone()));
    assert!(store.delete_workspace(&a.id, &other.id).await.unwrap());
    assert_eq!(store.list_workspaces(ALL).await.unwrap().total, 1);
}

fn entry(at: i64, event: &str, actor: Option<&str>, subject: Option<&str>, detail: &str) -> NewAuditEntry {
    NewAuditEntry {
        at,
        event: event.into(),
        actor: actor.map(Into::into),
        subject: subject.map(Into::into),
        detail: detail.into(),
        ip: Some("192.0.2.7".into()),
    }
}

pub async fn story_the_audit_log_filters_pages_and_ages_out(store: Arc<dyn Store>) {
    let store = &*store;
    let entries = [
        entry(10, "user_created", Some("root"), Some("alice@example.com"), "by an admin"),
        entry(20, "user_block_changed", Some("root"), Some("Alice@example.com"), "blocked"),
        entry(30, "sign_in_failed", None, Some("bob@example.com"), "wrong password 100%"),
        entry(40, "smtp_settings_updated", Some("root"), None, "host mail.example.com"),
    ];
    for e in &entries {
        store.append_audit(e).await.unwrap();
    }
    let events = |query: AuditQuery, page: Paging| async move {
        let page = store.audit_entries(&query, page).await.unwrap();
        (page.items.iter().map(|e| e.entry.at).collect::<Vec<_>>(), page.total)
    };
    assert_eq!(events(AuditQuery::default(), ALL).await, (vec![40, 30, 20, 10], 4), "newest first");
    let all = store.audit_entries(&AuditQuery::default(), ALL).await.unwrap();
    assert_eq!(all.items[3].entry, entries[0], "stored as given");
    for (query, expected) in [
        (AuditQuery { event: Some("user_created".into()), ..AuditQuery::default() }, vec![10]),
        (AuditQuery { user: Some("alice@EXAMPLE.com".into()), ..AuditQuery::default() }, vec![20, 10]),
        (AuditQuery { user: Some("root".into()), ..AuditQuery::default() }, vec![40, 20, 10]),
        (AuditQuery { text: Some("MAIL.example".into()), ..AuditQuery::default() }, vec![40]),
        (AuditQuery { text: Some("0%".into()), ..AuditQuery::default() }, vec![30]),
        (AuditQuery { text: Some("192.0.2.7".into()), ..AuditQuery::default() }, vec![40, 30, 20, 10]),
        (AuditQuery { since: Some(20), until: Some(40), ..AuditQuery::default() }, vec![30, 20]),
    ] {
        let n = expected.len() as i64;
        assert_eq!(events(query.clone(), ALL).await, (expected, n), "{query:?}");
    }
    assert_eq!(events(AuditQuery::default(), Paging { offset: 1, limit: 2 }).await, (vec![30, 20], 4));
    assert_eq!(store.purge_audit(30).await.unwrap(), 2);
    assert_eq!(events(AuditQuery::default(), ALL).await, (vec![40, 30], 2));
}

pub async fn story_live_settings_are_saved_and_cleared_together(store: Arc<dyn Store>) {
    assert!(store.live_settings().await.unwrap().is_empty());
    store.save_live_settings(&[("server_name", Some("Ours")), ("smtp_port", Some("2525"))], 1).await.unwrap();
    store
        .save_live_settings(&[("server_name", Some("Mine")), ("smtp_port", None), ("missing", None)], 2)
        .await
        .unwrap();
    assert_eq!(store.live_settings().await.unwrap(), vec![("server_name".to_owned(), "Mine".to_owned())]);
}
