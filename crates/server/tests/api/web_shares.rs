//! Share links on the dashboard: a person creates a read-only link of one document in a real
//! browser, its token (shown once) reads the document over the HTTP API and cannot write it;
//! revoking it on the dashboard makes the token refused. Names people chose are shown as text,
//! and bad form input is refused with the reason and stores nothing.

use serde_json::json;

use crate::helpers::{TEST_PASSWORD, TestApp, json};
use crate::shares_api::{create_share, default_workspace};
use crate::web_browser::Browser;
use crate::web_client::WebClient;

async fn share_ids(app: &TestApp, token: &str) -> Vec<String> {
    let listed = json(app.get_auth("/api/shares", token).await, 200).await;
    listed["shares"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_read_only_link_made_on_the_dashboard_reads_until_revoked_there() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.paired_device("erin@example.com", "vault-1").await;
    let workspace = default_workspace(&app, &owner).await;
    let path = format!("/api/workspaces/{workspace}/docs/notes");
    let doc = yrs::Doc::new();
    {
        use yrs::{ReadTxn, StateVector, Text, Transact};
        doc.get_or_insert_text("body").insert(&mut doc.transact_mut(), 0, "shared words");
        let update = doc.transact().encode_state_as_update_v1(&StateVector::default());
        let posted = app.client.post(app.url(&path)).bearer_auth(&owner).body(update).send().await.unwrap();
        assert_eq!(posted.status(), 200);
    }
    let browser = Browser::start(412, 915).await;
    browser.goto(&app.url("/login")).await;
    browser.fill("#login", "erin.example.com").await;
    browser.fill("#password", TEST_PASSWORD).await;
    browser.click("form[action='/login'] button").await;
    browser.wait_for_path("/dashboard").await;

    browser.click(&format!("#new-share-{workspace} summary")).await;
    browser.fill(&format!("#share-doc-{workspace}"), "notes").await;
    browser.fill(&format!("#share-expiry-{workspace}"), "7").await;
    browser.click(&format!("#new-share-{workspace} button")).await;
    browser.wait_for_text("Copy its token now").await;
    let token = browser.client.find(fantoccini::Locator::Css("#new-share-token")).await.unwrap().text().await.unwrap();
    assert_eq!(token.len(), 43, "the share token: {token:?}");
    let ids = share_ids(&app, &owner).await;
    assert_eq!(ids.len(), 1);
    let card = browser.client.find(fantoccini::Locator::Css(&format!("#share-{}", ids[0]))).await.unwrap();
    let text = card.text().await.unwrap();
    assert!(text.contains("notes") && text.contains("read-only") && text.contains("expires"), "{text}");
    browser.screenshot("dashboard-share").await;

    // The token reads the document and only reads it.
    let read = app.client.get(app.url(&format!("{path}/json"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<serde_json::Value>().await.unwrap()["body"], "shared words");
    let write = app.client.post(app.url(&path)).bearer_auth(&token).body(vec![0u8, 0]).send().await.unwrap();
    assert_eq!(write.status(), 403);
    let other = format!("/api/workspaces/{workspace}/docs/other/json");
    assert_eq!(app.client.get(app.url(&other)).bearer_auth(&token).send().await.unwrap().status(), 403);

    // Reloaded, the dashboard never shows the token again.
    browser.goto(&app.url("/dashboard")).await;
    assert!(!browser.source().await.contains(&token), "the token is shown once");
    browser.click(&format!("#share-{} button", ids[0])).await;
    browser.wait_for_path("/dashboard?done=share-revoked").await;
    browser.wait_for_text("The share link is revoked").await;
    let refused = app.client.get(app.url(&format!("{path}/json"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(share_ids(&app, &owner).await.is_empty());
    browser.close().await;
}

#[tokio::test]
async fn share_names_are_shown_as_text_and_bad_forms_store_nothing() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.paired_device("finn@example.com", "vault-1").await;
    let workspace = default_workspace(&app, &owner).await;
    let payload = "<script>alert(1)</script>\"><img src=x>";
    create_share(&app, &owner, json!({"workspace_id": workspace, "doc": payload, "access": "read-write"}), 201).await;

    let web = WebClient::new(&app);
    web.get("/login").await;
    let signed_in = web.post_form("/login", &[("login", "finn.example.com"), ("password", TEST_PASSWORD)]).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let page = web.get("/dashboard").await;
    assert!(!page.body.contains(payload) && !page.body.contains("<img src=x"), "{}", page.body);
    assert!(page.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "the name is shown: {}", page.body);

    for (fields, message) in [
        (vec![("workspace_id", workspace.as_str()), ("access", "everything")], "access"),
        (vec![("workspace_id", workspace.as_str()), ("access", "read-only"), ("expires_in_days", "0")], "expiry"),
        (vec![("workspace_id", "not-mine"), ("access", "read-only")], "not found"),
    ] {
        let answer = web.post_form("/dashboard/shares", &fields).await;
        assert!([400, 404].contains(&answer.status), "{fields:?}: {}", answer.status);
        assert!(answer.body.to_lowercase().contains(message), "{fields:?} says why: {}", answer.body);
    }
    let revoke = web.post_form("/dashboard/shares/revoke", &[("share_id", "nothing")]).await;
    assert_eq!(revoke.status, 404);
    assert_eq!(share_ids(&app, &owner).await.len(), 1, "nothing stored, nothing revoked");
}
