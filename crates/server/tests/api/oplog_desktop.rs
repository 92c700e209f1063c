//! A full sync cycle between two devices of one vault, driven the way the Verstak desktop client
//! drives it: health probe, credential test, pairing, pull with `page_limit` 0, blob upload named by its hash, pushes of at
//! most 100 ops (halving on `too_many_operations`), skip own ops, verify downloaded blobs.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json as json_of};
use crate::oplog_client::{Device, device, download_verified, op, pull_all, push_raw, upload};

/// The desktop's local state: its cursor and the entities it has applied.
struct Desktop {
    device: Device,
    cursor: i64,
    files: std::collections::BTreeMap<String, Value>,
}

impl Desktop {
    /// Pulls to the head, applying other devices' ops and downloading the blobs they name.
    async fn pull(&mut self, app: &TestApp) -> usize {
        let (ops, cursor) = pull_all(app, &self.device, self.cursor).await;
        self.cursor = cursor;
        let mut applied = 0;
        for o in ops.iter().filter(|o| o["device_id"] != self.device.device_id.as_str()) {
            let payload: Value = serde_json::from_str(o["payload_json"].as_str().unwrap()).unwrap();
            if let Some(blob) = payload.get("blob") {
                let size = blob["size"].as_u64().unwrap() as usize;
                download_verified(app, &self.device, blob["sha256"].as_str().unwrap(), size).await;
            }
            self.files.insert(o["entity_id"].as_str().unwrap().to_owned(), payload);
            applied += 1;
        }
        applied
    }

    /// Pushes in batches, starting too big to exercise the client's halving on 413.
    async fn push(&mut self, app: &TestApp, mut ops: Vec<Value>) {
        let mut batch = 150;
        while !ops.is_empty() {
            let take = batch.min(ops.len());
            let body = json!({"device_id": self.device.device_id, "ops": ops[..take].to_vec()});
            let response = push_raw(app, &self.device, &body).await;
            if response.status() == 413 {
                assert_eq!(json_of(response, 413).await["code"], "too_many_operations");
                batch /= 2;
                continue;
            }
            let r = json_of(response, 200).await;
            let sent: Vec<Value> = ops[..take].iter().map(|o| o["op_id"].clone()).collect();
            assert_eq!(r["accepted"], json!(sent), "every op of the batch is marked pushed");
            ops.drain(..take);
        }
    }
}

#[tokio::test]
async fn two_desktops_sync_a_vault_including_a_blob() {
    let app = TestApp::spawn().await;
    // Test connection: the health probe must be JSON with a status.
    let health = json_of(app.get("/api/v1/health").await, 200).await;
    assert_eq!(health["status"], "ok");
    app.register_confirmed("alice@example.com").await;
    let tested = app
        .post_json(
            "/api/auth/test",
            &json!({"username": "alice@example.com", "password": crate::helpers::TEST_PASSWORD}),
        )
        .await;
    assert_eq!(json_of(tested, 200).await, json!({"status": "ok"}));
    // Pairing as the desktop sends it; it reads these fields and starts its cursor at 0.
    let pairing = json!({
        "login": "alice@example.com",
        "password": crate::helpers::TEST_PASSWORD,
        "device_name": "Laptop",
        "client_version": "verstak-desktop/v2",
        "vault_id": "vault-x",
    });
    let paired = json_of(app.post_json("/api/client/pair", &pairing).await, 200).await;
    assert_eq!(paired["initial_sync_cursor"], 0);
    assert!(paired["device_token"].as_str().is_some_and(|t| t.len() == 64));
    assert!(paired["device_id"].as_str().is_some_and(|id| id.starts_with("dev_")));
    let laptop_device = Device {
        token: paired["device_token"].as_str().unwrap().into(),
        device_id: paired["device_id"].as_str().unwrap().into(),
    };

    let mut laptop = Desktop { device: laptop_device, cursor: 0, files: Default::default() };
    let mut desktop = Desktop { device: device(&app, "alice", "vault-x").await, cursor: 0, files: Default::default() };
    assert_eq!(laptop.pull(&app).await, 0);

    // The laptop adds 149 notes and one binary attachment.
    let picture: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let sha = upload(&app, &laptop.device, &picture).await;
    let mut ops: Vec<Value> = (0..149)
        .map(|i| {
            let path = format!("notes/{i}.md");
            op(
                &format!("laptop-{i}"),
                &path,
                "create",
                json!({"path": path, "contentHash": "h", "content": format!("note {i}")}),
                laptop.cursor,
            )
        })
        .collect();
    ops.push(op(
        "laptop-pic",
        "img/pic.png",
        "create",
        json!({"path": "img/pic.png", "contentHash": sha, "blob": {"sha256": sha, "size": picture.len()}}),
        laptop.cursor,
    ));
    laptop.push(&app, ops).await;
    assert_eq!(laptop.pull(&app).await, 0, "the laptop skips its own ops");
    assert_eq!(laptop.cursor, 150);

    // The desktop catches up, including the blob (downloaded and verified by size and hash).
    assert_eq!(desktop.pull(&app).await, 150);
    assert_eq!(desktop.files["notes/7.md"]["content"], "note 7");
    assert_eq!(desktop.files["img/pic.png"]["blob"]["sha256"], sha.as_str());

    // The desktop edits and deletes; the laptop sees both.
    let cursor = desktop.cursor;
    desktop
        .push(
            &app,
            vec![
                op(
                    "desk-1",
                    "notes/7.md",
                    "update",
                    json!({"path": "notes/7.md", "contentHash": "h2", "content": "edited"}),
                    cursor,
                ),
                op("desk-2", "img/pic.png", "delete", json!({"path": "img/pic.png"}), cursor),
            ],
        )
        .await;
    assert_eq!(laptop.pull(&app).await, 2);
    assert_eq!(laptop.files["notes/7.md"]["content"], "edited");
    assert_eq!(laptop.cursor, 152);
    assert_eq!(desktop.pull(&app).await, 0);
    assert_eq!(desktop.cursor, 152);
}
