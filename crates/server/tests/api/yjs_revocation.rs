//! How Yjs sockets end from the server's side: logout, device deletion and blocking close a
//! device's or user's connections within a second; a peer that stops answering pings is closed
//! within a minute.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{TestApp, json};
use crate::yjs_client::RawClient;

/// How long a revocation may take to close a socket, per the issue.
const WITHIN: Duration = Duration::from_secs(1);

async fn connect(app: &TestApp, token: &str) -> RawClient {
    let mut client = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={token}"))).await;
    client.pump_for(Duration::from_millis(100)).await;
    assert!(client.closed.is_none());
    client
}

async fn assert_closed_soon(client: &mut RawClient, since: Instant) {
    assert_eq!(client.closed_code().await, 1008);
    assert!(since.elapsed() < WITHIN, "closed after {:?}", since.elapsed());
}

async fn me(app: &TestApp, token: &str) -> Value {
    json(app.client.get(app.url("/auth/me")).bearer_auth(token).send().await.unwrap(), 200).await
}

#[tokio::test]
async fn logout_and_device_deletion_close_that_devices_sockets() {
    let app = TestApp::spawn().await;
    let first = app.sign_in("alice@example.com").await;
    // Alone for now, so the only device listed is the first one.
    let first_device = me(&app, &first).await["devices"][0]["id"].as_str().unwrap().to_owned();
    let second = app.sign_in("alice@example.com").await;
    let mut a = connect(&app, &first).await;
    let mut b = connect(&app, &second).await;

    // Deleting the first device (from the second) closes only the first device's socket.
    let started = Instant::now();
    let response =
        app.client.delete(app.url(&format!("/auth/devices/{first_device}"))).bearer_auth(&second).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_closed_soon(&mut a, started).await;
    b.pump_for(Duration::from_millis(200)).await;
    assert!(b.closed.is_none(), "the other device's socket stays open");

    let started = Instant::now();
    let response = app.client.post(app.url("/auth/logout")).bearer_auth(&second).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_closed_soon(&mut b, started).await;
}

#[tokio::test]
async fn blocking_a_user_closes_their_sockets() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let user_id = me(&app, &token).await["user"]["id"].as_str().unwrap().to_owned();
    let mut client = connect(&app, &token).await;
    app.block_user(&user_id).await;
    // From the CLI's exit, which follows its commit by no more than its own shutdown.
    let started = Instant::now();
    assert_closed_soon(&mut client, started).await;
    // And the upgrade is refused from then on.
    assert_eq!(crate::yjs_client::open_ws(&app.ws_url(&format!("/sync/notes?token={token}"))).await.err(), Some(403));
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_within_a_minute() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/notes?token={token}"));
    // Connected, then never polled again: it answers no ping.
    let silent = crate::yjs_client::open_ws(&url).await.unwrap();
    // Connected and reading (which answers pings), but sending nothing of its own.
    let mut quiet = RawClient::connect(&url).await;
    crate::helpers::eventually(|| async { crate::yjs_client::live_counts(&app).await == (2, 1) }).await;
    let started = Instant::now();
    while crate::yjs_client::live_counts(&app).await != (1, 1) {
        assert!(started.elapsed() < Duration::from_secs(60), "dead connection still open after a minute");
        quiet.pump_for(Duration::from_millis(250)).await;
    }
    // The ping-answering client outlived the dead one's 45 s of silence.
    assert!(quiet.closed.is_none());
    assert!(started.elapsed() >= Duration::from_secs(30));
    drop(silent);
}
