//! Tests of the SQLite backend itself rather than of the contract: migrations run on planted data
//! from before them. The contract stories in `contract/` run against SQLite as well.

use concord_store::sqlite::SqliteStore;
use concord_store::{AccountStore, NewUser, StoreError};

fn registration(username: &str, email: &str) -> NewUser {
    NewUser { email: email.to_owned(), username: username.to_owned(), password_hash: "stranger's".to_owned() }
}

#[tokio::test]
async fn the_case_migration_keeps_one_account_per_name_and_the_others_their_email() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    let store = SqliteStore::open(&path).await.unwrap();
    drop(store);
    // Recreate a database from before migration 0030: the index gone, names differing in case.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display())).await.unwrap();
    for sql in [
        "DROP INDEX users_username_nocase",
        "DELETE FROM _sqlx_migrations WHERE version = 30",
        "INSERT INTO users (id, email, username, confirmed, created_at) VALUES
            ('u1', 'early@example.com', 'bob', 0, 1),
            ('u2', 'confirmed@example.com', 'BOB', 1, 2),
            ('u3', 'late@example.com', 'Bob', 1, 3),
            ('u4', 'alone@example.com', 'alice', 0, 4)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let name = |id: &'static str| {
        let store = &store;
        async move { store.user_by_id(id).await.unwrap().unwrap().username }
    };
    assert_eq!(name("u2").await.as_deref(), Some("BOB"), "the earliest confirmed account keeps the name");
    assert_eq!((name("u1").await, name("u3").await), (None, None));
    assert_eq!(name("u4").await.as_deref(), Some("alice"));
    assert_eq!(store.user_by_login("late@example.com").await.unwrap().unwrap().id, "u3", "email login stays");
    assert!(matches!(store.create_user(registration("ALICE", "x@example.com"), 5).await, Err(StoreError::Conflict(_))));
}

#[tokio::test]
async fn the_document_migration_keeps_every_document_and_numbers_its_updates_from_one() {
    use concord_store::DocStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("concord.db");
    // A database migrated up to just before 0160, with documents in the old shape: global
    // AUTOINCREMENT seqs, one document compacted through seq 2 (its updates 1 and 2 deleted).
    let mut before = sqlx::migrate!("./migrations/sqlite");
    before.migrations = before.migrations.iter().filter(|m| m.version < 160).cloned().collect::<Vec<_>>().into();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    before.run(&pool).await.unwrap();
    for sql in [
        "INSERT INTO users (id, email, confirmed, created_at) VALUES ('u1', 'a@example.com', 1, 1)",
        "INSERT INTO workspaces (id, user_id, name, created_at) VALUES ('w1', 'u1', 'default', 1)",
        "INSERT INTO docs (id, workspace_id, name, snapshot, snapshot_seq, created_at) VALUES
            (7, 'w1', 'compacted', x'5353', 2, 1), (8, 'w1', 'fresh', NULL, 0, 1), (9, 'w1', 'empty', NULL, 0, 1)",
        "INSERT INTO doc_updates (seq, doc_id, data) VALUES (3, 8, x'01'), (4, 7, x'02'), (5, 8, x'03'), (6, 7, x'04')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    // (name, snapshot, updates, head): same content, seqs 1..n per document.
    type Expected = (&'static str, Option<&'static [u8]>, Vec<Vec<u8>>, i64);
    let expected: [Expected; 3] = [
        ("compacted", Some(b"SS"), vec![vec![2], vec![4]], 2),
        ("fresh", None, vec![vec![1], vec![3]], 2),
        ("empty", None, vec![], 0),
    ];
    for (name, snapshot, updates, head) in expected {
        let doc = store.load_doc("w1", name, 10).await.unwrap();
        assert_eq!((doc.snapshot.as_deref(), &doc.updates, doc.last_seq), (snapshot, &updates, head), "{name}");
    }
    // Numbering goes on from each document's head, and compaction works on the migrated rows.
    let compacted = store.load_doc("w1", "compacted", 10).await.unwrap();
    let next = concord_store::NewDocUpdate { doc_id: compacted.id.clone(), data: vec![5], at: 1 };
    assert_eq!(store.append_doc_updates(&[next]).await.unwrap(), vec![3]);
    assert!(store.compact_doc(&compacted.id, b"all", 3).await.unwrap());
    let doc = store.load_doc("w1", "compacted", 11).await.unwrap();
    assert_eq!((doc.snapshot.as_deref(), doc.updates.len(), doc.last_seq), (Some(&b"all"[..]), 0, 3));
}
