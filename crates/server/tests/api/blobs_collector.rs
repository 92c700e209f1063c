//! The blob collector racing uploads: blobs orphaned by deleting their vault are uploaded again
//! while the collector runs over and over (through the admin API, as "clean up now" does), on
//! two nodes sharing one PostgreSQL database and one bucket and on one node on its own filesystem.
//! Afterwards every blob a scope references downloads with its bytes, through every node, and
//! nothing unreferenced is left. Without an ordering that holds across nodes, the collector on one
//! node deletes a blob that the other node has just referenced and placed again: the collecting
//! node reaches the bucket through a relay that holds each request for [`DELAY`], a slow link
//! that widens the moment between its check and its delete from milliseconds to that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::admin_api::{admin_token, call, with_admin};
use crate::helpers::{TEST_PASSWORD, TestApp, eventually};
use crate::oplog_client::{device, download_verified, stored_blobs, upload};

/// 3 rounds of 16 blobs, half of them uploaded again right after their vault is deleted: 24 blobs
/// raced against a collector that never stops, 24 it must reclaim. Each round costs two password
/// checks (pairing, the admin's confirmation), the slow part; the blobs are small but one, so
/// the whole stays within a minute on a loaded machine.
const ROUNDS: usize = 3;
const BLOBS: usize = 16;

/// Spreads a round's re-uploads over about two of the collector's passes (each lists the bucket
/// twice through the slow link, 2 × [`DELAY`]), so that some land between its check of a blob
/// and its delete of it, whatever the phase: pacing the load, not waiting for anything.
const PACE: Duration = Duration::from_millis(100);

/// Blob `k` of `round`: distinct contents, the first of the first round past one multipart part
/// (5 MiB), so S3's copy placement races too.
fn contents(round: usize, k: usize) -> Vec<u8> {
    let len = if k == 0 && round == 0 { (5 << 20) + 17 } else { 1000 + k };
    (0..len).map(|i| (i * 31 + round * 7 + k) as u8).collect()
}

/// `collecting` runs the collector without pause while `uploading` takes each round's blobs
/// through a vault it then deletes, and uploads half of them again into a vault it keeps.
async fn reuploads_race_the_collector(collecting: Arc<TestApp>, uploading: Arc<TestApp>) {
    let admin = admin_token(&uploading).await;
    let kept = device(&uploading, "alice", "kept").await;
    let (_, users) = call(&uploading, "GET", "/admin/api/users?q=alice", Some(&admin), None).await;
    let alice = users["items"][0]["id"].as_str().unwrap().to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let (runs, reclaimed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let collector = tokio::spawn({
        let (app, admin, stop, runs, reclaimed) =
            (collecting.clone(), admin.clone(), stop.clone(), runs.clone(), reclaimed.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = call(&app, "POST", "/admin/api/storage/cleanup", Some(&admin), None).await;
                let errors: Vec<String> =
                    app.logs().lines().filter(|l| l.contains("ERROR")).map(str::to_owned).collect();
                assert_eq!(status, 200, "{body} {errors:?}");
                runs.fetch_add(1, Ordering::Relaxed);
                reclaimed.fetch_add(body["blob_files"].as_u64().unwrap(), Ordering::Relaxed);
            }
        }
    });

    let mut referenced = Vec::new();
    for round in 0..ROUNDS {
        let vault = format!("passing-{round}");
        let passing = device(&uploading, "alice", &vault).await;
        let blobs: Vec<Vec<u8>> = (0..BLOBS).map(|k| contents(round, k)).collect();
        for data in &blobs {
            upload(&uploading, &passing, data).await;
        }
        let confirmed = Some(json!({ "admin_password": TEST_PASSWORD }));
        let path = format!("/admin/api/vaults/{alice}/{vault}");
        assert_eq!(call(&uploading, "DELETE", &path, Some(&admin), confirmed).await.0, 204);
        // Orphaned now; half come back, one every [`PACE`], while the collector may be deleting them.
        let again: Vec<_> = blobs
            .into_iter()
            .step_by(2)
            .enumerate()
            .map(|(j, data)| {
                let (app, kept) = (uploading.clone(), kept.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(PACE * j as u32).await;
                    let sha = upload(&app, &kept, &data).await;
                    (sha, data.len())
                })
            })
            .collect();
        for upload in again {
            referenced.push(upload.await.unwrap());
        }
        // On a loaded machine a pass can outlast a round: each round overlaps at least one.
        let passes = runs.load(Ordering::Relaxed);
        eventually(|| async { runs.load(Ordering::Relaxed) > passes }).await;
    }
    stop.store(true, Ordering::Relaxed);
    collector.await.unwrap();
    // One more pass with nothing racing it reclaims whatever the last round orphaned.
    let (status, body) = call(&collecting, "POST", "/admin/api/storage/cleanup", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let reclaimed = reclaimed.load(Ordering::Relaxed) + body["blob_files"].as_u64().unwrap();

    for node in [&collecting, &uploading] {
        for (sha, size) in &referenced {
            download_verified(node, &kept, sha, *size).await;
        }
    }
    let mut expected: Vec<String> =
        referenced.iter().map(|(sha, _)| format!("{}/{}/{sha}", &sha[0..2], &sha[2..4])).collect();
    expected.sort();
    assert_eq!(stored_blobs(&collecting), expected, "exactly the referenced blobs are left");
    let orphans = (ROUNDS * BLOBS / 2) as u64;
    assert!(reclaimed >= orphans, "reclaimed {reclaimed} blobs, {orphans} were never uploaded again");
}

/// Long against a re-upload on loopback (a few milliseconds), short against the test's length: the
/// collecting node's deletes each take this long.
const DELAY: Duration = Duration::from_millis(200);

/// A TCP relay to `upstream` that forwards every byte sent towards it `delay` after it arrived
/// (answers come back at once): a slow network between one node and the bucket.
async fn slow_relay(upstream: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else { continue };
            let ((mut from_client, mut to_client), (mut from_server, mut to_server)) =
                (client.into_split(), server.into_split());
            let (held, mut due) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    if held.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some((at, bytes)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    if to_server.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown().await;
            });
            tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
        }
    });
    addr
}

#[tokio::test]
async fn two_nodes_on_one_bucket_never_lose_a_blob_reuploaded_while_the_other_collects() {
    let url = crate::postgres_cluster::cluster().fresh_database().await;
    let store = crate::s3_moto::moto().fresh_store();
    let node = || with_admin(TestApp::builder().env("DATABASE_URL", url.clone()).s3_store(store.clone()));
    let moto = crate::s3_moto::moto().endpoint();
    let relay = slow_relay(moto.trim_start_matches("http://").parse().unwrap(), DELAY).await;
    let a = node().env("BLOB_S3_ENDPOINT", format!("http://{relay}")).spawn().await;
    let b = node().spawn().await;
    reuploads_race_the_collector(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn one_node_on_its_filesystem_never_loses_a_blob_reuploaded_while_it_collects() {
    let app = Arc::new(with_admin(TestApp::builder()).spawn().await);
    reuploads_race_the_collector(app.clone(), app).await;
}
