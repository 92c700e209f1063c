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
