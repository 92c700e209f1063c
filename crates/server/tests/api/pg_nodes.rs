//! Two `concord` nodes on one PostgreSQL database without the bus between them: what holds
//! because the database is the truth. Accounts and devices made on one node work on the other,
//! pushers spread over both nodes get every op of a vault once and gap-free (the scope's head row
//! lock serialises them across processes), a device revoked through one node loses its event
//! stream on the other (that node's credential watcher re-reads the database every 500 ms), and a
//! blob uploaded through one node downloads through the other from their shared bucket. A document
//! open on both nodes loses nothing when both write and compact. Live Yjs fan-out and event-stream
//! heads across nodes go over the bus (`bus_nodes`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, json as json_of};
use crate::oplog_client::{Device, device, op, pull_all, push};
use crate::yjs_client::{RawClient, live_counts};

/// Two nodes on one fresh database, each with its own data directory and port, started with
/// `envs` too.
async fn two_nodes_with(envs: &[(&str, &str)]) -> (Arc<TestApp>, Arc<TestApp>) {
    let url = crate::postgres_cluster::cluster().fresh_database().await;
    let node = || {
        let builder = TestApp::builder().env("DATABASE_URL", url.clone());
        envs.iter().fold(builder, |b, (k, v)| b.env(*k, *v)).spawn()
    };
    let a = node().await;
    let b = node().await;
    (Arc::new(a), Arc::new(b))
}

async fn two_nodes() -> (Arc<TestApp>, Arc<TestApp>) {
    two_nodes_with(&[]).await
}

#[tokio::test]
async fn four_pushers_over_two_nodes_get_every_op_once_with_sequences_one_to_n() {
    // 4 pushers × 12 pushes of 1–3 ops: enough for pushes of both nodes to queue on the head row
    // (each push is one short transaction), small enough for a few seconds on a loaded machine.
    const PUSHERS: usize = 4;
    const PUSHES: usize = 12;
    let (a, b) = two_nodes().await;
    let nodes = [a.clone(), b.clone()];
    let mut devices: Vec<Device> = Vec::new();
    for _ in 0..PUSHERS {
        // Paired through A; every other one then pushes through B with the same token.
        devices.push(device(&a, "alice", "shared").await);
    }
    let tasks: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(p, d)| {
            let node = nodes[p % 2].clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                for n in 0..PUSHES {
                    let ops: Vec<Value> = (0..1 + n % 3)
                        .map(|i| op(&format!("p{p}-{n}-{i}"), "shared.md", "update", json!({}), 0))
                        .collect();
                    let r = push(&node, &d, ops.clone()).await;
                    assert_eq!(r["count"].as_u64().unwrap(), ops.len() as u64);
                    sent.extend(ops.iter().map(|o| o["op_id"].as_str().unwrap().to_owned()));
                }
                sent
            })
        })
        .collect();
    let mut all_sent = HashSet::new();
    for task in tasks {
        all_sent.extend(task.await.unwrap());
    }
    // A puller on each node: pull_all checks 1, 2, 3… with no gap on every page.
    for node in [&a, &b] {
        let puller = device(&a, "alice", "shared").await;
        let (ops, head) = pull_all(node, &puller, 0).await;
        assert_eq!(head as usize, all_sent.len(), "sequences 1..N, N = ops pushed");
        let seen: Vec<String> = ops.iter().map(|o| o["op_id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(seen.len(), all_sent.len(), "every op exactly once");
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), all_sent);
    }
}

#[tokio::test]
async fn a_device_revoked_through_one_node_loses_its_stream_on_the_other() {
    let (a, b) = two_nodes().await;
    let revoked = device(&a, "alice", "v").await;
    let stream = b.client.get(b.url("/api/v1/sync/events")).bearer_auth(&revoked.token).send().await.unwrap();
    assert_eq!(stream.status(), 200, "a device paired through A streams from B");
    let answer = a.post_auth("/api/client/revoke-current", &revoked.token, &json!({})).await;
    assert_eq!(json_of(answer, 200).await["status"], "revoked");
    // B hears no notice (these nodes have no bus); its watcher re-reads every 500 ms. 3 s leaves room
    // for a loaded machine while still failing if B never re-checks.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        let mut stream = stream;
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream on B was still open 3 s after the revocation through A");
    let refused = b.client.post(b.url("/api/v1/sync/pull")).bearer_auth(&revoked.token).json(&json!({})).send().await;
    assert_eq!(refused.unwrap().status(), 401, "and B refuses its next request");
}

#[tokio::test]
async fn a_document_written_and_compacted_on_both_nodes_keeps_every_update() {
    // Compacting after every stored byte: without the gap check, node A, which never saw B's
    // update, would write a snapshot without it and delete it.
    let (a, b) = two_nodes_with(&[("SYNC_COMPACT_BYTES", "1")]).await;
    let token = a.sign_in("alice@example.com").await;
    let url = |node: &TestApp| node.ws_url(&format!("/sync/shared?token={token}"));
    let (mut a_writer, mut a_observer) = (RawClient::connect(&url(&a)).await, RawClient::connect(&url(&a)).await);
    let (mut b_writer, mut b_observer) = (RawClient::connect(&url(&b)).await, RawClient::connect(&url(&b)).await);
    // Each observer sees its node's write only after the write committed.
    b_writer.insert("from-b;").await;
    assert!(b_observer.pump_until(|c| c.text().contains("from-b")).await);
    a_writer.insert("from-a;").await;
    assert!(a_observer.pump_until(|c| c.text().contains("from-a")).await);
    drop((a_writer, a_observer, b_writer, b_observer));
    // Both rooms unload (compacting as they go), so the next client loads from the database.
    for node in [&a, &b] {
        eventually(|| async { live_counts(node).await == (0, 0) }).await;
    }
    for node in [&a, &b] {
        let mut reader = RawClient::connect(&url(node)).await;
        let whole = reader.pump_until(|c| c.text().contains("from-a") && c.text().contains("from-b")).await;
        assert!(whole, "lost an update: {:?}", reader.text());
    }
}

#[tokio::test]
async fn a_blob_uploaded_through_one_node_downloads_through_the_other_from_their_bucket() {
    let url = crate::postgres_cluster::cluster().fresh_database().await;
    let store = crate::s3_moto::moto().fresh_store();
    let node = || TestApp::builder().env("DATABASE_URL", url.clone()).s3_store(store.clone()).spawn();
    let (a, b) = (node().await, node().await);
    let d = device(&a, "alice", "v").await;
    // Larger than one multipart part (5 MiB), so both upload paths' objects are read back.
    for data in [b"small blob".to_vec(), vec![7u8; 6 * 1024 * 1024 + 3]] {
        let sha = crate::oplog_client::upload(&a, &d, &data).await;
        assert_eq!(crate::oplog_client::download_verified(&b, &d, &sha, data.len()).await, data);
    }
}

#[tokio::test]
async fn a_document_deleted_through_another_node_closes_its_room_here_and_rooms_sharing_its_commit_go_on() {
    // Without the bus, B hears nothing of A's deletes: its room of each deleted document learns
    // of it from its own next append, which fails inside B's group commit. Three writers on B
    // typing meanwhile share those commits, so some shared one fails; the writer then retries
    // each room's batch alone. Rounds until B counts such a retry (each round makes one failing
    // append; 30 bound it), and through all of them the writers are never disturbed.
    const WRITERS: usize = 3;
    const ROUNDS: usize = 30;
    let (a, b) = two_nodes().await;
    let alice = a.sign_in("alice@example.com").await;
    let workspace = crate::shares_api::default_workspace(&a, &alice).await;
    let mut writers = Vec::new();
    for k in 0..WRITERS {
        writers.push(RawClient::connect(&b.ws_url(&format!("/sync/x{k}?token={alice}"))).await);
    }
    let mut retried = false;
    for round in 0..ROUNDS {
        let name = format!("y{round}");
        let mut doomed = RawClient::connect(&b.ws_url(&format!("/sync/{name}?token={alice}"))).await;
        doomed.insert("y;").await;
        let mut reader = RawClient::connect(&b.ws_url(&format!("/sync/{name}?token={alice}"))).await;
        assert!(reader.pump_until(|c| c.text() == "y;").await);
        let path = format!("/api/workspaces/{workspace}/docs/{name}");
        assert_eq!(a.client.delete(a.url(&path)).bearer_auth(&alice).send().await.unwrap().status(), 204);
        for (k, writer) in writers.iter_mut().enumerate() {
            writer.insert(&format!("{k}.{round}a;")).await;
        }
        doomed.insert("after;").await;
        for (k, writer) in writers.iter_mut().enumerate() {
            writer.insert(&format!("{k}.{round}b;")).await;
        }
        for client in [&mut doomed, &mut reader] {
            client.closed_code().await;
            assert_eq!(client.closed.clone().unwrap(), (1000, "document deleted".to_owned()), "{name}");
        }
        assert_eq!(b.get_auth(&path, &alice).await.status(), 404, "{name} came back");
        if crate::metrics::scrape(&b).await.sum("concord_yjs_commit_retries_total", &[]) > 0.0 {
            retried = true;
            break;
        }
    }
    assert!(retried, "no deleted document's append shared a commit with the writers' in {ROUNDS} rounds");
    // Every writer's every edit is stored, read back through the other node.
    for (k, writer) in writers.iter_mut().enumerate() {
        writer.pump_for(Duration::from_millis(100)).await;
        assert!(writer.closed.is_none(), "writer {k} was closed: {:?}", writer.closed);
        let expected = writer.text();
        let mut reader = RawClient::connect(&a.ws_url(&format!("/sync/x{k}?token={alice}"))).await;
        assert!(reader.pump_until(|c| c.text() == expected).await, "x{k}: {} != {expected}", reader.text());
    }
}
