//! Push and pull over HTTP: wire shapes, every validation code, retries, idempotency, conflicts,
//! resync, isolation between scopes, live head events and durability across `kill -9`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, json as json_of};
use crate::oplog_client::{Device, device, op, pull_all, pull_raw, push, push_raw, upload};

#[tokio::test]
async fn push_and_pull_have_the_reference_shapes() {
    let app = TestApp::spawn().await;
    let a = device(&app, "alice", "vault-1").await;
    let b = device(&app, "alice", "vault-1").await;

    let empty = push(&app, &a, vec![]).await;
    assert_eq!(empty, json!({"accepted": [], "conflicts": [], "count": 0}), "empty lists, never null");

    // The body names another device; the authenticated one is recorded.
    let body = json!({"device_id": "dev_forged", "ops": [op("op-1", "notes/a.md", "create", json!({"path": "notes/a.md", "contentHash": "h", "content": "hi"}), 0)]});
    let pushed = json_of(push_raw(&app, &a, &body).await, 200).await;
    assert_eq!(pushed, json!({"accepted": ["op-1"], "conflicts": [], "count": 1}));

    let page = json_of(pull_raw(&app, &b, 0, 0).await, 200).await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["server_sequence"], 1);
    assert_eq!(page["page_last_sequence"], 1);
    let got = &page["ops"][0];
    assert_eq!(got["op_id"], "op-1");
    assert_eq!(got["server_sequence"], 1);
    assert_eq!(got["device_id"], a.device_id.as_str());
    assert_eq!(got["entity_type"], "file");
    assert_eq!(got["entity_id"], "notes/a.md");
    assert_eq!(got["op_type"], "create");
    assert_eq!(got["created_at"], "2026-07-10T00:00:00Z");
    let payload: Value = serde_json::from_str(got["payload_json"].as_str().unwrap()).unwrap();
    assert_eq!(payload["content"], "hi");

    // The pusher's own ops are included; an empty page keeps the cursor.
    let own = json_of(pull_raw(&app, &a, 0, 0).await, 200).await;
    assert_eq!(own["ops"].as_array().unwrap().len(), 1);
    let tail = json_of(pull_raw(&app, &a, 1, 0).await, 200).await;
    assert_eq!(tail, json!({"has_more": false, "ops": [], "page_last_sequence": 1, "server_sequence": 1}));
}

#[tokio::test]
async fn every_rejection_has_its_status_and_code_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let sha = "ab".repeat(32);
    let plain = |id: &str| op(id, "e", "create", json!({}), 0);
    let with = |field: &str, value: Value| {
        let mut o = plain("x");
        o[field] = value;
        json!({"ops": [o]})
    };
    let file_payload = |payload: Value| json!({"ops": [op("f", "f.bin", "create", payload, 0)]});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "101 ops",
            json!({"ops": (0..101).map(|i| plain(&i.to_string())).collect::<Vec<_>>()}),
            413,
            "too_many_operations",
        ),
        ("long device_id", json!({"device_id": "d".repeat(129), "ops": []}), 400, "field_too_long"),
        ("long idempotency_key", json!({"idempotency_key": "k".repeat(129), "ops": []}), 400, "field_too_long"),
        ("blank op_id", with("op_id", json!(" ")), 400, "invalid_operation"),
        ("missing entity_type", with("entity_type", Value::Null), 400, "invalid_operation"),
        ("long entity_id", with("entity_id", json!("e".repeat(4097))), 400, "field_too_long"),
        (
            "payload over 256 KiB",
            with("payload_json", json!(format!("\"{}\"", "p".repeat(256 * 1024)))),
            413,
            "payload_too_large",
        ),
        ("payload not JSON", with("payload_json", json!("{oops")), 400, "invalid_payload"),
        ("negative sequence", with("client_sequence", json!(-1)), 400, "invalid_operation"),
        ("inline binary", file_payload(json!({"path": "f.bin", "dataBase64": "AAAA"})), 400, "inline_binary_forbidden"),
        (
            "bad blob hash",
            file_payload(json!({"path": "f.bin", "blob": {"sha256": "XYZ", "size": 1}})),
            400,
            "invalid_blob_reference",
        ),
        (
            "blob not uploaded",
            file_payload(json!({"path": "f.bin", "blob": {"sha256": sha, "size": 1}})),
            400,
            "blob_not_owned",
        ),
        ("a JSON string, not an object", json!("just a string"), 400, "invalid_request"),
    ];
    for (name, body, status, code) in cases {
        let response = push_raw(&app, &d, &body).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], code, "{name}: {body}");
        assert!(body["error"].is_string(), "{name}");
    }
    let trailing = app
        .client
        .post(app.url("/api/v1/sync/push"))
        .bearer_auth(&d.token)
        .body(r#"{"ops":[]} {"ops":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(trailing, 400).await["code"], "trailing_json");
    assert_eq!(json_of(pull_raw(&app, &d, -1, 0).await, 400).await["code"], "invalid_request");
    assert_eq!(json_of(pull_raw(&app, &d, 0, -5).await, 400).await["code"], "invalid_request");
    let head = json_of(pull_raw(&app, &d, 0, 0).await, 200).await;
    assert_eq!(head["server_sequence"], 0, "no rejected push wrote anything");

    let anonymous = app.client.post(app.url("/api/v1/sync/pull")).json(&json!({})).send().await.unwrap();
    assert_eq!(json_of(anonymous, 401).await["error"], "API key required");
    let forged = Device { token: "0".repeat(64), device_id: d.device_id.clone() };
    assert_eq!(json_of(pull_raw(&app, &forged, 0, 0).await, 401).await["error"], "invalid API key");
}

#[tokio::test]
async fn a_retried_push_is_acknowledged_in_full_and_stored_once() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let batch: Vec<Value> =
        (0..100).map(|i| op(&format!("op-{i}"), &format!("e{i}"), "create", json!({}), 0)).collect();
    let first = push(&app, &d, batch[..60].to_vec()).await;
    assert_eq!(first["count"], 60);
    // The response was "lost": the client sends the whole batch again.
    let retry = push(&app, &d, batch.clone()).await;
    let expected: Vec<Value> = (0..100).map(|i| json!(format!("op-{i}"))).collect();
    assert_eq!(retry["accepted"], json!(expected));
    assert_eq!(retry["count"], 100);
    let (ops, cursor) = pull_all(&app, &d, 0).await;
    assert_eq!((ops.len(), cursor), (100, 100), "each op stored exactly once");

    // With an idempotency key the stored response comes back verbatim, even for a different body.
    let keyed = |ops: Vec<Value>| json!({"idempotency_key": "batch-7", "ops": ops});
    let once = json_of(push_raw(&app, &d, &keyed(vec![op("k1", "e", "update", json!({}), 0)])).await, 200).await;
    let twice = json_of(push_raw(&app, &d, &keyed(vec![op("k2", "e", "update", json!({}), 0)])).await, 200).await;
    assert_eq!(once, twice);
    assert_eq!(json_of(pull_raw(&app, &d, 0, 0).await, 200).await["server_sequence"], 101);
}

#[tokio::test]
async fn conflicts_are_reported_and_deletes_do_not_conflict() {
    let app = TestApp::spawn().await;
    let a = device(&app, "alice", "v").await;
    let b = device(&app, "alice", "v").await;
    push(&app, &a, vec![op("1", "doc.md", "create", json!({}), 0)]).await;
    push(&app, &b, vec![op("2", "doc.md", "update", json!({}), 1)]).await;
    push(&app, &b, vec![op("3", "gone.md", "delete", json!({}), 0)]).await;
    let r = push(&app, &a, vec![op("4", "doc.md", "update", json!({}), 1), op("5", "gone.md", "update", json!({}), 1)])
        .await;
    assert_eq!(r["accepted"], json!(["4", "5"]), "conflicting ops are still stored");
    assert_eq!(
        r["conflicts"],
        json!([{"device_id": b.device_id, "entity_id": "doc.md", "entity_type": "file", "op_id": "2", "op_type": "update", "server_sequence": 2}])
    );
}

#[tokio::test]
async fn paging_and_the_resync_signal() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    push(&app, &d, (0..7).map(|i| op(&i.to_string(), "e", "update", json!({}), 0)).collect()).await;
    let page = json_of(pull_raw(&app, &d, 2, 3).await, 200).await;
    let seqs: Vec<i64> =
        page["ops"].as_array().unwrap().iter().map(|o| o["server_sequence"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(
        (page["has_more"].clone(), page["page_last_sequence"].clone(), page["server_sequence"].clone()),
        (json!(true), json!(5), json!(7))
    );
    // A cursor from a future the server does not have (e.g. restored from an older backup).
    let ahead = json_of(pull_raw(&app, &d, 8, 0).await, 409).await;
    assert_eq!(ahead["code"], "resync_required");
}

#[tokio::test]
async fn other_vaults_and_users_see_nothing() {
    let app = TestApp::spawn().await;
    let owner = device(&app, "alice", "work").await;
    let other_vault = device(&app, "alice", "home").await;
    let other_user = device(&app, "bob", "work").await;
    let sha = upload(&app, &owner, b"secret attachment").await;
    push(
        &app,
        &owner,
        vec![op(
            "same-id",
            "secret.md",
            "create",
            json!({"path": "secret.md", "blob": {"sha256": sha, "size": 17}}),
            0,
        )],
    )
    .await;

    for stranger in [&other_vault, &other_user] {
        let page = json_of(pull_raw(&app, stranger, 0, 0).await, 200).await;
        assert_eq!(page, json!({"has_more": false, "ops": [], "page_last_sequence": 0, "server_sequence": 0}));
        let download = crate::oplog_client::download(&app, stranger, &sha).await;
        assert_eq!(json_of(download, 404).await["code"], "blob_not_found");
        // Nor can they reference the blob in their own ops.
        let body = json!({"ops": [op("x", "f", "create", json!({"blob": {"sha256": sha, "size": 17}}), 0)]});
        assert_eq!(json_of(push_raw(&app, stranger, &body).await, 400).await["code"], "blob_not_owned");
        // Op ids are scoped: the same id is a new op elsewhere, with the scope's own sequence 1.
        let mine = push(&app, stranger, vec![op("same-id", "e", "create", json!({}), 0)]).await;
        assert_eq!(mine["accepted"], json!(["same-id"]));
        assert_eq!(json_of(pull_raw(&app, stranger, 0, 0).await, 200).await["ops"][0]["server_sequence"], 1);
    }
    let (ops, _) = pull_all(&app, &owner, 0).await;
    assert_eq!(ops.len(), 1, "the owner's log holds only its own op");
}

#[tokio::test]
async fn four_pushers_and_two_pullers_see_every_op_once_in_order() {
    four_pushers_and_two_pullers(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn four_pushers_and_two_pullers(app: TestApp) {
    let app = Arc::new(app);
    let pushers: Vec<Device> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(device(&app, "alice", "shared").await);
        }
        v
    };
    let pullers = [device(&app, "alice", "shared").await, device(&app, "alice", "shared").await];
    let done = Arc::new(AtomicBool::new(false));
    let mut push_tasks = Vec::new();
    for (p, d) in pushers.into_iter().enumerate() {
        let app = app.clone();
        push_tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
            let mut sent = Vec::new();
            let mut batch = 0;
            while tokio::time::Instant::now() < deadline {
                let ops: Vec<Value> = (0..1 + batch % 5)
                    .map(|i| op(&format!("p{p}-b{batch}-{i}"), "shared.md", "update", json!({}), 0))
                    .collect();
                let r = push(&app, &d, ops.clone()).await;
                assert_eq!(r["count"].as_u64().unwrap(), ops.len() as u64);
                sent.extend(ops.iter().map(|o| o["op_id"].as_str().unwrap().to_owned()));
                batch += 1;
            }
            sent
        }));
    }
    let mut pull_tasks = Vec::new();
    for d in pullers {
        let (app, done) = (app.clone(), done.clone());
        pull_tasks.push(tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                // pull_all checks gaps, order and page_last_sequence on every page.
                let (ops, next) = pull_all(&app, &d, cursor).await;
                seen.extend(ops.iter().map(|o| o["op_id"].as_str().unwrap().to_owned()));
                cursor = next;
                if finished {
                    return seen;
                }
            }
        }));
    }
    let mut all_sent = HashSet::new();
    for t in push_tasks {
        all_sent.extend(t.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    assert!(all_sent.len() > 40, "the pushers got some work done: {}", all_sent.len());
    for t in pull_tasks {
        let seen = t.await.unwrap();
        assert_eq!(seen.len(), all_sent.len(), "every op exactly once");
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), all_sent);
    }
}

#[tokio::test]
async fn acknowledged_pushes_and_uploads_survive_kill_9() {
    pushes_and_uploads_survive_kill_9(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn pushes_and_uploads_survive_kill_9(app: TestApp) {
    let mut app = app;
    let d = device(&app, "alice", "v").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let sha = upload(&app, &d, &data).await;
    let mut acknowledged = Vec::new();
    for b in 0..5 {
        let ops: Vec<Value> = (0..20).map(|i| op(&format!("{b}-{i}"), "e", "update", json!({}), 0)).collect();
        let r = push(&app, &d, ops).await;
        acknowledged.extend(r["accepted"].as_array().unwrap().iter().cloned());
    }
    push(&app, &d, vec![op("file", "a.bin", "create", json!({"blob": {"sha256": sha, "size": data.len()}}), 0)]).await;
    app.kill9().await;
    app.restart().await;
    let (ops, cursor) = pull_all(&app, &d, 0).await;
    assert_eq!(cursor, 101);
    let ids: Vec<Value> = ops.iter().take(100).map(|o| o["op_id"].clone()).collect();
    assert_eq!(ids, acknowledged);
    crate::oplog_client::download_verified(&app, &d, &sha, data.len()).await;
}

#[tokio::test]
async fn events_announce_the_new_head_after_each_push() {
    events_announce_new_heads(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn events_announce_new_heads(app: TestApp) {
    let listener = device(&app, "alice", "v").await;
    let pusher = device(&app, "alice", "v").await;
    let stranger = device(&app, "alice", "elsewhere").await;
    push(&app, &pusher, vec![op("0", "e", "create", json!({}), 0)]).await;

    let mut stream = app.client.get(app.url("/api/v1/sync/events")).bearer_auth(&listener.token).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut other = app.client.get(app.url("/api/v1/sync/events")).bearer_auth(&stranger.token).send().await.unwrap();

    let mut received = String::new();
    let next_head = async |stream: &mut reqwest::Response, received: &mut String| -> i64 {
        loop {
            if let Some(end) = received.find("\n\n") {
                let event: String = received.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(event.contains("event: head"), "{event}");
                    return serde_json::from_str::<Value>(data).unwrap()["server_sequence"].as_i64().unwrap();
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap().unwrap();
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    assert_eq!(next_head(&mut stream, &mut received).await, 1, "the current head comes first");
    push(&app, &pusher, vec![op("1", "e", "update", json!({}), 0), op("2", "e", "update", json!({}), 0)]).await;
    assert_eq!(next_head(&mut stream, &mut received).await, 3);
    let mut other_received = String::new();
    assert_eq!(next_head(&mut other, &mut other_received).await, 0, "another vault has its own head");
    let anonymous = app.client.get(app.url("/api/v1/sync/events")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Reads an event stream until the server ends it, failing after `within`.
pub(crate) async fn ends_within(mut stream: reqwest::Response, within: Duration) {
    let ended = tokio::time::timeout(within, async { while let Ok(Some(_)) = stream.chunk().await {} }).await;
    assert!(ended.is_ok(), "the event stream was still open after {within:?}");
}

#[tokio::test]
async fn event_streams_end_when_their_device_is_revoked_or_their_user_blocked() {
    streams_end_on_revocation_and_blocking(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn streams_end_on_revocation_and_blocking(app: TestApp) {
    let revoked = device(&app, "alice", "v").await;
    let bystander = device(&app, "alice", "v").await;
    let open = |d: &Device| app.client.get(app.url("/api/v1/sync/events")).bearer_auth(&d.token).send();
    let revoked_stream = open(&revoked).await.unwrap();
    let mut bystander_stream = open(&bystander).await.unwrap();
    assert_eq!(revoked_stream.status(), 200);

    let answer = app.post_auth("/api/client/revoke-current", &revoked.token, &json!({})).await;
    assert_eq!(json_of(answer, 200).await["status"], "revoked");
    ends_within(revoked_stream, Duration::from_secs(1)).await;
    // The other device of the same vault keeps its stream.
    assert!(
        bystander_stream.chunk().await.unwrap().is_some_and(|c| String::from_utf8_lossy(&c).contains("event: head"))
    );

    let blocked = device(&app, "bob", "v").await;
    let blocked_stream = open(&blocked).await.unwrap();
    assert_eq!(blocked_stream.status(), 200);
    let user_id = json_of(app.get_auth("/api/client/me", &blocked.token).await, 200).await["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.block_user(&user_id).await;
    ends_within(blocked_stream, Duration::from_secs(3)).await;
}
