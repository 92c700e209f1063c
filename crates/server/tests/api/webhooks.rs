//! Webhooks from outside: a real HTTP receiver in this process gets every event type signed over
//! its exact body with the hook's secret and a delivery id; a failed delivery is retried with the
//! same id, also across a `kill -9`; a receiver that hangs does not slow edits or pushes; another
//! user's hooks are 404; bad input is a precise 400 that stores nothing; an admin's server-wide
//! hook hears every workspace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use yrs::{ReadTxn, StateVector, Text, Transact};

use crate::admin_api::{admin_token, call, with_admin};
use crate::helpers::{TestApp, TestAppBuilder, eventually, json};
use crate::oplog_client::op;
use crate::shares_api::{create_share, default_workspace};

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Never: the request is held until the server gives up on it.
    Hang,
}

#[derive(Debug, Clone)]
struct Got {
    delivery: String,
    event: String,
    signature: String,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on a loopback port: records every request, answers as told.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let answer = Arc::new(Mutex::new(answer));
        let (log, mode) = (got.clone(), answer.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (log, mode) = (log.clone(), mode.clone());
                async move {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    log.lock().unwrap().push(Got {
                        delivery: header("concord-delivery"),
                        event: header("concord-event"),
                        signature: header("concord-signature"),
                        body: body.to_vec(),
                    });
                    let answer = *mode.lock().unwrap();
                    match answer {
                        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
                        Answer::Hang => std::future::pending().await,
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, answer }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn of(&self, event: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.event == event).collect()
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}

/// What a receiver does to trust a delivery: recompute the HMAC-SHA256 of the exact body bytes
/// under the secret and compare it with `Concord-Signature`.
fn verifies(secret: &str, got: &Got) -> bool {
    let expected = format!("sha256={}", hex(&concord_core::hmac::hmac_sha256(secret.as_bytes(), &got.body)));
    got.signature == expected
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server that may deliver to this process's loopback receiver, with short windows so the
/// tests wait for one second at most per step: 200 ms debounce, retries from 1 s.
fn hooks_server() -> TestAppBuilder {
    TestApp::builder()
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_DEBOUNCE_MS", "200")
        .env("WEBHOOK_RETRY_BASE_SECS", "1")
        .env("WEBHOOK_TIMEOUT_SECS", "2")
}

/// Creates a hook of `workspace` and returns its answer (status checked).
async fn create_hook(app: &TestApp, token: &str, workspace: &str, body: Value, status: u16) -> Value {
    json(app.post_auth(&format!("/api/workspaces/{workspace}/webhooks"), token, &body).await, status).await
}

async fn hook_log(app: &TestApp, token: &str, workspace: &str, hook: &str) -> Vec<Value> {
    let path = format!("/api/workspaces/{workspace}/webhooks/{hook}/deliveries");
    json(app.get_auth(&path, token).await, 200).await["deliveries"].as_array().unwrap().clone()
}

/// An update appending `text` to the Y.Text "body" of a fresh document.
fn update(text: &str) -> Vec<u8> {
    let doc = yrs::Doc::new();
    let body = doc.get_or_insert_text("body");
    body.insert(&mut doc.transact_mut(), 0, text);
    doc.transact().encode_state_as_update_v1(&StateVector::default())
}

async fn post_update(app: &TestApp, token: &str, workspace: &str, name: &str, text: &str) -> reqwest::Response {
    let request = app.client.post(app.url(&format!("/api/workspaces/{workspace}/docs/{name}"))).bearer_auth(token);
    request.header("content-type", "application/octet-stream").body(update(text)).send().await.unwrap()
}

async fn push(app: &TestApp, token: &str, op_id: &str) -> reqwest::Response {
    let body = json!({"ops": [op(op_id, &format!("{op_id}.md"), "create", json!({"path": format!("{op_id}.md")}), 0)]});
    app.post_auth("/api/v1/sync/push", token, &body).await
}

#[tokio::test]
async fn every_event_type_is_delivered_signed_once_per_delivery_id() {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let app = hooks_server().spawn().await;
    let (_, token) = app.paired_device("alice@example.com", "vault-1").await;
    let workspace = default_workspace(&app, &token).await;
    let events = ["document.updated", "oplog.pushed", "share.created", "share.revoked"];
    let hook = create_hook(&app, &token, &workspace, json!({"url": receiver.url, "events": events}), 201).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert_eq!(hook["events"], json!(events));
    let listed = json(app.get_auth(&format!("/api/workspaces/{workspace}/webhooks"), &token).await, 200).await;
    assert_eq!(listed["webhooks"][0]["id"], hook["id"]);
    assert!(listed["webhooks"][0].get("secret").is_none(), "the secret is shown once");

    // Three edits of one document inside the 200 ms window: one event, with the latest seq.
    for text in ["a", "b", "c"] {
        let written = json(post_update(&app, &token, &workspace, "notes", text).await, 200).await;
        assert!(written["seq"].is_i64(), "{written}");
    }
    assert_eq!(push(&app, &token, "op-1").await.status(), 200);
    let share =
        create_share(&app, &token, json!({"workspace_id": workspace, "doc": "notes", "access": "read-only"}), 201)
            .await;
    let share_id = share["id"].as_str().unwrap();
    let revoked =
        app.client.delete(app.url(&format!("/api/shares/{share_id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.status(), 204);

    eventually(|| async { events.iter().all(|e| !receiver.of(e).is_empty()) }).await;
    let got = receiver.got();
    for delivery in &got {
        assert!(verifies(&secret, delivery), "signature of {delivery:?}");
        let body = delivery.json();
        assert_eq!(body["type"], delivery.event.as_str());
        assert_eq!(delivery.delivery, format!("{}.{}", body["id"].as_str().unwrap(), hook["id"].as_str().unwrap()));
    }
    let ids: std::collections::HashSet<&str> = got.iter().map(|g| g.delivery.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "each delivery once, each with its own id");

    let updated = receiver.of("document.updated");
    let data = &updated.last().unwrap().json()["data"];
    assert_eq!(
        (data["document"].as_str(), updated[0].json()["workspace_id"].as_str()),
        (Some("notes"), Some(workspace.as_str()))
    );
    assert_eq!(data["seq"], 3, "the latest seq of the three edits");
    assert_eq!(updated.len(), 1, "debounced: one event for the three edits");
    let pushed = receiver.of("oplog.pushed")[0].json();
    assert_eq!((pushed["data"]["vault_id"].as_str(), pushed["data"]["head"].as_i64()), (Some("vault-1"), Some(1)));
    for kind in ["share.created", "share.revoked"] {
        let body = receiver.of(kind)[0].json();
        assert_eq!(
            (body["data"]["share_id"].as_str(), body["data"]["access"].as_str()),
            (Some(share_id), Some("read-only"))
        );
    }

    // A receiver refuses a tampered body, or a signature under another secret.
    let mut tampered = got[0].clone();
    tampered.body.push(b' ');
    assert!(!verifies(&secret, &tampered));
    assert!(!verifies("whsec_guess", &got[0]));

    eventually(|| async {
        let log = hook_log(&app, &token, &workspace, hook["id"].as_str().unwrap()).await;
        log.len() == 4
            && log.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1 && d["last_status"] == 200)
    })
    .await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_until_the_receiver_takes_it() {
    let receiver = Receiver::start(Answer::Status(500)).await;
    let app = hooks_server().spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &token).await;
    let hook =
        create_hook(&app, &token, &workspace, json!({"url": receiver.url, "events": ["share.created"]}), 201).await;
    let hook_id = hook["id"].as_str().unwrap();
    create_share(&app, &token, json!({"workspace_id": workspace, "access": "read-write"}), 201).await;

    eventually(|| async {
        let log = hook_log(&app, &token, &workspace, hook_id).await;
        log.len() == 1 && log[0]["attempts"].as_u64() >= Some(1)
    })
    .await;
    let failed = hook_log(&app, &token, &workspace, hook_id).await.remove(0);
    assert_eq!((failed["status"].as_str(), failed["last_status"].as_i64()), (Some("pending"), Some(500)), "{failed}");
    assert!(failed["last_error"].as_str().unwrap().contains("500"), "{failed}");
    assert!(failed["next_attempt_at"].is_i64());

    receiver.answer(Answer::Status(200));
    eventually(|| async { hook_log(&app, &token, &workspace, hook_id).await[0]["status"] == "delivered" }).await;
    let got = receiver.got();
    assert!(got.len() >= 2, "one failure, then the retry: {got:?}");
    assert!(
        got.iter().all(|g| g.delivery == got[0].delivery && g.body == got[0].body),
        "the same id and body: {got:?}"
    );
}

#[tokio::test]
async fn pending_deliveries_survive_a_kill_9_and_arrive_after_the_restart() {
    let receiver = Receiver::start(Answer::Status(503)).await;
    let mut app = hooks_server().spawn().await;
    let token = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &token).await;
    let hook =
        create_hook(&app, &token, &workspace, json!({"url": receiver.url, "events": ["document.updated"]}), 201).await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(post_update(&app, &token, &workspace, "notes", "kept").await.status(), 200);
    // In the outbox once an attempt is logged (the receiver has refused it).
    eventually(|| async {
        hook_log(&app, &token, &workspace, &hook_id).await.first().is_some_and(|d| d["attempts"] != 0)
    })
    .await;

    app.kill9().await;
    receiver.answer(Answer::Status(200));
    app.restart().await;
    let token = app.sign_in("alice@example.com").await;
    eventually(|| async { hook_log(&app, &token, &workspace, &hook_id).await[0]["status"] == "delivered" }).await;
    let got = receiver.got();
    assert!(got.iter().all(|g| g.delivery == got[0].delivery), "one delivery, tried before and after: {got:?}");
    assert_eq!(got.last().unwrap().json()["data"]["document"], "notes");
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_slow_edits_or_pushes() {
    let receiver = Receiver::start(Answer::Hang).await;
    // A 30 s request timeout: every delivery slot stays held by the hanging receiver for the
    // whole test.
    let app = hooks_server().env("WEBHOOK_TIMEOUT_SECS", "30").spawn().await;
    let (_, token) = app.paired_device("alice@example.com", "vault-1").await;
    let workspace = default_workspace(&app, &token).await;
    let events = json!(["document.updated", "oplog.pushed"]);
    create_hook(&app, &token, &workspace, json!({"url": receiver.url, "events": events}), 201).await;
    // Twelve documents, twelve events: more than the eight delivery slots, all of them hanging.
    for i in 0..12 {
        assert_eq!(post_update(&app, &token, &workspace, &format!("fill-{i}"), "x").await.status(), 200);
    }
    eventually(|| async { receiver.got().len() >= 8 }).await;

    // Each acknowledgement stays prompt while the receiver holds every slot. A second allows
    // for a loaded CI machine; a sync path waiting on the receiver would take 30.
    for i in 0..10 {
        let started = Instant::now();
        assert_eq!(post_update(&app, &token, &workspace, "notes", &i.to_string()).await.status(), 200);
        assert_eq!(push(&app, &token, &format!("op-{i}")).await.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(1), "edit and push {i} took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn another_users_hooks_are_not_found_and_bad_input_changes_nothing() {
    // Without WEBHOOK_ALLOW_PRIVATE: loopback receivers are refused.
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let good = json!({"url": "https://hooks.example.com/in", "events": ["share.created"]});
    let hook = create_hook(&app, &alice, &workspace, good.clone(), 201).await;
    let hook_id = hook["id"].as_str().unwrap();

    let bob = app.sign_in("bob@example.com").await;
    let base = format!("/api/workspaces/{workspace}/webhooks");
    for (method, path) in [
        ("GET", base.clone()),
        ("POST", base.clone()),
        ("DELETE", format!("{base}/{hook_id}")),
        ("GET", format!("{base}/{hook_id}/deliveries")),
    ] {
        let (status, body) = call(&app, method, &path, Some(&bob), Some(good.clone())).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{method} {path} as bob: {body}");
    }
    // Nor does bob reach it through his own workspace.
    let bobs = default_workspace(&app, &bob).await;
    let (status, _) =
        call(&app, "DELETE", &format!("/api/workspaces/{bobs}/webhooks/{hook_id}"), Some(&bob), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, "GET", &base, None, None).await;
    assert_eq!(status, 401);

    let cases = [
        (json!({"url": "ftp://hooks.example.com/", "events": ["share.created"]}), "invalid_url"),
        (json!({"url": "not a url", "events": ["share.created"]}), "invalid_url"),
        (json!({"url": "https://user:pw@hooks.example.com/", "events": ["share.created"]}), "invalid_url"),
        (json!({"url": "http://127.0.0.1:9/", "events": ["share.created"]}), "private_address"),
        (json!({"url": "http://[::1]/", "events": ["share.created"]}), "private_address"),
        (json!({"url": "http://169.254.169.254/latest", "events": ["share.created"]}), "private_address"),
        (json!({"url": "http://0x7f.1/", "events": ["share.created"]}), "private_address"),
        (json!({"url": "https://hooks.example.com/", "events": ["share.deleted"]}), "unknown_event"),
        (json!({"url": "https://hooks.example.com/", "events": []}), "invalid_events"),
        (json!({"url": "https://hooks.example.com/", "events": ["share.created"], "secret": "mine"}), "invalid_json"),
        (json!({"url": "https://hooks.example.com/"}), "invalid_json"),
    ];
    for (body, code) in cases {
        let answer = create_hook(&app, &alice, &workspace, body.clone(), 400).await;
        assert_eq!(answer["code"], code, "{body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let listed = json(app.get_auth(&base, &alice).await, 200).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1, "nothing stored: {listed}");

    let (status, _) = call(&app, "DELETE", &format!("{base}/{hook_id}"), Some(&alice), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, "GET", &format!("{base}/{hook_id}/deliveries"), Some(&alice), None).await;
    assert_eq!(status, 404, "gone with its log");
}

#[tokio::test]
async fn the_admins_server_wide_hook_hears_every_workspace() {
    let receiver = Receiver::start(Answer::Status(204)).await;
    let app = with_admin(hooks_server()).spawn().await;
    let admin = admin_token(&app).await;
    let body = json!({"url": receiver.url, "events": ["share.created", "document.updated"]});
    let (status, hook) = call(&app, "POST", "/admin/api/webhooks", Some(&admin), Some(body.clone())).await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!(hook["workspace_id"], Value::Null);
    let secret = hook["secret"].as_str().unwrap().to_owned();

    let alice = app.sign_in("alice@example.com").await;
    let (status, answer) = call(&app, "POST", "/admin/api/webhooks", Some(&alice), Some(body)).await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = call(&app, "GET", "/admin/api/webhooks", Some(&alice), None).await;
    assert_eq!(status, 403);
    // A person's own hooks list has nothing of the server's.
    let alices = default_workspace(&app, &alice).await;
    let listed = json(app.get_auth(&format!("/api/workspaces/{alices}/webhooks"), &alice).await, 200).await;
    assert_eq!(listed["webhooks"], json!([]));

    let bob = app.sign_in("bob@example.com").await;
    let bobs = default_workspace(&app, &bob).await;
    create_share(&app, &alice, json!({"workspace_id": alices, "access": "read-only"}), 201).await;
    create_share(&app, &bob, json!({"workspace_id": bobs, "access": "read-only"}), 201).await;
    assert_eq!(post_update(&app, &bob, &bobs, "plans", "x").await.status(), 200);
    eventually(|| async { receiver.of("share.created").len() == 2 && receiver.of("document.updated").len() == 1 })
        .await;
    let workspaces: std::collections::BTreeSet<String> =
        receiver.of("share.created").iter().map(|g| g.json()["workspace_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(workspaces, [alices, bobs.clone()].into_iter().collect());
    assert!(receiver.got().iter().all(|g| verifies(&secret, g)));

    let hook_id = hook["id"].as_str().unwrap();
    let (status, log) =
        call(&app, "GET", &format!("/admin/api/webhooks/{hook_id}/deliveries"), Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 3, "{log}");
    let (status, listed) = call(&app, "GET", "/admin/api/webhooks", Some(&admin), None).await;
    assert_eq!((status, listed["webhooks"].as_array().unwrap().len()), (200, 1));
    let (status, _) = call(&app, "DELETE", &format!("/admin/api/webhooks/{hook_id}"), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&app, "DELETE", &format!("/admin/api/webhooks/{hook_id}"), Some(&admin), None).await;
    assert_eq!(status, 404);

    // Adding and removing a hook that hears everyone is audited, with the receiver's origin only
    // (a hook's path is often its receiver's secret) and never the signing secret; Alice's refused
    // attempt and the second (404) delete leave no entry.
    let audited = async |event: &str| {
        let path = format!("/admin/api/audit?event={event}");
        eventually(|| async { !call(&app, "GET", &path, Some(&admin), None).await.1["items"][0].is_null() }).await;
        call(&app, "GET", &path, Some(&admin), None).await.1
    };
    let created = audited("webhook_created").await;
    let deleted = audited("webhook_deleted").await;
    let origin = receiver.url.trim_end_matches("/hook");
    assert_eq!(created["total"], 1, "{created}");
    assert_eq!(
        created["items"][0]["detail"],
        format!("server-wide webhook to {origin} for share.created, document.updated")
    );
    assert_eq!(deleted["total"], 1, "{deleted}");
    assert_eq!(deleted["items"][0]["detail"], format!("server-wide webhook {hook_id} deleted"));
    for entry in [&created, &deleted] {
        assert!(!entry.to_string().contains(&secret) && !entry.to_string().contains("/hook"), "{entry}");
    }
}
