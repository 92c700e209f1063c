//! Who reaches which Yjs document: checks before the upgrade, per-user isolation under every
//! name form, and the workspace endpoints that own documents.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json};
use crate::yjs_client::{RawClient, open_ws};

async fn workspaces(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.client.get(app.url("/api/workspaces")).bearer_auth(token).send().await.unwrap();
    json(response, 200).await.as_array().unwrap().clone()
}

async fn create_workspace(app: &TestApp, token: &str, name: &str) -> reqwest::Response {
    app.client.post(app.url("/api/workspaces")).bearer_auth(token).json(&json!({"name": name})).send().await.unwrap()
}

#[tokio::test]
async fn the_upgrade_is_refused_without_a_doc_or_a_valid_token() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    assert_eq!(open_ws(&app.ws_url(&format!("/sync?token={}", alice))).await.err(), Some(400));
    assert_eq!(open_ws(&app.ws_url("/sync?doc=notes")).await.err(), Some(401));
    assert_eq!(open_ws(&app.ws_url("/sync?doc=notes&token=nope")).await.err(), Some(401));
    assert_eq!(open_ws(&app.ws_url("/sync/notes?token=nope")).await.err(), Some(401));
    // The JSON error shape, seen over plain HTTP.
    let body = json(app.get("/sync?token=x").await, 400).await;
    assert_eq!(body["code"], "missing_doc");
    // The token may also come in the Authorization header.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(app.ws_url("/sync/notes"))
            .unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", alice).parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

#[tokio::test]
async fn another_user_reaches_none_of_the_first_users_documents() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let default_id = workspaces(&app, &alice).await[0]["id"].as_str().unwrap().to_owned();
    let names = [
        "default".to_owned(),
        default_id.clone(),
        format!("{default_id}:workspace"),
        format!("{default_id}:doc:secret.md"),
        format!("workspace:{default_id}"),
        format!("workspace:{default_id}:doc:secret.md"),
    ];
    for name in &names {
        let mut a = RawClient::connect(&app.ws_url(&format!("/sync/{name}?token={}", alice))).await;
        a.insert(&format!("alice secret in {name}")).await;
        // Bob, connecting to the same name: his own, empty document.
        let mut b = RawClient::connect(&app.ws_url(&format!("/sync/{name}?token={}", bob))).await;
        b.pump_for(std::time::Duration::from_millis(300)).await;
        assert_eq!(b.text(), "", "bob read alice's {name}");
        b.insert("bob was here").await;
        // Alice's own second connection sees her text and never Bob's.
        let mut a2 = RawClient::connect(&app.ws_url(&format!("/sync?doc={}&token={}", urlencode(name), alice))).await;
        assert!(a2.pump_until(|c| c.text() == format!("alice secret in {name}")).await);
        a.pump_for(std::time::Duration::from_millis(300)).await;
        assert_eq!(a.text(), format!("alice secret in {name}"), "bob wrote into alice's {name}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn workspaces_are_created_and_deleted_with_their_documents() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let created = json(create_workspace(&app, &alice, "Journal").await, 201).await;
    assert_eq!(created["name"], "Journal");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(json(create_workspace(&app, &alice, "Journal").await, 409).await["code"], "workspace_exists");
    assert_eq!(json(create_workspace(&app, &alice, "  ").await, 400).await["code"], "invalid_name");
    let unauthenticated = app.client.post(app.url("/api/workspaces")).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let name = format!("{id}:doc:entry.md");
    let mut writer = RawClient::connect(&app.ws_url(&format!("/sync/{name}?token={}", alice))).await;
    writer.insert("in the journal").await;
    let mut reader = RawClient::connect(&app.ws_url(&format!("/sync/{name}?token={}", alice))).await;
    assert!(reader.pump_until(|c| c.text() == "in the journal").await);

    // Bob cannot delete it; Alice can, which closes the document's sockets.
    let delete = |token: String| app.client.delete(app.url(&format!("/api/workspaces/{id}"))).bearer_auth(token).send();
    assert_eq!(delete(bob.clone()).await.unwrap().status(), 404);
    assert_eq!(delete(alice.clone()).await.unwrap().status(), 204);
    assert_eq!(delete(alice.clone()).await.unwrap().status(), 404);
    assert_eq!(reader.closed_code().await, 1000);
    assert!(!workspaces(&app, &alice).await.iter().any(|w| w["id"] == id.as_str()));

    // The same name now lives in Alice's default workspace, as a new, empty document.
    let mut again = RawClient::connect(&app.ws_url(&format!("/sync/{name}?token={}", alice))).await;
    again.pump_for(std::time::Duration::from_millis(300)).await;
    assert_eq!(again.text(), "");
}
