//! Document history against real providers: a restore reaches every connected y-websocket
//! provider as an ordinary update and they converge on the version's content; versions are taken
//! automatically at compaction and during activity; retention keeps history within its bound.

use serde_json::{Value, json};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update, WriteTxn};

use crate::helpers::{DEADLINE, TestApp, eventually, json};
use crate::shares_api::{create_share, default_workspace};
use crate::yjs_client::Provider;

fn versions_path(workspace: &str, name: &str) -> String {
    format!("/api/workspaces/{workspace}/docs/{name}/versions")
}

async fn versions(app: &TestApp, token: &str, workspace: &str, name: &str) -> Vec<Value> {
    let listed = json(app.get_auth(&versions_path(workspace, name), token).await, 200).await;
    listed["versions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_restore_reaches_every_provider_and_they_converge_on_the_versions_content() {
    restore_reaches_every_provider(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn restore_reaches_every_provider(app: TestApp) {
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let mut a = Provider::start(&app, "notes", &alice).await;
    let mut b = Provider::start(&app, "notes", &alice).await;
    a.synced().await;
    b.synced().await;
    a.insert("first draft").await;
    a.set("status", json!("draft")).await;
    b.wait_for(|s| s["text"] == "first draft" && s["map"]["status"] == "draft").await;
    // What the server has stored: the label is taken from storage, so wait for the edit there.
    let json_path = format!("/api/workspaces/{workspace}/docs/notes/json");
    eventually(|| async {
        let rendered = json(app.get_auth(&json_path, &alice).await, 200).await;
        rendered["body"] == "first draft" && rendered["m"]["status"] == "draft"
    })
    .await;
    let v1 = json(app.post_auth(&versions_path(&workspace, "notes"), &alice, &json!({"label": "v1"})).await, 201).await;
    assert_eq!((v1["label"].as_str(), v1["bytes"].as_i64().unwrap() > 0), (Some("v1"), true));

    b.insert(", then more").await;
    b.set("status", json!("final")).await;
    b.set("extra", json!(1)).await;
    a.wait_for(|s| s["text"] == "first draft, then more" && s["map"]["extra"] == 1).await;

    // The version's state, fetched, holds the content as it was.
    let id = v1["id"].as_i64().unwrap();
    let fetched = app.get_auth(&format!("{}/{id}", versions_path(&workspace, "notes")), &alice).await;
    assert_eq!(fetched.headers()["content-type"], "application/octet-stream");
    let doc = Doc::new();
    doc.transact_mut().apply_update(Update::decode_v1(&fetched.bytes().await.unwrap()).unwrap()).unwrap();
    assert_eq!(doc.transact().get_text("body").unwrap().get_string(&doc.transact()), "first draft");

    let restored =
        app.post_auth(&format!("{}/{id}/restore", versions_path(&workspace, "notes")), &alice, &json!({})).await;
    assert_eq!(json(restored, 200).await["changed"], true);
    let at_version = |s: &Value| s["text"] == "first draft" && s["map"] == json!({"status": "draft"});
    let state_a = a.wait_for(at_version).await;
    let state_b = b.wait_for(at_version).await;
    assert_eq!(state_a["text"], state_b["text"]);
    // A late joiner loads the restored document; the restore is stored like any update.
    let mut late = Provider::start(&app, "notes", &alice).await;
    late.wait_for(at_version).await;
    // Restoring again changes nothing: the document already equals the version.
    let again =
        app.post_auth(&format!("{}/{id}/restore", versions_path(&workspace, "notes")), &alice, &json!({})).await;
    assert_eq!(json(again, 200).await["changed"], false);

    // Access: a read-only share lists and reads but neither labels nor restores; another user
    // and unknown versions get 404; bad labels 400 and store nothing.
    let share =
        create_share(&app, &alice, json!({"workspace_id": workspace, "doc": "notes", "access": "read-only"}), 201)
            .await;
    let reader = share["token"].as_str().unwrap();
    let count = versions(&app, reader, &workspace, "notes").await.len();
    assert!(count >= 1);
    let refused =
        app.post_auth(&format!("{}/{id}/restore", versions_path(&workspace, "notes")), reader, &json!({})).await;
    assert_eq!(json(refused, 403).await["code"], "read_only");
    let refused = app.post_auth(&versions_path(&workspace, "notes"), reader, &json!({"label": "x"})).await;
    assert_eq!(json(refused, 403).await["code"], "read_only");
    let bob = app.sign_in("bob@example.com").await;
    assert_eq!(app.get_auth(&versions_path(&workspace, "notes"), &bob).await.status(), 404);
    let stolen = app.post_auth(&format!("{}/{id}/restore", versions_path(&workspace, "notes")), &bob, &json!({})).await;
    assert_eq!(stolen.status(), 404);
    for missing in ["999999", "not-a-number"] {
        let path = format!("{}/{missing}", versions_path(&workspace, "notes"));
        assert_eq!(json(app.get_auth(&path, &alice).await, 404).await["code"], "not_found");
    }
    for label in [json!(""), json!("   "), json!("a\u{7}b"), json!("x".repeat(201)), json!(5)] {
        let answer = app.post_auth(&versions_path(&workspace, "notes"), &alice, &json!({"label": label})).await;
        assert_eq!(answer.status(), 400, "{label}");
    }
    assert_eq!(versions(&app, &alice, &workspace, "notes").await.len(), count, "bad labels stored nothing");
    for p in [a, b, late] {
        p.quit().await;
    }
}

#[tokio::test]
async fn versions_are_automatic_and_retention_keeps_history_bounded() {
    // One version per second of activity and three kept: small numbers, so the test is quick,
    // and the bound they give (three copies of the document) is what the assertion checks.
    let app = TestApp::builder().env("HISTORY_INTERVAL_SECS", "1").env("HISTORY_KEEP", "3").spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let path = format!("/api/workspaces/{workspace}/docs/notes");

    // Each post to a closed document loads, applies, compacts and unloads it: a version at each
    // compaction, and retention deletes all but the newest three as they come.
    let doc = Doc::new();
    for i in 0..20 {
        let sv = doc.transact().state_vector();
        {
            let mut txn = doc.transact_mut();
            let body = txn.get_or_insert_text("body");
            let len = body.len(&txn);
            body.insert(&mut txn, len, &format!("{i:02}{}", "x".repeat(500)));
        }
        let update = doc.transact().encode_state_as_update_v1(&sv);
        let post = app.client.post(app.url(&path)).bearer_auth(&alice).body(update).send().await.unwrap();
        assert_eq!(post.status(), 200);
    }
    eventually(|| async { versions(&app, &alice, &workspace, "notes").await.len() == 3 }).await;
    let kept = versions(&app, &alice, &workspace, "notes").await;
    let listed = json(app.get_auth(&format!("/api/workspaces/{workspace}/docs"), &alice).await, 200).await;
    let doc_bytes = listed["documents"][0]["bytes"].as_i64().unwrap();
    let history_bytes: i64 = kept.iter().map(|v| v["bytes"].as_i64().unwrap()).sum();
    assert!(history_bytes <= 3 * doc_bytes, "history {history_bytes} B over 3 x the document's {doc_bytes} B");
    assert!(kept.iter().all(|v| v["label"].is_null()), "automatic versions have no label");
    assert!(kept.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()), "newest first");

    // With a provider editing and no compaction, a version is still taken once the interval has
    // passed: keep editing until a newer version than the newest appears.
    let newest = kept[0]["id"].as_i64().unwrap();
    let mut provider = Provider::start(&app, "notes", &alice).await;
    provider.synced().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        provider.insert("+").await;
        if versions(&app, &alice, &workspace, "notes").await[0]["id"].as_i64().unwrap() > newest {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no version taken during activity");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(versions(&app, &alice, &workspace, "notes").await.len(), 3, "retention holds while editing");
    provider.quit().await;
}
