//! Misbehaving Yjs clients: malformed, oversized, unknown and text frames, clients that stop
//! reading. Each is dealt with alone; the other clients of the document keep syncing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::ClientID;
use yrs::sync::awareness::AwarenessUpdateEntry;
use yrs::sync::{AwarenessUpdate, Message};
use yrs::updates::encoder::Encode;

use crate::helpers::{TestApp, eventually};
use crate::yjs_client::{RawClient, live_counts};

/// Connects a fresh offender, sends it `frame`, and returns the close code it gets; meanwhile
/// two well-behaved clients keep editing the same document and must converge.
async fn check(app: &TestApp, token: &str, frame: WsMessage, expected_code: Option<u16>) {
    let url = app.ws_url(&format!("/sync/robust?token={token}"));
    let mut a = RawClient::connect(&url).await;
    let mut b = RawClient::connect(&url).await;
    let mut offender = RawClient::connect(&url).await;
    offender.ws.send(frame).await.unwrap();
    match expected_code {
        Some(code) => assert_eq!(offender.closed_code().await, code),
        None => {
            // Ignored: the connection still syncs.
            offender.insert("x").await;
            assert!(offender.pump_until(|_| true).await);
        }
    }
    let marker = format!("ok-{}", expected_code.unwrap_or(0));
    a.insert(&marker).await;
    assert!(b.pump_until(|c| c.text().contains(&marker)).await, "other clients stopped syncing");
}

#[tokio::test]
async fn bad_frames_close_only_the_offending_connection() {
    let app = TestApp::builder().env("SYNC_MAX_FRAME_BYTES", "65536").spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let cases: Vec<(&str, WsMessage, Option<u16>)> = vec![
        ("garbage", WsMessage::Binary(vec![0, 2, 200, 1, 2, 3].into()), Some(1007)),
        ("truncated varint", WsMessage::Binary(vec![0, 0x80].into()), Some(1007)),
        ("bad update", WsMessage::Binary(vec![0, 2, 3, 0xff, 0xff, 0xff].into()), Some(1007)),
        ("oversized", WsMessage::Binary(vec![0; 70_000].into()), Some(1009)),
        ("text", WsMessage::Text("hello".into()), Some(1003)),
        ("unknown type", WsMessage::Binary(vec![42, 3, 1, 2, 3].into()), None),
    ];
    for (what, frame, code) in cases {
        eprintln!("case: {what}");
        check(&app, &alice, frame, code).await;
    }
    app.wait_for_log("closing connection after a malformed frame").await;
}

/// An awareness message from client 4242 with a large state (12 KiB, under the 16 KiB a state may
/// have): relayed to every client of the document and never stored, so it floods readers cheaply.
fn big_awareness(clock: u32) -> Vec<u8> {
    let state = serde_json::json!({ "pad": "z".repeat(12 * 1024) }).to_string();
    let entry = AwarenessUpdateEntry { clock, json: Arc::from(state) };
    Message::Awareness(AwarenessUpdate { clients: HashMap::from([(ClientID::new(4242), entry)]) }).encode_v1()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/flood?token={}", alice));
    // Connected, greeted, then never reads again.
    let mut sleeper = RawClient::connect(&url).await;
    sleeper.pump_for(Duration::from_millis(200)).await;
    let mut writer = RawClient::connect(&url).await;
    let mut watcher = RawClient::connect(&url).await;
    let watching = tokio::spawn(async move {
        assert!(watcher.pump_until(|c| c.text() == "still syncing").await);
    });
    let mut clock = 1;
    while !app.logs().contains("TooSlow") {
        writer.send(big_awareness(clock)).await;
        writer.pump_for(Duration::ZERO).await;
        clock += 1;
        assert!(clock < 20_000, "the sleeper was never disconnected");
    }
    writer.insert("still syncing").await;
    tokio::time::timeout(crate::helpers::DEADLINE, watching).await.unwrap().unwrap();
    // The writer remains connected, the watcher has left, the sleeper was disconnected.
    eventually(|| async { live_counts(&app).await == (1, 1) }).await;
    drop(sleeper);
}

/// The server reads sockets in 4 KiB chunks; a message far larger than that, yet under the frame
/// limit, must still arrive whole and be relayed.
#[tokio::test]
async fn a_message_far_larger_than_the_read_buffer_is_relayed_whole() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/large?token={token}"));
    let mut writer = RawClient::connect(&url).await;
    let mut reader = RawClient::connect(&url).await;
    let text: String = (0..1 << 20).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    writer.insert(&text).await;
    assert!(reader.pump_until(|c| c.text() == text).await, "the 1 MiB edit did not arrive whole");
}
