//! The account helpers other areas' tests rely on, exercised end to end in dev mode.

use serde_json::json;

use crate::helpers::{TestApp, json};

#[tokio::test]
async fn sign_in_gives_a_session_that_sees_its_user_and_default_workspace() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("Alice@Example.com").await;
    assert_eq!(token.len(), 43);
    let me = json(app.get_auth("/auth/me", &token).await, 200).await;
    assert_eq!(me["user"]["email"], "alice@example.com");
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 1);
    assert_eq!(me["workspaces"][0]["name"], "default");
    assert_eq!(me["devices"].as_array().unwrap().len(), 1);
    assert_eq!(me["devices"][0]["name"], "test");
    assert_eq!(json(app.get("/auth/me").await, 401).await["error"], "API key required");
    assert_eq!(json(app.get_auth("/auth/me", "nope").await, 401).await["error"], "invalid API key");
}

#[tokio::test]
async fn paired_devices_authenticate_on_the_client_routes() {
    let app = TestApp::spawn().await;
    let (device_id, token) = app.paired_device("bob@example.com", "vault-1").await;
    assert!(device_id.starts_with("dev_"));
    assert_eq!(token.len(), 64);
    let me = json(app.get_auth("/api/client/me", &token).await, 200).await;
    assert_eq!(me["device_id"], device_id.as_str());
    assert_eq!(me["username"], "bob.example.com");
    assert_eq!(me["client_version"], "verstak-desktop/v2");
    assert_eq!(me["revoked_at"], "");
    // A second vault for the same person is a second device; registration is not repeated.
    let (second, _) = app.paired_device("bob@example.com", "vault-2").await;
    assert_ne!(second, device_id);
    let login = json(
        app.post_json(
            "/api/v1/auth/login",
            &json!({"username": "bob.example.com", "password": crate::helpers::TEST_PASSWORD}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(login["user_id"], me["user_id"]);
}
