//! Clients that try to make the server hold memory for them on a Yjs WebSocket: pings without
//! ever reading the pongs, and awareness states for client ids without number. Each stays under a
//! stated memory bound, the offender is closed or ignored, and well-behaved clients of the same
//! document keep syncing meanwhile.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, eventually};
use crate::yjs_client::{Provider, RawClient, RawSocket, live_counts, ws_frame};

/// What the server's peak memory may grow by during an attack. Without the limits, each attack
/// below costs well over this (the pongs of 64 MiB of pings, or tens of megabytes of stored
/// awareness entries); with them it costs little more than the socket buffers.
const GROWTH_BOUND_KIB: u64 = 24 * 1024;

/// The awareness flood ends with one 12 MB frame, which the server holds whole (perhaps twice:
/// tungstenite's read buffer and the assembled message) before it refuses it, so its bound adds
/// that much; storing the flood instead costs hundreds of megabytes (+650 MB measured).
const AWARENESS_GROWTH_BOUND_KIB: u64 = GROWTH_BOUND_KIB + 2 * 12 * 1024;

/// Bytes of pings the test sends at most. A server that keeps reading pings while their pongs
/// cannot be written would take all of it (the 8M pings grew it by almost 1 GB); one that
/// answers each ping before reading on stops reading once the kernel's socket buffers (a few MiB
/// on loopback) are full.
const FLOOD_LIMIT: usize = 64 << 20;

#[tokio::test]
async fn a_client_that_pings_and_never_reads_is_closed_and_memory_stays_bounded() {
    // A short send timeout, so the flooder is closed within the test's patience; the mechanism is
    // the same at the default minute.
    let app = TestApp::builder().env("SYNC_SEND_TIMEOUT_SECS", "2").spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let path = format!("/sync/pings?token={token}");
    let mut a = RawClient::connect(&app.ws_url(&path)).await;
    let mut b = RawClient::connect(&app.ws_url(&path)).await;
    a.insert("before ").await;
    assert!(b.pump_until(|c| c.text() == "before ").await);
    let baseline = app.peak_rss_kib();
    let descriptors = app.open_fds();

    // On a document of its own, so nothing but pongs is ever queued for it.
    let mut flooder = RawSocket::connect(&app, &format!("/sync/pings-alone?token={token}")).await;
    // Pings with the largest payload a control frame may have, so each pong is as large as can be.
    let batch: Vec<u8> = (0..512).flat_map(|_| ws_frame(0x89, &[b'p'; 125], true)).collect();
    let mut sent = 0;
    loop {
        // A write that waits is fine (the server has stopped reading, as it should); the wait
        // must end with the server closing the connection, well within the deadline.
        match tokio::time::timeout(crate::helpers::DEADLINE, flooder.tcp.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!("the flooder was neither read nor closed"),
        }
        assert!(sent < FLOOD_LIMIT, "the server read {sent} bytes of pings from a client that reads nothing");
        // The well-behaved clients keep syncing while the flood goes on.
        if sent % (batch.len() * 256) == 0 {
            let marker = format!("{sent} ");
            a.insert(&marker).await;
            assert!(b.pump_until(|c| c.text().contains(&marker)).await, "syncing stopped during the flood");
        }
    }
    // The flooder is closed (its connection no longer counts) and the others still sync.
    eventually(|| async { live_counts(&app).await == (2, 1) }).await;
    // Its descriptor is released too (the slack is for the status requests' own connections).
    eventually(|| async { app.open_fds() <= descriptors + 2 }).await;
    a.insert("after").await;
    assert!(b.pump_until(|c| c.text().ends_with("after")).await);
    let grown = app.peak_rss_kib().saturating_sub(baseline);
    eprintln!("peak memory grew by {grown} KiB after {sent} bytes of pings");
    assert!(grown < GROWTH_BOUND_KIB, "peak memory grew by {grown} KiB after {sent} bytes of pings");
}

/// One awareness message carrying `entries` (client id, clock, JSON state or `None` for `null`).
fn awareness(entries: Vec<(u64, u32, Option<String>)>) -> Vec<u8> {
    use yrs::encoding::write::Write;
    let mut payload = Vec::new();
    payload.write_var(entries.len());
    for (id, clock, state) in entries {
        payload.write_var(id);
        payload.write_var(clock);
        payload.write_string(state.as_deref().unwrap_or("null"));
    }
    let mut frame = Vec::new();
    frame.write_var(1u32);
    Write::write_buf(&mut frame, &payload);
    frame
}

#[tokio::test]
async fn awareness_floods_are_bounded_and_real_presence_keeps_working() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let mut honest_a = Provider::start(&app, "presence", &token).await;
    let mut honest_b = Provider::start(&app, "presence", &token).await;
    honest_a.synced().await;
    honest_b.synced().await;
    honest_a.awareness(json!({"user": "a"})).await;
    honest_b.wait_for(|s| s["peers"].as_array().unwrap().contains(&json!({"user": "a"}))).await;
    let baseline = app.peak_rss_kib();

    let mut attacker = RawClient::connect(&app.ws_url(&format!("/sync/presence?token={token}"))).await;
    let attack = async {
        // 200,000 removals of client ids never seen, 1000 per frame: nothing to remove, nothing kept.
        for frame in 0..200u64 {
            attacker.send(awareness((0..1000).map(|i| (1_000_000 + frame * 1000 + i, 5, None)).collect())).await;
        }
        // 200,000 new states of 200 bytes, 1000 per frame: the connection may hold 8 of them.
        let state = json!({ "pad": "s".repeat(190) }).to_string();
        for frame in 0..200u64 {
            let entries = (0..1000).map(|i| (5_000_000 + frame * 1000 + i, 1, Some(state.clone()))).collect();
            attacker.send(awareness(entries)).await;
        }
        // A million removals in one 12 MB frame: more entries than a room holds, refused whole.
        attacker.send(awareness((0..1_000_000u64).map(|i| (9_000_000 + i, 5, None)).collect())).await;
        attacker.closed_code().await
    };
    // Bounded, so a server that stores and relays all of it fails here instead of hanging.
    let code = tokio::time::timeout(crate::helpers::DEADLINE, attack).await.expect("the attack took too long");
    assert_eq!(code, 1007);
    let grown = app.peak_rss_kib().saturating_sub(baseline);
    eprintln!("peak memory grew by {grown} KiB during the awareness flood");
    assert!(grown < AWARENESS_GROWTH_BOUND_KIB, "peak memory grew by {grown} KiB for awareness nobody needs");

    // Presence still works both ways, for clients already there and for a newcomer; the
    // attacker's states went when its connection did.
    honest_a.awareness(json!({"user": "a2"})).await;
    honest_b.wait_for(|s| s["peers"] == json!([{"user": "a2"}])).await;
    let mut newcomer = Provider::start(&app, "presence", &token).await;
    newcomer.synced().await;
    newcomer.awareness(json!({"user": "c"})).await;
    newcomer.wait_for(|s| s["peers"] == json!([{"user": "a2"}])).await;
    honest_a.wait_for(|s| s["peers"] == json!([{"user": "c"}])).await;
    for provider in [honest_a, honest_b, newcomer] {
        provider.quit().await;
    }
}

/// A presence its client stops renewing goes after y-protocols' 30 s while the socket stays open,
/// and the other clients hear its removal; not before. (Rooms sweep awareness only while they
/// hold some, at the moment the oldest entry is due, rather than every few seconds.)
#[tokio::test]
async fn an_unrenewed_presence_expires_after_thirty_seconds() {
    use futures_util::StreamExt;
    use std::time::{Duration, Instant};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use yrs::sync::Message;
    use yrs::updates::decoder::Decode;

    const CLIENT: u64 = 4711;
    let app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/fading?token={token}"));
    let mut observer = RawClient::connect(&url).await;
    let mut silent = RawClient::connect(&url).await;
    let set_at = Instant::now();
    silent.send(awareness(vec![(CLIENT, 1, Some(json!({"user": "silent"}).to_string()))])).await;
    // The observer's awareness frames, in order: the state as relayed, then its removal.
    let mut seen = Vec::new();
    let watch = async {
        while seen.last().is_none_or(|state: &String| state != "null") {
            // Pings (answered by tungstenite as it reads) and sync frames pass by.
            let frame = match observer.ws.next().await {
                Some(Ok(WsMessage::Binary(frame))) => frame,
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                other => panic!("observer closed: {other:?}"),
            };
            if let Ok(Message::Awareness(update)) = Message::decode_v1(&frame)
                && let Some(entry) = update.clients.iter().find(|(id, _)| id.get() == CLIENT).map(|(_, e)| e)
            {
                seen.push(entry.json.to_string());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(45), watch).await.expect("the presence never expired");
    let after = set_at.elapsed();
    assert_eq!(seen.len(), 2, "relayed once, then removed: {seen:?}");
    assert!(seen[0].contains("silent"), "{seen:?}");
    // Unix seconds on both ends: set at second s, expired at s + 30, so more than 29 s later.
    assert!(after > Duration::from_secs(29) && after < Duration::from_secs(36), "expired after {after:?}");
}
