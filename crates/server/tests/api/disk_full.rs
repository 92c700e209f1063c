//! A full disk, for real: the server's data directory on a small tmpfs the test mounts, filled by
//! blob uploads. Every write path (op-log pushes, blob uploads, Yjs updates, sign-ins) must refuse
//! with a clear error while the disk is full, health must say so, everything must work again
//! once space is freed, and after `kill -9` every acknowledged write is there and nothing else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TEST_PASSWORD, TestApp, eventually, json as json_of};
use crate::oplog_client::{
    Device, device, download, download_verified, multipart_body, op, pull_all, push_raw, sha256_hex, upload, upload_raw,
};
use crate::yjs_client::RawClient;

/// Small enough to fill in a moment, big enough for the database, its WAL and a few blobs.
const DISK_MIB: usize = 8;
/// Blobs that fill the disk: about five fit beside the ballast.
const BLOB_BYTES: usize = 1 << 20;
/// Space held back from the start and freed with the filler, so that recovery has room for every
/// write the test makes afterwards (the filler alone may free only a few blocks).
const BALLAST_BYTES: usize = 2 << 20;

/// A tmpfs mounted for one test; unmounted (lazily, so a server still exiting cannot block it)
/// when dropped. Declare it before the `TestApp` so the server is dropped first.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(mib: usize) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root; the tests run as root");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes zeros to `path` until the filesystem refuses, asserting that it refused for lack of
/// space: afterwards not one more block is free.
pub fn fill_to_the_brim(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    let err = loop {
        if let Err(err) = file.write_all(&chunk) {
            break err;
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
}

fn tmp_files(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("blobs/tmp")).unwrap().map(|e| e.unwrap().path()).collect()
}

fn text_op(id: &str) -> Value {
    op(id, &format!("{id}.md"), "create", json!({"path": format!("{id}.md"), "content": "x".repeat(2000)}), 0)
}

/// The status and error code of a refused write.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

fn full() -> (u16, String) {
    (507, "insufficient_storage".to_owned())
}

async fn health(app: &TestApp) -> (u16, Value) {
    let response = app.get("/api/v1/health").await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Every op id the scope holds, sorted (`pull_all` checks the sequences are gap-free).
async fn pulled_ids(app: &TestApp, d: &Device) -> Vec<String> {
    let mut ids: Vec<String> =
        pull_all(app, d, 0).await.0.iter().map(|op| op["op_id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

/// Pushes sent at once, one op each: they queue on the single writer.
const PARALLEL: std::ops::Range<usize> = 0..10;

async fn concurrent_pushes(app: &TestApp, d: &Device) -> Vec<reqwest::Response> {
    let bodies: Vec<Value> = PARALLEL.map(|n| json!({"ops": [text_op(&format!("par-{n}"))]})).collect();
    futures_util::future::join_all(bodies.iter().map(|body| push_raw(app, d, body))).await
}

async fn signed_in(app: &TestApp, token: &str) -> bool {
    app.get_auth("/auth/me", token).await.status() == 200
}

async fn yjs_doc(app: &TestApp, token: &str, doc: &str) -> RawClient {
    RawClient::connect(&app.ws_url(&format!("/sync/{doc}?token={token}"))).await
}

/// Connects to the document `notes` and waits until the client holds `text`, its stored state.
async fn yjs(app: &TestApp, token: &str, text: &str) -> RawClient {
    let mut client = yjs_doc(app, token, "notes").await;
    assert!(client.pump_until(|c| c.text() == text).await, "the document holds {text:?}");
    client
}

#[tokio::test]
async fn a_full_disk_refuses_every_write_recovers_and_loses_nothing_acknowledged() {
    let disk = Tmpfs::mount(DISK_MIB);
    let data = disk.path().join("data");
    let mut app = TestApp::builder().data_dir(&data).spawn().await;
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; BALLAST_BYTES]).unwrap();
    let d = device(&app, "alice", "v").await;
    let session = app.sign_in("alice@example.com").await;
    let mut acknowledged = vec!["before".to_owned()];
    json_of(push_raw(&app, &d, &json!({"ops": [text_op("before")]})).await, 200).await;
    let mut writer = yjs(&app, &session, "").await;
    let mut observer = yjs(&app, &session, "").await;
    writer.insert("before;").await;
    assert!(observer.pump_until(|c| c.text() == "before;").await);
    // A magic link asked for while there was space, to be used while there is none.
    let link = json_of(app.post_json("/auth/magic-link", &json!({"email": "bob@example.com"})).await, 200).await;
    let link_token = link["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();

    // Fill the disk with blob uploads until one is refused, then top it up to the last block.
    let mut blobs = Vec::new();
    let refused = loop {
        let content = vec![blobs.len() as u8; BLOB_BYTES];
        let response = upload_raw(&app, &d, multipart_body(&sha256_hex(&content), &content)).await;
        if response.status() != 200 {
            break refusal(response).await;
        }
        blobs.push(content);
        assert!(blobs.len() < DISK_MIB, "the disk never filled");
    };
    assert_eq!(refused, full(), "a blob upload that does not fit is refused as storage full");
    assert!(!blobs.is_empty());
    assert_eq!(tmp_files(&data), Vec::<PathBuf>::new(), "a refused upload leaves no partial file");
    let filler = disk.path().join("filler");
    fill_to_the_brim(&filler);

    // While full: every write is refused, again and again (a later one must not slip through as
    // acknowledged), and health says degraded.
    for n in 0..5 {
        let id = format!("full-{n}");
        assert_eq!(refusal(push_raw(&app, &d, &json!({"ops": [text_op(&id)]})).await).await, full(), "push {id}");
        let keyed = json!({"idempotency_key": format!("k{n}"), "ops": [text_op(&format!("keyed-{n}"))]});
        assert_eq!(refusal(push_raw(&app, &d, &keyed).await).await, full());
    }
    let small = b"a small blob refused for lack of space".to_vec();
    assert_eq!(refusal(upload_raw(&app, &d, multipart_body(&sha256_hex(&small), &small)).await).await, full());
    assert_eq!(tmp_files(&data), Vec::<PathBuf>::new());
    let verified = app.get(&format!("/auth/verify?token={link_token}&device_name=full")).await;
    assert_eq!(refusal(verified).await, full(), "a sign-in that cannot be stored hands out no token");
    let login = json!({"username": "alice.example.com", "password": TEST_PASSWORD});
    assert_eq!(refusal(app.post_json("/api/v1/auth/login", &login).await).await, full());
    let pair = json!({"login": "alice.example.com", "password": TEST_PASSWORD, "device_name": "d",
        "client_version": "verstak-desktop/v2", "vault_id": "v"});
    assert_eq!(refusal(app.post_json("/api/client/pair", &pair).await).await, full());
    let magic = app.post_json("/auth/magic-link", &json!({"email": "carol@example.com"})).await;
    assert_eq!(refusal(magic).await, full());
    let register = json!({"username": "dave", "email": "dave@example.com", "password": TEST_PASSWORD});
    assert_eq!(refusal(app.post_json("/api/v1/auth/register", &register).await).await, full());
    // Concurrent pushes queue on the one writer: each is refused, none slips through.
    for response in concurrent_pushes(&app, &d).await {
        assert_eq!(refusal(response).await, full());
    }
    // A document never opened before cannot be created: the connection is closed, not served.
    yjs_doc(&app, &session, "fresh").await.closed_code().await;
    let (status, body) = health(&app).await;
    assert_eq!((status, body["status"].as_str().unwrap()), (503, "degraded"), "{body}");
    assert_eq!(body["database_writable"], false, "{body}");
    // A Yjs update that cannot be stored is relayed to no one: its room closes (1011) instead.
    writer.insert("during;").await;
    assert_eq!(writer.closed_code().await, 1011);
    assert_eq!(observer.closed_code().await, 1011);
    assert_eq!(observer.text(), "before;", "the observer never saw the unstored update");
    // Reads still work.
    assert_eq!(pulled_ids(&app, &d).await, acknowledged);
    download_verified(&app, &d, &sha256_hex(&blobs[0]), BLOB_BYTES).await;

    // Space freed: health recovers by itself and every write path works again.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    eventually(|| async { health(&app).await.0 == 200 }).await;
    assert_eq!(health(&app).await.1["database_writable"], true);
    for n in 0..3 {
        let id = format!("after-{n}");
        let pushed = json_of(push_raw(&app, &d, &json!({"ops": [text_op(&id)]})).await, 200).await;
        assert_eq!(pushed["accepted"], json!([id]));
        acknowledged.push(id);
    }
    for response in concurrent_pushes(&app, &d).await {
        assert_eq!(response.status(), 200);
    }
    acknowledged.extend(PARALLEL.map(|n| format!("par-{n}")));
    acknowledged.sort();
    assert_eq!(pulled_ids(&app, &d).await, acknowledged, "what was acknowledged is what a pull sees");
    // The refused uploads left no reference: their hashes are unknown to the scope.
    for refused in [sha256_hex(&vec![blobs.len() as u8; BLOB_BYTES]), sha256_hex(&small)] {
        assert_eq!(download(&app, &d, &refused).await.status(), 404, "no reference to a refused upload");
    }
    let after_blob = b"uploaded after space was freed".to_vec();
    let after_sha = upload(&app, &d, &after_blob).await;
    let bob = app.sign_in("bob@example.com").await;
    assert!(signed_in(&app, &bob).await, "a token handed out after recovery authenticates");
    let mut writer = yjs(&app, &session, "before;").await;
    let mut observer = yjs(&app, &session, "before;").await;
    writer.insert("after;").await;
    assert!(observer.pump_until(|c| c.text() == "before;after;").await);
    let mut fresh = yjs_doc(&app, &session, "fresh").await;
    fresh.insert("fresh;").await;
    assert!(yjs_doc(&app, &session, "fresh").await.pump_until(|c| c.text() == "fresh;").await);
    drop((writer, observer, fresh));

    // kill -9 and restart on the same (still mounted) disk: exactly the acknowledged writes.
    app.kill9().await;
    app.restart().await;
    assert_eq!(pulled_ids(&app, &d).await, acknowledged, "after kill -9");
    for content in &blobs {
        download_verified(&app, &d, &sha256_hex(content), BLOB_BYTES).await;
    }
    download_verified(&app, &d, &after_sha, after_blob.len()).await;
    assert!(signed_in(&app, &bob).await);
    assert!(signed_in(&app, &session).await);
    yjs(&app, &session, "before;after;").await;
    assert!(yjs_doc(&app, &session, "fresh").await.pump_until(|c| c.text() == "fresh;").await);
    drop(app);
}
