//! What a share opens, on both WebSocket protocols: a read-only share receives the document and
//! live edits and shows presence, while its own edits reach neither storage nor other clients; a
//! share opens only its document (or workspace); revoking or expiry closes its connections and
//! refuses new ones.

use serde_json::json;

use crate::helpers::TestApp;
use crate::hocuspocus_client::{HocusSocket, RawHocus, auth, frame};
use crate::shares_api::{create_share, default_workspace};
use crate::yjs_client::{Provider, RawClient, open_ws};

#[tokio::test]
async fn a_read_only_share_reads_live_and_shows_presence_but_never_writes() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let share =
        create_share(&app, &alice, json!({"workspace_id": workspace, "doc": "notes", "access": "read-only"}), 201)
            .await;
    let token = share["token"].as_str().unwrap();

    let mut owner = Provider::start(&app, "notes", &alice).await;
    owner.synced().await;
    owner.insert("original;").await;
    let mut ro_y = Provider::start(&app, "notes", token).await;
    let mut ro_h = HocusSocket::start(&app, "").await;
    ro_h.open("notes", token).await;
    assert_eq!(ro_h.event(|e| e["event"] == "authenticated").await["scope"], "readonly");
    ro_y.wait_for(|s| s["synced"] == true && s["text"] == "original;").await;
    ro_h.wait_for("notes", |s| s["synced"] == true && s["text"] == "original;").await;

    // Their edits stay with them: Hocuspocus rejects them (unsyncedChanges stays above 0).
    ro_y.insert("from y reader;").await;
    ro_h.insert("notes", "from hocus reader;").await;
    ro_y.awareness(json!({"name": "y reader"})).await;
    ro_h.awareness("notes", json!({"name": "hocus reader"})).await;
    owner.insert("live;").await;
    let seen = |s: &serde_json::Value, name: &str| s["peers"].as_array().unwrap().contains(&json!({"name": name}));
    ro_y.wait_for(|s| s["text"].as_str().unwrap().contains("live;")).await;
    let h = ro_h.wait_for("notes", |s| s["text"].as_str().unwrap().contains("live;")).await;
    assert!(h["unsynced"].as_u64().unwrap() >= 1, "the reader's edit was never acknowledged: {h}");
    let o = owner.wait_for(|s| seen(s, "y reader") && seen(s, "hocus reader")).await;
    assert_eq!(o["text"], "original;live;", "no reader's edit reached the owner");

    // Nor storage: a fresh client loads only the owner's edits.
    let mut fresh = RawHocus::connect(&app, "").await;
    let state = fresh.open("notes", &alice).await;
    let doc = yrs::Doc::new();
    {
        use yrs::updates::decoder::Decode;
        use yrs::{GetString, ReadTxn, Transact, Update};
        doc.transact_mut().apply_update(Update::decode_v1(&state).unwrap()).unwrap();
        let txn = doc.transact();
        assert_eq!(txn.get_text("body").unwrap().get_string(&txn), "original;live;");
    }
    owner.quit().await;
    ro_y.quit().await;
    ro_h.quit().await;
}

#[tokio::test]
async fn a_share_opens_its_document_or_workspace_and_nothing_else() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let journal =
        crate::helpers::json(app.post_auth("/api/workspaces", &alice, &json!({"name": "journal"})).await, 201).await;
    let journal = journal["id"].as_str().unwrap().to_owned();
    let doc_share =
        create_share(&app, &alice, json!({"workspace_id": workspace, "doc": "a", "access": "read-write"}), 201).await;
    let journal_share = create_share(&app, &alice, json!({"workspace_id": journal, "access": "read-write"}), 201).await;
    let (doc_token, journal_token) = (doc_share["token"].as_str().unwrap(), journal_share["token"].as_str().unwrap());

    // y-websocket: the upgrade answers 403 for what the share does not open.
    for (token, doc, opens) in [
        (doc_token, "a".to_owned(), true),
        (doc_token, "b".to_owned(), false),
        (doc_token, format!("{journal}:doc:a"), false),
        (journal_token, format!("{journal}:doc:any.md"), true),
        (journal_token, format!("{journal}:workspace"), true),
        (journal_token, "a".to_owned(), false),
    ] {
        let url = app.ws_url(&format!("/sync/{doc}?token={token}"));
        assert_eq!(open_ws(&url).await.map(|_| ()), if opens { Ok(()) } else { Err(403) }, "{doc}");
    }
    // Hocuspocus: PermissionDenied with the reason.
    let mut socket = RawHocus::connect(&app, "").await;
    socket.send(frame("b", &auth(doc_token))).await;
    let denied = socket.next().await.unwrap();
    assert_eq!(denied[..4], frame("b", &[2, 1])[..]);
    assert!(String::from_utf8_lossy(&denied).contains("this share does not open that document"));
    // A read-write share writes, like its owner.
    let mut writer = RawClient::connect(&app.ws_url(&format!("/sync/a?token={doc_token}"))).await;
    writer.insert("shared write;").await;
    let mut owner = RawClient::connect(&app.ws_url(&format!("/sync/a?token={alice}"))).await;
    assert!(owner.pump_until(|c| c.text() == "shared write;").await);
}

#[tokio::test]
async fn revoking_a_share_closes_its_connections_at_once_and_refuses_new_ones() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let share = create_share(&app, &alice, json!({"workspace_id": workspace, "access": "read-only"}), 201).await;
    let token = share["token"].as_str().unwrap();
    let mut ywebsocket = RawClient::connect(&app.ws_url(&format!("/sync/doc?token={token}"))).await;
    let mut hocus = RawHocus::connect(&app, "").await;
    hocus.send(frame("doc", &auth(token))).await;
    assert_eq!(hocus.next().await.unwrap(), frame("doc", &[&[2u8, 2, 8][..], b"readonly"].concat()));
    let owner = RawClient::connect(&app.ws_url(&format!("/sync/doc?token={alice}"))).await;

    let id = share["id"].as_str().unwrap();
    let revoked = app.client.delete(app.url(&format!("/api/shares/{id}"))).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(ywebsocket.closed_code().await, 1008);
    assert_eq!(hocus.close_code().await, 1008);
    assert_eq!(open_ws(&app.ws_url(&format!("/sync/doc?token={token}"))).await.map(|_| ()), Err(401));
    let mut again = RawHocus::connect(&app, "").await;
    again.send(frame("doc", &auth(token))).await;
    assert_eq!(again.next().await.unwrap()[..6], frame("doc", &[2, 1])[..]);
    drop(owner);
}

#[tokio::test]
async fn an_expired_share_is_closed_and_refused() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    // Two seconds: the shortest expiry that leaves time to open the sockets on a loaded machine;
    // connections are re-checked every 500 ms.
    let share = create_share(
        &app,
        &alice,
        json!({"workspace_id": workspace, "access": "read-only", "expires_in_secs": 2}),
        201,
    )
    .await;
    let token = share["token"].as_str().unwrap();
    let mut ywebsocket = RawClient::connect(&app.ws_url(&format!("/sync/doc?token={token}"))).await;
    let mut hocus = RawHocus::connect(&app, "").await;
    hocus.send(frame("doc", &auth(token))).await;
    assert_eq!(hocus.next().await.unwrap()[..6], frame("doc", &[2, 2])[..], "authenticated while live");
    assert_eq!(ywebsocket.closed_code().await, 1008);
    assert_eq!(hocus.close_code().await, 1008);
    assert_eq!(open_ws(&app.ws_url(&format!("/sync/doc?token={token}"))).await.map(|_| ()), Err(401));
}
