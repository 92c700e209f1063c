//! Real `@hocuspocus/provider` clients: authentication, sync with y-websocket providers of the
//! same document (text, map, awareness both ways), several documents on one socket, stateless
//! relay, and refusals (a wrong token, another user's document).

use serde_json::json;

use crate::helpers::TestApp;
use crate::hocuspocus_client::HocusSocket;
use crate::yjs_client::Provider;

#[tokio::test]
async fn hocuspocus_and_y_websocket_providers_converge_with_awareness_both_ways() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    // The base URL, as a provider is usually configured.
    let mut hocus = HocusSocket::start(&app, "").await;
    hocus.open("shared", &token).await;
    let authenticated = hocus.event(|e| e["event"] == "authenticated").await;
    assert_eq!(authenticated["scope"], "read-write");
    hocus.wait_for("shared", |s| s["synced"] == true).await;
    let mut ywebsocket = Provider::start(&app, "shared", &token).await;
    ywebsocket.synced().await;

    hocus.insert("shared", "from hocus;").await;
    hocus.set("shared", "h", json!(1)).await;
    ywebsocket.insert("from y-websocket;").await;
    ywebsocket.set("y", json!("two")).await;
    hocus.awareness("shared", json!({"name": "hocus"})).await;
    ywebsocket.awareness(json!({"name": "ywebsocket"})).await;

    let done = |s: &serde_json::Value| {
        let text = s["text"].as_str().unwrap_or_default();
        text.contains("from hocus;") && text.contains("from y-websocket;") && s["map"] == json!({"h": 1, "y": "two"})
    };
    let a = hocus
        .wait_for("shared", |s| done(s) && s["peers"].as_array().unwrap().contains(&json!({"name": "ywebsocket"})))
        .await;
    let b =
        ywebsocket.wait_for(|s| done(s) && s["peers"].as_array().unwrap().contains(&json!({"name": "hocus"}))).await;
    assert_eq!(a["text"], b["text"], "one order of concurrent inserts everywhere");
    hocus.wait_for("shared", |s| s["unsynced"] == 0).await;
    hocus.quit().await;
    ywebsocket.quit().await;
}

#[tokio::test]
async fn two_documents_share_one_socket_and_stay_apart() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    // The explicit path too, and two sockets so each document has a second client.
    let mut one = HocusSocket::start(&app, "/hocuspocus").await;
    let mut two = HocusSocket::start(&app, "").await;
    for socket in [&mut one, &mut two] {
        socket.open("doc-a", &token).await;
        socket.open("doc-b", &token).await;
    }
    one.insert("doc-a", "only a;").await;
    one.insert("doc-b", "only b;").await;
    two.wait_for("doc-a", |s| s["text"] == "only a;" && s["synced"] == true).await;
    two.wait_for("doc-b", |s| s["text"] == "only b;" && s["synced"] == true).await;

    // Stateless messages reach the document's other connections, not the sender, not the other
    // document.
    one.command(json!({"op": "stateless", "doc": "doc-a", "payload": "ping a"})).await;
    let got = two.event(|e| e["event"] == "stateless").await;
    assert_eq!((got["doc"].as_str(), got["payload"].as_str()), (Some("doc-a"), Some("ping a")));

    // Closing one document leaves the other working on the same socket.
    one.command(json!({"op": "close", "doc": "doc-a"})).await;
    one.insert("doc-b", "still;").await;
    two.wait_for("doc-b", |s| s["text"] == "only b;still;").await;
    assert!(!one.seen.iter().chain(&two.seen).any(|e| e["event"] == "stateless" && e["doc"] != "doc-a"));
    assert_eq!(one.seen.iter().filter(|e| e["event"] == "stateless").count(), 0, "no echo to the sender");
    one.quit().await;
    two.quit().await;
}

#[tokio::test]
async fn a_wrong_token_or_another_users_document_is_denied() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let workspaces: serde_json::Value =
        app.client.get(app.url("/api/workspaces")).bearer_auth(&alice).send().await.unwrap().json().await.unwrap();
    let alices = workspaces[0]["id"].as_str().unwrap().to_owned();
    let secret = format!("{alices}:doc:secret.md");
    let mut owner = HocusSocket::start(&app, "").await;
    owner.open(&secret, &alice).await;
    owner.insert(&secret, "alice's words").await;
    owner.wait_for(&secret, |s| s["unsynced"] == 0 && s["synced"] == true).await;

    let mut socket = HocusSocket::start(&app, "").await;
    socket.open("wrong", "not-a-token").await;
    socket.open("empty", "").await;
    let denied = socket.event(|e| e["event"] == "denied" && e["doc"] == "wrong").await;
    assert_eq!(denied["reason"], "invalid API key");
    let denied = socket.event(|e| e["event"] == "denied" && e["doc"] == "empty").await;
    assert_eq!(denied["reason"], "a Concord token is required");
    // Bob names Alice's workspace: the document opens, but in Bob's own default workspace.
    socket.open(&secret, &bob).await;
    let bobs = socket.wait_for(&secret, |s| s["synced"] == true).await;
    assert_eq!(bobs["text"], "", "another user's document is never reached");
    let wrong = socket.dump("wrong").await;
    assert_eq!((wrong["authenticated"].as_bool(), wrong["synced"].as_bool()), (Some(false), Some(false)));
    assert_eq!(
        socket.seen.iter().filter(|e| e["event"] == "denied").count(),
        2,
        "the provider stops after one refusal"
    );
    owner.quit().await;
    socket.quit().await;
}
