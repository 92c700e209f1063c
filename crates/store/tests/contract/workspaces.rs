//! Workspace stories: created once per name, owned by one user, capped per user, deleted with
//! their documents.

use std::sync::Arc;

use concord_store::{Cap, ConflictKind, NewDocUpdate, Store, StoreError, WorkspaceRecord};

async fn default_workspace(store: &dyn Store, email: &str) -> WorkspaceRecord {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    store.ensure_workspace(&user.id, "default", 1).await.unwrap()
}

pub async fn story_workspaces_are_created_once_and_deleted_with_their_documents(store: Arc<dyn Store>) {
    let default = default_workspace(&*store, "a@example.com").await;
    let user = default.user_id.clone();
    assert_eq!(store.ensure_workspace(&user, "default", 2).await.unwrap(), default, "ensured, not created again");
    let ws = store.create_workspace(&user, "journal", 1).await.unwrap();
    assert!(matches!(
        store.create_workspace(&user, "journal", 1).await,
        Err(StoreError::Conflict(ConflictKind::WorkspaceName))
    ));
    let doc = store.load_doc(&ws.id, "notes", 1).await.unwrap();
    store.append_doc_updates(&[NewDocUpdate { doc_id: doc.id.clone(), data: b"u1".to_vec(), at: 1 }]).await.unwrap();

    let intruder = default_workspace(&*store, "b@example.com").await;
    assert!(!store.delete_workspace(&intruder.user_id, &ws.id).await.unwrap());
    assert!(store.delete_workspace(&user, &ws.id).await.unwrap());
    assert!(!store.delete_workspace(&user, &ws.id).await.unwrap());
    assert_eq!(store.doc_size(&doc.id).await.unwrap().update_count, 0);
    let names: Vec<String> = store.workspaces_of(&user).await.unwrap().into_iter().map(|w| w.name).collect();
    assert_eq!(names, vec!["default".to_owned()]);
}

/// The same name is a different workspace for each user, and another user's id reads as absent.
pub async fn story_a_workspace_is_visible_only_to_its_owner(store: Arc<dyn Store>) {
    let a = default_workspace(&*store, "a@example.com").await;
    let b = default_workspace(&*store, "b@example.com").await;
    assert_ne!(a.id, b.id);
    for (user, workspace, visible) in [(&a, &a, true), (&a, &b, false), (&b, &b, true), (&b, &a, false)] {
        let found = store.workspace_of(&user.user_id, &workspace.id).await.unwrap();
        assert_eq!(found.as_ref(), visible.then_some(workspace), "{} asks for {}", user.user_id, workspace.id);
    }
    assert!(store.workspace_of(&a.user_id, "no-such-id").await.unwrap().is_none());
    assert_eq!(store.workspaces_of(&b.user_id).await.unwrap(), vec![b]);
}

/// `default` beyond the cap still works, and so does asking for an existing workspace.
pub async fn story_workspace_caps_spare_default_and_existing_names(store: Arc<dyn Store>) {
    store.set_caps(10, 5).await.unwrap();
    let user = store.user_for_verified_email("c@example.com", 0).await.unwrap();
    for i in 0..5 {
        store.ensure_workspace(&user.id, &format!("w{i}"), 0).await.unwrap();
    }
    assert!(matches!(
        store.ensure_workspace(&user.id, "w5", 0).await,
        Err(StoreError::CapReached(Cap::WorkspacesPerUser))
    ));
    assert!(matches!(
        store.create_workspace(&user.id, "w6", 0).await,
        Err(StoreError::CapReached(Cap::WorkspacesPerUser))
    ));
    store.ensure_workspace(&user.id, "w4", 0).await.unwrap();
    store.ensure_workspace(&user.id, "default", 0).await.unwrap();
    assert_eq!(store.workspaces_of(&user.id).await.unwrap().len(), 6);
}
