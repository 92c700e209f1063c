//! The share API: the owner creates, lists and revokes share tokens; bad input gets a precise
//! 400/404 and stores nothing; a share token manages nothing and lists nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json};

/// Creates a share as `token`'s user and returns the response body (status checked).
pub async fn create_share(app: &TestApp, token: &str, body: Value, status: u16) -> Value {
    json(app.client.post(app.url("/api/shares")).bearer_auth(token).json(&body).send().await.unwrap(), status).await
}

/// The id of the user's `default` workspace.
pub async fn default_workspace(app: &TestApp, token: &str) -> String {
    let workspaces =
        json(app.client.get(app.url("/api/workspaces")).bearer_auth(token).send().await.unwrap(), 200).await;
    let default = workspaces.as_array().unwrap().iter().find(|w| w["name"] == "default").unwrap();
    default["id"].as_str().unwrap().to_owned()
}

async fn list(app: &TestApp, token: &str) -> Value {
    json(app.client.get(app.url("/api/shares")).bearer_auth(token).send().await.unwrap(), 200).await
}

#[tokio::test]
async fn the_owner_creates_lists_and_revokes_shares() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let journal = json(app.post_auth("/api/workspaces", &alice, &json!({"name": "journal"})).await, 201).await;
    let journal = journal["id"].as_str().unwrap().to_owned();

    let doc =
        create_share(&app, &alice, json!({"workspace_id": workspace, "doc": "notes", "access": "read-only"}), 201)
            .await;
    assert_eq!(
        (doc["doc"].as_str(), doc["access"].as_str(), &doc["expires_at"]),
        (Some("notes"), Some("read-only"), &Value::Null)
    );
    assert_eq!(doc["token"].as_str().unwrap().len(), 43, "32 random bytes, base64url");
    let whole = create_share(
        &app,
        &alice,
        json!({"workspace_id": journal, "access": "read-write", "expires_in_secs": 3600}),
        201,
    )
    .await;
    assert_eq!(whole["doc"], Value::Null);
    assert_eq!(whole["expires_at"].as_i64().unwrap() - whole["created_at"].as_i64().unwrap(), 3600);
    // A document of the journal is named by its workspace id.
    create_share(
        &app,
        &alice,
        json!({"workspace_id": journal, "doc": format!("{journal}:doc:a.md"), "access": "read-only"}),
        201,
    )
    .await;

    let listed = list(&app, &alice).await;
    let ids: std::collections::BTreeSet<&str> =
        listed["shares"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(doc["id"].as_str().unwrap()) && ids.contains(whole["id"].as_str().unwrap()));
    assert!(listed["shares"].as_array().unwrap().iter().all(|s| s.get("token").is_none()), "tokens are shown once");

    let bob = app.sign_in("bob@example.com").await;
    assert!(list(&app, &bob).await["shares"].as_array().unwrap().is_empty());
    let id = doc["id"].as_str().unwrap();
    let delete = |token: String| {
        let request = app.client.delete(app.url(&format!("/api/shares/{id}"))).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(delete(bob.clone()).await, 404, "only the owner revokes");
    assert_eq!(delete(alice.clone()).await, 204);
    assert_eq!(delete(alice.clone()).await, 404, "revoked once");
    assert_eq!(list(&app, &alice).await["shares"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_share_requests_are_refused_precisely_and_store_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let journal = json(app.post_auth("/api/workspaces", &alice, &json!({"name": "journal"})).await, 201).await;
    let journal = journal["id"].as_str().unwrap().to_owned();
    let cases = [
        (json!({"workspace_id": workspace, "access": "readonly"}), 400, "invalid_access"),
        (json!({"workspace_id": workspace, "access": "read-only", "expires_in_secs": 0}), 400, "invalid_expiry"),
        (json!({"workspace_id": workspace, "access": "read-only", "expires_in_secs": -5}), 400, "invalid_expiry"),
        (
            json!({"workspace_id": workspace, "access": "read-only", "expires_in_secs": 400_000_000}),
            400,
            "invalid_expiry",
        ),
        (json!({"workspace_id": workspace, "doc": "", "access": "read-only"}), 400, "invalid_doc"),
        (
            json!({"workspace_id": workspace, "doc": format!("{journal}:doc:x"), "access": "read-only"}),
            400,
            "doc_not_in_workspace",
        ),
        (json!({"workspace_id": journal, "doc": "plain-name", "access": "read-only"}), 400, "doc_not_in_workspace"),
        (json!({"workspace_id": "no-such-workspace", "access": "read-only"}), 404, "not_found"),
        (json!({"workspace_id": workspace, "access": "read-only", "extra": 1}), 400, "invalid_json"),
        (json!({"access": "read-only"}), 400, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let answer = create_share(&app, &alice, body.clone(), status).await;
        assert_eq!(answer["code"], code, "{body}");
        assert!(answer["error"].is_string());
    }
    // Bob cannot share Alice's workspace.
    let answer = create_share(&app, &bob, json!({"workspace_id": workspace, "access": "read-write"}), 404).await;
    assert_eq!(answer["code"], "not_found");
    assert!(list(&app, &alice).await["shares"].as_array().unwrap().is_empty(), "nothing was stored");
    assert_eq!(app.client.get(app.url("/api/shares")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_share_token_lists_nothing_and_manages_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let share = create_share(&app, &alice, json!({"workspace_id": workspace, "access": "read-write"}), 201).await;
    let token = share["token"].as_str().unwrap();
    for path in ["/api/workspaces", "/api/shares", "/auth/me"] {
        let status = app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap().status();
        assert_eq!(status, 401, "{path}");
    }
    let status = app
        .client
        .post(app.url("/api/shares"))
        .bearer_auth(token)
        .json(&json!({"workspace_id": workspace, "access": "read-write"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}
