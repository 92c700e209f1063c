//! Webhook stories: hooks belong to their workspace's owner (or to the server), an event becomes
//! one delivery per hook that subscribes to it and reaches it, a claim holds a delivery from other
//! workers until it lapses, and attempts are logged until delivered or given up.

use std::sync::Arc;

use concord_store::{Attempt, HookOwner, NewEvent, NewWebhook, Reach, Store, WorkspaceRecord};

async fn default_workspace(store: &dyn Store, email: &str) -> WorkspaceRecord {
    let user = store.user_for_verified_email(email, 1).await.unwrap();
    store.ensure_workspace(&user.id, "default", 1).await.unwrap()
}

fn of(w: &WorkspaceRecord) -> HookOwner<'_> {
    HookOwner::Workspace { user_id: &w.user_id, workspace_id: &w.id }
}

fn hook<'a>(id: &'a str, owner: HookOwner<'a>, events: &'a [&'a str]) -> NewWebhook<'a> {
    NewWebhook { id, owner, url: "https://example.com/hook", events, salt: "salt", now: 10 }
}

fn event(id: &str, kind: &'static str, user_id: &str, workspace_id: Option<&str>) -> NewEvent {
    NewEvent {
        id: id.to_owned(),
        kind,
        reach: workspace_id.map_or_else(|| Reach::User(user_id.to_owned()), |w| Reach::Workspace(w.to_owned())),
        body: format!("{{\"id\":\"{id}\"}}"),
        now: 100,
    }
}

pub async fn story_hooks_are_their_owners_and_events_reach_the_hooks_that_subscribe(store: Arc<dyn Store>) {
    let a = default_workspace(&*store, "a@example.com").await;
    let journal = store.create_workspace(&a.user_id, "journal", 1).await.unwrap();
    let b = default_workspace(&*store, "b@example.com").await;

    let docs = &["document.updated"][..];
    let created = store.create_webhook(hook("a1", of(&a), docs)).await.unwrap().unwrap();
    assert_eq!(
        (created.workspace_id.as_deref(), &created.events[..]),
        (Some(a.id.as_str()), &["document.updated".to_owned()][..])
    );
    store.create_webhook(hook("j1", of(&journal), &["document.updated", "oplog.pushed"])).await.unwrap().unwrap();
    store.create_webhook(hook("s1", HookOwner::Server, &["document.updated", "share.created"])).await.unwrap().unwrap();
    // Another user's workspace cannot get a hook, whoever names it.
    let stolen = HookOwner::Workspace { user_id: &b.user_id, workspace_id: &a.id };
    assert!(store.create_webhook(hook("x", stolen, docs)).await.unwrap().is_none());

    let ids = |hooks: Vec<concord_store::WebhookRecord>| hooks.into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(ids(store.webhooks_of(of(&a)).await.unwrap()), ["a1"]);
    assert_eq!(ids(store.webhooks_of(HookOwner::Server).await.unwrap()), ["s1"]);
    assert!(store.webhooks_of(of(&b)).await.unwrap().is_empty());
    assert!(store.webhooks_of(stolen).await.unwrap().is_empty());

    let added = store
        .enqueue_deliveries(&[
            event("e1", "document.updated", &a.user_id, Some(&a.id)),
            event("e2", "oplog.pushed", &a.user_id, None),
            event("e3", "share.created", &b.user_id, Some(&b.id)),
            event("e4", "share.revoked", &a.user_id, Some(&a.id)),
        ])
        .await
        .unwrap();
    // e1 → a1 and s1; e2 → j1 (a workspace of its user); e3 → s1; e4 → nobody subscribes.
    assert_eq!(added, 4);
    let log = |owner, hook: &'static str| {
        let store = store.clone();
        async move {
            let deliveries = store.deliveries_of(owner, hook, 10).await.unwrap().unwrap();
            deliveries.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(log(of(&a), "a1").await, ["e1.a1"]);
    assert_eq!(log(of(&journal), "j1").await, ["e2.j1"]);
    assert_eq!(log(HookOwner::Server, "s1").await, ["e3.s1", "e1.s1"]);
    assert_eq!(store.deliveries_of(of(&b), "a1", 10).await.unwrap(), None, "another's log is not found");
    assert_eq!(store.deliveries_of(HookOwner::Server, "a1", 10).await.unwrap(), None);

    assert!(!store.delete_webhook(of(&b), "a1").await.unwrap(), "only its owner deletes it");
    assert!(!store.delete_webhook(HookOwner::Server, "a1").await.unwrap());
    assert!(store.delete_webhook(of(&a), "a1").await.unwrap());
    assert!(store.webhooks_of(of(&a)).await.unwrap().is_empty());
    // Its deliveries went with it: what is claimed now is the other hooks'.
    let claimed = store.claim_deliveries("c", 100, 200, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(store.delete_workspace(&a.user_id, &journal.id).await.unwrap());
    assert!(store.webhooks_of(of(&journal)).await.unwrap().is_empty(), "gone with its workspace");
}

pub async fn story_claims_hold_deliveries_and_attempts_retry_until_delivered_or_given_up(store: Arc<dyn Store>) {
    let a = default_workspace(&*store, "a@example.com").await;
    store.create_webhook(hook("h", of(&a), &["share.created"])).await.unwrap().unwrap();
    let events: Vec<NewEvent> =
        (1..=3).map(|i| event(&format!("e{i}"), "share.created", &a.user_id, Some(&a.id))).collect();
    assert_eq!(store.enqueue_deliveries(&events).await.unwrap(), 3);

    assert!(store.claim_deliveries("early", 99, 150, 10).await.unwrap().is_empty(), "not due before it was made");
    let first = store.claim_deliveries("one", 100, 150, 2).await.unwrap();
    assert_eq!(first.len(), 2, "at most the limit");
    assert_eq!(
        (first[0].url.as_str(), first[0].salt.as_str(), first[0].attempts),
        ("https://example.com/hook", "salt", 0)
    );
    assert_eq!(first[0].body, format!("{{\"id\":\"{}\"}}", first[0].id.trim_end_matches(".h")));
    let second = store.claim_deliveries("two", 100, 150, 10).await.unwrap();
    assert_eq!(second.len(), 1, "a claimed delivery is not claimed again while its claim holds");
    assert!(first.iter().all(|d| d.id != second[0].id));

    // Delivered, failed with a retry, and given up.
    store.record_attempt(&first[0].id, "one", Attempt::Delivered { status: 204 }, 110).await.unwrap();
    let retry = Attempt::Failed { status: Some(500), error: "HTTP 500", retry_at: Some(120) };
    store.record_attempt(&first[1].id, "one", retry, 110).await.unwrap();
    let give_up = Attempt::Failed { status: None, error: "connection refused", retry_at: None };
    store.record_attempt(&second[0].id, "wrong claim", give_up, 110).await.unwrap();
    assert_eq!(store.claim_deliveries("three", 119, 200, 10).await.unwrap().len(), 0, "not before its retry or lease");
    store.record_attempt(&second[0].id, "two", give_up, 111).await.unwrap();

    let log = store.deliveries_of(of(&a), "h", 10).await.unwrap().unwrap();
    let by_id = |id: &str| log.iter().find(|d| d.id == id).unwrap().clone();
    let delivered = by_id(&first[0].id);
    assert_eq!((delivered.status.as_str(), delivered.attempts, delivered.last_status), ("delivered", 1, Some(204)));
    let pending = by_id(&first[1].id);
    assert_eq!(
        (pending.status.as_str(), pending.attempts, pending.last_error.as_deref(), pending.next_attempt_at),
        ("pending", 1, Some("HTTP 500"), 120)
    );
    let failed = by_id(&second[0].id);
    assert_eq!((failed.status.as_str(), failed.attempts, failed.finished_at), ("failed", 1, Some(111)));

    // The retry comes due with the same id and one attempt behind it.
    let again = store.claim_deliveries("four", 120, 200, 10).await.unwrap();
    assert_eq!((again.len(), again[0].id.as_str(), again[0].attempts), (1, first[1].id.as_str(), 1));
    // A lapsed claim is taken by the next worker.
    let lapsed = store.claim_deliveries("five", 200, 300, 10).await.unwrap();
    assert_eq!(lapsed.len(), 1);
    store.record_attempt(&lapsed[0].id, "four", Attempt::Delivered { status: 200 }, 201).await.unwrap();
    assert_eq!(
        store.deliveries_of(of(&a), "h", 10).await.unwrap().unwrap().iter().filter(|d| d.status == "pending").count(),
        1,
        "the old claim records nothing"
    );

    assert_eq!(store.prune_deliveries(111).await.unwrap(), 1, "finished before 111: the delivered one");
    assert_eq!(store.prune_deliveries(1000).await.unwrap(), 1, "then the given-up one; pending ones stay");
    assert_eq!(store.deliveries_of(of(&a), "h", 10).await.unwrap().unwrap().len(), 1);
}
