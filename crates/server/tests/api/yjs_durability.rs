//! What is stored stays stored: updates survive `kill -9`, compaction bounds a document's stored
//! size, and any interleaving of edits through the server converges.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use concord_store::sqlite::SqliteStore;
use concord_store::{DocSize, DocStore};
use proptest::prelude::*;
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, Transact, Update};

use crate::helpers::{TestApp, eventually, json};
use crate::yjs_client::{RawClient, live_counts};

fn tokens(text: &str) -> Vec<&str> {
    text.split(';').filter(|t| !t.is_empty()).collect()
}

#[tokio::test]
async fn every_update_an_observer_received_survives_kill_9() {
    observed_updates_survive_kill_9(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn observed_updates_survive_kill_9(app: TestApp) {
    let mut app = app;
    let token = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/durable?token={token}"));
    let mut writers = Vec::new();
    for w in 0..2 {
        let mut client = RawClient::connect(&url).await;
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while client.closed.is_none() {
                client.insert(&format!("w{w}-{n};")).await;
                client.pump_for(Duration::from_millis(2)).await;
                n += 1;
            }
        }));
    }
    let mut observer = RawClient::connect(&url).await;
    assert!(observer.pump_until(|c| tokens(&c.text()).len() >= 100).await);
    app.kill9().await;
    // Whatever else was already on its way to the observer counts too.
    observer.pump_until(|c| c.closed.is_some()).await;
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = observer.text();

    app.restart().await;
    let mut reader = RawClient::connect(&app.ws_url(&format!("/sync/durable?token={token}"))).await;
    let survived = reader.pump_until(|c| tokens(&seen).iter().all(|t| c.text().contains(t))).await;
    assert!(survived, "lost updates; the observer had seen {} tokens", tokens(&seen).len());
}

#[tokio::test]
async fn compaction_bounds_the_stored_size_and_keeps_the_content() {
    const THRESHOLD: i64 = 4096;
    let mut app = TestApp::builder().env("SYNC_COMPACT_BYTES", THRESHOLD.to_string()).spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let url = app.ws_url(&format!("/sync/big?token={token}"));
    let mut writer = RawClient::connect(&url).await;
    for n in 0..1500 {
        writer.insert(&format!("line {n};")).await;
        if n % 100 == 0 {
            writer.pump_for(Duration::ZERO).await;
        }
    }
    let expected = writer.text();
    let mut reader = RawClient::connect(&url).await;
    assert!(reader.pump_until(|c| c.text() == expected).await);
    drop((writer, reader));
    eventually(|| async { live_counts(&app).await == (0, 0) }).await;

    let workspaces =
        json(app.client.get(app.url("/api/workspaces")).bearer_auth(&token).send().await.unwrap(), 200).await;
    let workspace = workspaces[0]["id"].as_str().unwrap().to_owned();
    app.terminate().await;
    // Read only: the test inspects what the server stored and changes nothing.
    let store = SqliteStore::open_read_only(&app.db_path()).await.unwrap();
    let stored = store.find_doc(&workspace, "big").await.unwrap().expect("the document is stored");
    let DocSize { snapshot_bytes, update_bytes, .. } = store.doc_size(&stored.id).await.unwrap();
    assert!(stored.snapshot.is_some(), "never compacted");
    assert!(update_bytes <= THRESHOLD, "{update_bytes} bytes of updates after the snapshot");
    // The snapshot is the document, not its history: close to the text's own size.
    assert!(snapshot_bytes < 2 * expected.len() as i64 + 1024, "snapshot of {snapshot_bytes} bytes");
    let doc = Doc::new();
    for bytes in stored.snapshot.iter().chain(&stored.updates) {
        doc.transact_mut().apply_update(Update::decode_v1(bytes).unwrap()).unwrap();
    }
    let txn = doc.transact();
    assert_eq!(txn.get_text("body").unwrap().get_string(&txn), expected);
    drop(txn);
    drop(store);

    app.restart().await;
    let mut again = RawClient::connect(&app.ws_url(&format!("/sync/big?token={token}"))).await;
    assert!(again.pump_until(|c| c.text() == expected).await);
}

#[test]
fn random_interleavings_through_the_server_converge() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (app, token) = runtime.block_on(async {
        let app = TestApp::spawn().await;
        let token = app.sign_in("prop@example.com").await;
        (app, token)
    });
    let case = AtomicUsize::new(0);
    let config = ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(steps in proptest::collection::vec((0..3usize, any::<u8>(), "[a-z]{1,4}"), 1..40))| {
        runtime.block_on(async {
            let url = app.ws_url(&format!("/sync/prop-{}?token={token}", case.fetch_add(1, Ordering::Relaxed)));
            let mut clients = Vec::new();
            for _ in 0..3 {
                clients.push(RawClient::connect(&url).await);
            }
            // All edits applied to one document, in the order they were made.
            let reference = Doc::new();
            for (who, action, text) in steps {
                if action % 3 == 0 {
                    // Deliver whatever has arrived; other clients keep editing unaware.
                    clients[who].pump_for(Duration::ZERO).await;
                } else {
                    let update = clients[who].insert_at(u32::from(action), &text).await;
                    reference.transact_mut().apply_update(Update::decode_v1(&update).unwrap()).unwrap();
                }
            }
            let expected = {
                let txn = reference.transact();
                txn.get_text("body").map(|t| t.get_string(&txn)).unwrap_or_default()
            };
            for client in &mut clients {
                assert!(client.pump_until(|c| c.text() == expected).await, "a client diverged");
            }
        });
    });
    runtime.block_on(async move { drop(app) });
}
