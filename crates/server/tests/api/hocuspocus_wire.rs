//! The Hocuspocus wire byte by byte: the reference session's replies, acknowledgements only for
//! what is stored, clean closes for bad frames that change nothing, the limits y-websocket
//! sockets have, and routing (`/` upgrades only; the page and the y-websocket URLs untouched).

use futures_util::SinkExt;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update, WriteTxn};

use crate::helpers::{TestApp, json};
use crate::hocuspocus_client::{RawHocus, auth, frame};
use crate::yjs_client::RawClient;

/// An Update message inserting `text` into the Y.Text "body" of `doc`.
fn update(doc: &Doc, text: &str) -> Vec<u8> {
    let sv = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        let body = txn.get_or_insert_text("body");
        let len = body.len(&txn);
        body.insert(&mut txn, len, text);
    }
    let update = doc.transact().encode_state_as_update_v1(&sv);
    let mut message = vec![0, 2];
    let mut len = update.len();
    while len >= 0x80 {
        message.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    message.push(len as u8);
    message.extend(update);
    message
}

fn text_of(update: &[u8]) -> String {
    let doc = Doc::new();
    doc.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
    let txn = doc.transact();
    txn.get_text("body").map(|t| t.get_string(&txn)).unwrap_or_default()
}

/// The whole document, as a fresh Hocuspocus client's sync gets it.
async fn content(app: &TestApp, doc: &str, token: &str) -> String {
    text_of(&RawHocus::connect(app, "/hocuspocus").await.open(doc, token).await)
}

#[tokio::test]
async fn the_reference_session_is_answered_byte_for_byte_and_updates_are_acknowledged() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let mut socket = RawHocus::connect(&app, "/hocuspocus").await;
    socket.open("doc-a", &token).await;
    let client = Doc::new();
    socket.send(frame("doc-a", &update(&client, "hi"))).await;
    assert_eq!(socket.next().await.unwrap(), frame("doc-a", &[8, 1]));
    // A second document on the same socket goes through the same handshake.
    socket.open("doc-b", &token).await;
    // Detaching is answered with Close("provider_initiated"); the other document stays open.
    socket.send(frame("doc-b", &[7])).await;
    assert_eq!(socket.next().await.unwrap(), frame("doc-b", &[&[7u8, 18][..], b"provider_initiated"].concat()));
    socket.send(frame("doc-a", &update(&client, " there"))).await;
    assert_eq!(socket.next().await.unwrap(), frame("doc-a", &[8, 1]));

    // A later client of either protocol gets the whole document, also under a session key
    // (`sessionAwareness`: `name\0session` names the document `name`).
    assert_eq!(content(&app, "doc-a", &token).await, "hi there");
    assert_eq!(content(&app, "doc-a\0session-1", &token).await, "hi there");
    let mut ywebsocket = RawClient::connect(&app.ws_url(&format!("/sync/doc-a?token={token}"))).await;
    assert!(ywebsocket.pump_until(|c| c.text() == "hi there").await);
}

#[tokio::test]
async fn bad_frames_close_the_socket_cleanly_and_change_nothing() {
    let app = TestApp::builder().env("SYNC_MAX_FRAME_BYTES", "65536").spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let client = Doc::new();
    let valid = update(&client, "applied;");
    let mut socket = RawHocus::connect(&app, "/hocuspocus").await;
    socket.open("doc", &token).await;
    socket.send(frame("doc", &valid)).await;
    assert_eq!(socket.next().await.unwrap(), frame("doc", &[8, 1]));

    let refused = update(&client, "refused;");
    let with_trailing = [frame("doc", &refused), vec![0]].concat();
    let mut truncated = frame("doc", &refused);
    truncated.pop();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("an update with a trailing byte", with_trailing, 1007),
        ("a truncated update", truncated, 1007),
        ("an undecodable key", vec![0x80], 1007),
        ("an unknown sync type", frame("doc", &[0, 7, 0]), 1007),
        ("an update yrs cannot decode", frame("doc", &[0, 2, 3, 0xff, 0xff, 0xff]), 1007),
        (
            "a frame over SYNC_MAX_FRAME_BYTES",
            frame("doc", &[&[5u8, 0x80, 0x80, 0x08][..], &[b'x'; 131072]].concat()),
            1009,
        ),
    ];
    for (what, bad, code) in cases {
        let mut socket = RawHocus::connect(&app, "/hocuspocus").await;
        socket.open("doc", &token).await;
        socket.send(bad).await;
        assert_eq!(socket.close_code().await, code, "{what}");
    }
    let mut text = RawHocus::connect(&app, "/hocuspocus").await;
    let _ = text.ws.send(tokio_tungstenite::tungstenite::Message::Text("hello".into())).await;
    assert_eq!(text.close_code().await, 1003, "a text frame");
    assert_eq!(content(&app, "doc", &token).await, "applied;", "nothing of a refused frame was applied");
    assert!(app.logs().contains("closing Hocuspocus WebSocket after a bad frame"));
}

#[tokio::test]
async fn frames_before_auth_are_bounded() {
    let app = TestApp::spawn().await;
    let mut socket = RawHocus::connect(&app, "/hocuspocus").await;
    // Upstream's limit is 1000 frames queued before authentication; the next one resets.
    for _ in 0..=1000 {
        socket.send(frame("doc", &[0, 0, 1, 0])).await;
    }
    assert_eq!(socket.close_code().await, 4205);
}

#[tokio::test]
async fn the_per_user_connection_cap_counts_hocuspocus_documents() {
    let app = TestApp::builder().env("SYNC_MAX_CONNECTIONS_PER_USER", "2").spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let _ywebsocket = RawClient::connect(&app.ws_url(&format!("/sync/one?token={token}"))).await;
    let mut socket = RawHocus::connect(&app, "/hocuspocus").await;
    socket.open("two", &token).await;
    socket.send(frame("three", &auth(&token))).await;
    let denied = socket.next().await.unwrap();
    let reason = String::from_utf8_lossy(&denied[9..]).into_owned();
    assert_eq!(denied[..8], frame("three", &[2, 1])[..], "PermissionDenied");
    assert!(reason.contains("too many open documents"), "{reason}");
    // Closing a document frees its place.
    socket.send(frame("two", &[7])).await;
    let _ = socket.next().await.unwrap();
    socket.open("three", &token).await;
}

#[tokio::test]
async fn logout_closes_the_socket_of_its_documents() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let mut socket = RawHocus::connect(&app, "").await;
    socket.open("doc", &token).await;
    let logout = app.client.post(app.url("/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(socket.close_code().await, 1008);
    // The reconnecting provider is then refused.
    let mut again = RawHocus::connect(&app, "").await;
    again.send(frame("doc", &auth(&token))).await;
    assert_eq!(again.next().await.unwrap()[..6], frame("doc", &[2, 1])[..]);
}

#[tokio::test]
async fn only_websocket_upgrades_of_the_root_are_hocuspocus() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    // A plain GET of `/` is whatever the page handler answers (today the 404 page), not 400.
    let page = app.get("/").await;
    assert_ne!(page.status(), 400);
    let body = json(app.get("/hocuspocus").await, 400).await;
    assert_eq!(body["code"], "websocket_required");
    // The y-websocket URL forms still speak y-protocols, not Hocuspocus.
    let mut socket = RawHocus::connect(&app, "").await;
    socket.open("doc", &token).await;
    let mut ywebsocket = RawClient::connect(&app.ws_url(&format!("/sync/doc?token={token}"))).await;
    ywebsocket.insert("y;").await;
    let relayed = socket.next().await.unwrap();
    assert_eq!(relayed[..6], frame("doc", &[0, 2])[..], "a y-websocket edit reaches Hocuspocus as an Update");
    assert_eq!(content(&app, "doc", &token).await, "y;");
}
