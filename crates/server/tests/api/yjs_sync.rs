//! Yjs sync against real clients: Node `yjs` + `y-websocket` providers and a Diaryx-like client.

use serde_json::json;

use crate::helpers::{TestApp, eventually};
use crate::metrics::scrape;
use crate::yjs_client::{Provider, RawClient, live_counts};

#[tokio::test]
async fn providers_converge_and_a_late_joiner_gets_everything() {
    providers_converge(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn providers_converge(app: TestApp) {
    let alice = app.sign_in("alice@example.com").await;
    let mut a = Provider::start(&app, "notes", &alice).await;
    let mut b = Provider::start(&app, "notes", &alice).await;
    a.synced().await;
    b.synced().await;
    assert_eq!(live_counts(&app).await, (2, 1));

    // Concurrent edits on both sides, before either has seen the other's.
    a.insert("from-a ").await;
    b.insert("from-b ").await;
    a.set("a", json!(1)).await;
    b.set("b", json!({"nested": true})).await;
    let converged = |s: &serde_json::Value| {
        let text = s["text"].as_str().unwrap();
        text.contains("from-a") && text.contains("from-b") && s["map"]["a"] == 1 && s["map"]["b"]["nested"] == true
    };
    let state_a = a.wait_for(converged).await;
    let state_b = b.wait_for(converged).await;
    assert_eq!(state_a["text"], state_b["text"]);
    assert_eq!(state_a["map"], state_b["map"]);

    let mut late = Provider::start(&app, "notes", &alice).await;
    let state_late = late.wait_for(converged).await;
    assert_eq!(state_late["text"], state_a["text"]);
    assert_eq!(state_late["map"], state_a["map"]);

    for p in [a, b, late] {
        p.quit().await;
    }
    // The document unloads once its last client is gone.
    eventually(|| async { live_counts(&app).await == (0, 0) }).await;
}

#[tokio::test]
async fn a_restarted_server_serves_the_full_state() {
    let mut app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let mut writer = Provider::start(&app, "journal", &alice).await;
    writer.synced().await;
    writer.insert("survives restarts").await;
    writer.set("k", json!("v")).await;
    // A second client having received the edits proves the server accepted (and so stored) them.
    let mut witness = Provider::start(&app, "journal", &alice).await;
    witness.wait_for(|s| s["text"] == "survives restarts" && s["map"]["k"] == "v").await;
    writer.quit().await;
    witness.quit().await;

    // SIGTERM with a client still connected: it is told the server is going away, and the
    // process exits cleanly.
    let mut connected = RawClient::connect(&app.ws_url(&format!("/sync/journal?token={alice}"))).await;
    assert!(connected.pump_until(|c| c.text() == "survives restarts").await);
    assert!(app.terminate().await.success());
    assert_eq!(connected.closed_code().await, 1001);

    app.restart().await;
    let mut reader = Provider::start(&app, "journal", &alice).await;
    reader.wait_for(|s| s["text"] == "survives restarts" && s["map"]["k"] == "v").await;
    reader.quit().await;
}

#[tokio::test]
async fn awareness_appears_at_the_other_provider_and_disappears_on_disconnect() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let mut a = Provider::start(&app, "shared", &alice).await;
    let mut b = Provider::start(&app, "shared", &alice).await;
    a.synced().await;
    b.synced().await;
    a.awareness(json!({"user": {"name": "Alice"}, "cursor": 3})).await;
    b.wait_for(|s| s["peers"] == json!([{"user": {"name": "Alice"}, "cursor": 3}])).await;

    // A provider that joins later receives the current states with the server's greeting.
    let mut c = Provider::start(&app, "shared", &alice).await;
    c.wait_for(|s| s["peers"].as_array().unwrap().iter().any(|p| p["user"]["name"] == "Alice")).await;

    a.quit().await;
    b.wait_for(|s| s["peers"] == json!([])).await;
    c.wait_for(|s| s["peers"] == json!([])).await;
    b.quit().await;
    c.quit().await;
}

#[tokio::test]
async fn a_diaryx_like_client_converges_with_a_provider() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let mut provider = Provider::start(&app, "ws1:doc:today.md", &alice).await;
    provider.synced().await;

    // The Diaryx URL form and the y-websocket path form name the same document.
    let url = app.ws_url(&format!("/sync?doc=ws1%3Adoc%3Atoday.md&token={}", alice));
    let mut diaryx = RawClient::connect(&url).await;
    diaryx.insert("typed in diaryx. ").await;
    provider.insert("typed in node. ").await;
    let both = |t: &str| t.contains("typed in diaryx. ") && t.contains("typed in node. ");
    assert!(diaryx.pump_until(|c| both(&c.text())).await);
    let state = provider.wait_for(|s| both(s["text"].as_str().unwrap())).await;
    assert_eq!(state["text"], diaryx.text());
    provider.quit().await;
}

#[tokio::test]
async fn an_idle_room_hibernates_and_still_serves_joiners_edits_and_a_restart() {
    // The idle-compaction job, which also hibernates, finds a document idle after one interval.
    let mut app = TestApp::builder().env("CONCORD_MAINTENANCE_INTERVAL_SECS", "1").spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let hibernations = || async { scrape(&app).await.sum("concord_yjs_hibernations_total", &[]) };
    let mut writer = Provider::start(&app, "sleepy", &alice).await;
    writer.synced().await;
    writer.insert("before").await;
    writer.set("k", json!("v")).await;
    writer.awareness(json!({"user": "writer"})).await;
    let mut witness = Provider::start(&app, "sleepy", &alice).await;
    witness.wait_for(|s| s["text"] == "before" && s["map"]["k"] == "v").await;

    // Both stay connected while the room hibernates.
    eventually(|| async { hibernations().await >= 1.0 }).await;
    assert_eq!(live_counts(&app).await, (2, 1));

    // A joiner of the hibernating room gets the whole document and the writer's awareness.
    let mut joiner = Provider::start(&app, "sleepy", &alice).await;
    joiner
        .wait_for(|s| {
            s["text"] == "before"
                && s["map"]["k"] == "v"
                && s["peers"].as_array().unwrap().contains(&json!({"user": "writer"}))
        })
        .await;
    // An edit wakes it and reaches everyone, on top of what was there.
    writer.insert(" after").await;
    witness.wait_for(|s| s["text"] == "before after").await;
    joiner.wait_for(|s| s["text"] == "before after").await;

    // Idle again it hibernates again; an edit made then survives a restart with everything else.
    let slept = hibernations().await;
    eventually(|| async { hibernations().await > slept }).await;
    joiner.insert("!").await;
    witness.wait_for(|s| s["text"] == "before after!").await;
    for provider in [writer, witness, joiner] {
        provider.quit().await;
    }
    app.restart().await;
    let mut reader = Provider::start(&app, "sleepy", &alice).await;
    reader.wait_for(|s| s["text"] == "before after!" && s["map"]["k"] == "v").await;
    reader.quit().await;
}
