//! A Hocuspocus acknowledgement means on disk: every edit for which the real provider saw
//! `unsyncedChanges` reach 0 survives a `kill -9` that follows at once.

use std::collections::BTreeSet;

use crate::helpers::TestApp;
use crate::hocuspocus_client::{HocusSocket, RawHocus};

#[tokio::test]
async fn every_edit_the_provider_saw_acknowledged_survives_kill_9() {
    let mut app = TestApp::spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let mut provider = HocusSocket::start(&app, "").await;
    provider.open("durable", &token).await;
    provider.wait_for("durable", |s| s["synced"] == true).await;
    // 40 acknowledged bursts of five: enough group commits to catch an ack sent before its
    // commit, and a second or two on a loaded machine.
    provider.command(serde_json::json!({"op": "write", "doc": "durable", "count": 100_000})).await;
    provider.event(|e| e["event"] == "acked" && e["upto"].as_u64() >= Some(200)).await;
    app.kill9().await;
    // Acknowledgements already on their way count too: the server sent them before it died.
    provider.event(|e| e["event"] == "socket-closed").await;
    let acked =
        provider.seen.iter().filter(|e| e["event"] == "acked").filter_map(|e| e["upto"].as_u64()).max().unwrap();
    provider.quit().await;

    app.restart().await;
    let mut reader = RawHocus::connect(&app, "").await;
    let update = reader.open("durable", &token).await;
    let doc = yrs::Doc::new();
    {
        use yrs::updates::decoder::Decode;
        use yrs::{Transact, Update};
        doc.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
    }
    let text = {
        use yrs::{GetString, ReadTxn, Transact};
        let txn = doc.transact();
        txn.get_text("body").map(|t| t.get_string(&txn)).unwrap_or_default()
    };
    let stored: BTreeSet<&str> = text.split(';').filter(|t| !t.is_empty()).collect();
    let lost: Vec<u64> = (0..=acked).filter(|n| !stored.contains(format!("h{n}").as_str())).collect();
    assert!(lost.is_empty(), "acknowledged edits lost after kill -9: {lost:?} (acked up to h{acked})");
}
