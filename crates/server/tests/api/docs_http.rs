//! The document HTTP API against real providers: an update posted over HTTP reaches a live
//! y-websocket provider, what HTTP serves equals the provider's state, isolation and shares are
//! the sockets', bad input changes nothing, and an acknowledged post survives `kill -9`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update, WriteTxn};

use crate::helpers::{TestApp, json};
use crate::shares_api::{create_share, default_workspace};
use crate::yjs_client::{Provider, RawClient};

/// The API path of document `name` of `workspace`, the name as one percent-encoded segment.
fn doc_path(workspace: &str, name: &str) -> String {
    format!("/api/workspaces/{workspace}/docs/{}", name.replace('%', "%25").replace('/', "%2F"))
}

async fn get_state(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn post_update(app: &TestApp, token: &str, path: &str, update: Vec<u8>) -> reqwest::Response {
    let request = app.client.post(app.url(path)).bearer_auth(token);
    request.header("content-type", "application/octet-stream").body(update).send().await.unwrap()
}

/// Applies a state fetched over HTTP to `doc`, checking the content type.
async fn apply_fetched(doc: &Doc, response: reqwest::Response) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    let bytes = response.bytes().await.unwrap();
    doc.transact_mut().apply_update(Update::decode_v1(&bytes).unwrap()).unwrap();
}

/// Appends `text` to the Y.Text "body" of `doc` and returns the change as an update.
fn append(doc: &Doc, text: &str) -> Vec<u8> {
    let sv = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        let body = txn.get_or_insert_text("body");
        let len = body.len(&txn);
        body.insert(&mut txn, len, text);
    }
    doc.transact().encode_state_as_update_v1(&sv)
}

fn body_text(doc: &Doc) -> String {
    let txn = doc.transact();
    txn.get_text("body").map(|t| t.get_string(&txn)).unwrap_or_default()
}

#[tokio::test]
async fn an_update_posted_over_http_reaches_a_live_provider_and_http_serves_the_providers_state() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    // A name with a slash: one path segment when percent-encoded, as the docs say.
    let path = doc_path(&workspace, "notes/a.md");
    let mut provider = Provider::start(&app, "notes/a.md", &alice).await;
    provider.synced().await;
    provider.insert("from-ws ").await;
    provider.set("k", json!({"n": 1})).await;
    provider.wait_for(|s| s["text"] == "from-ws ").await;

    // A backend reads the document, appends to it and posts the change.
    let backend = Doc::new();
    crate::helpers::eventually(|| async {
        let fetched = Doc::new();
        apply_fetched(&fetched, get_state(&app, &alice, &path).await).await;
        body_text(&fetched) == "from-ws "
    })
    .await;
    apply_fetched(&backend, get_state(&app, &alice, &path).await).await;
    let before_post = backend.transact().state_vector();
    let before_state = backend.transact().encode_state_as_update_v1(&StateVector::default());
    let update = append(&backend, "from-http");
    let posted = json(post_update(&app, &alice, &path, update.clone()).await, 200).await;
    assert_eq!(posted["changed"], true);
    assert!(posted["seq"].as_i64().unwrap() > 0);
    let state = provider.wait_for(|s| s["text"] == "from-ws from-http").await;

    // Posting the same update again changes nothing and stores nothing.
    let again = json(post_update(&app, &alice, &path, update).await, 200).await;
    assert_eq!((again["changed"].as_bool(), again["seq"].as_i64()), (Some(false), posted["seq"].as_i64()));

    // The JSON rendering is the provider's own view of its top-level types.
    let rendered = json(get_state(&app, &alice, &format!("{path}/json")).await, 200).await;
    assert_eq!(rendered, json!({"body": state["text"], "m": state["map"]}));

    // A diff against a state vector holds what the vector lacks: applied to a copy that has only
    // what the backend had before its post, it gives the provider's state.
    let behind = Doc::new();
    behind.transact_mut().apply_update(Update::decode_v1(&before_state).unwrap()).unwrap();
    let sv = URL_SAFE_NO_PAD.encode(before_post.encode_v1());
    let lagging = Doc::new();
    apply_fetched(&lagging, get_state(&app, &alice, &format!("{path}?sv={sv}")).await).await;
    assert_eq!(body_text(&lagging), "", "the diff alone lacks what the state vector already has");
    apply_fetched(&behind, get_state(&app, &alice, &format!("{path}?sv={sv}")).await).await;
    assert_eq!(body_text(&behind), state["text"].as_str().unwrap());

    // The listing shows it, with its size and last change.
    let listed = json(get_state(&app, &alice, &format!("/api/workspaces/{workspace}/docs")).await, 200).await;
    let docs = listed["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{listed}");
    assert_eq!(docs[0]["name"], "notes/a.md");
    assert!(docs[0]["bytes"].as_i64().unwrap() > 0 && docs[0]["updated_at"].as_i64().unwrap() > 0);
    provider.quit().await;
}

#[tokio::test]
async fn another_user_gets_404_and_shares_open_what_they_share_as_on_the_sockets() {
    let app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let bob = app.sign_in("bob@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let notes = doc_path(&workspace, "notes");
    let seeded = json(post_update(&app, &alice, &notes, append(&Doc::new(), "secret")).await, 200).await;
    assert_eq!(seeded["changed"], true);
    let list = format!("/api/workspaces/{workspace}/docs");

    // Bob: every route is a 404, and his post stored nothing in Alice's document.
    for path in [list.clone(), notes.clone(), format!("{notes}/json")] {
        assert_eq!(json(get_state(&app, &bob, &path).await, 404).await["code"], "not_found", "{path}");
    }
    assert_eq!(json(post_update(&app, &bob, &notes, append(&Doc::new(), "bob")).await, 404).await["code"], "not_found");
    let deleted = app.client.delete(app.url(&notes)).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(deleted.status(), 404);
    let rendered = json(get_state(&app, &alice, &format!("{notes}/json")).await, 200).await;
    assert_eq!(rendered, json!({"body": "secret"}));
    // No credential at all is a 401.
    assert_eq!(app.client.get(app.url(&notes)).send().await.unwrap().status(), 401);

    // A read-only share of the document reads it, but neither writes, deletes nor lists.
    let share =
        create_share(&app, &alice, json!({"workspace_id": workspace, "doc": "notes", "access": "read-only"}), 201)
            .await;
    let reader = share["token"].as_str().unwrap();
    let fetched = Doc::new();
    apply_fetched(&fetched, get_state(&app, reader, &notes).await).await;
    assert_eq!(body_text(&fetched), "secret");
    assert_eq!(json(post_update(&app, reader, &notes, append(&Doc::new(), "!")).await, 403).await["code"], "read_only");
    let deleted = app.client.delete(app.url(&notes)).bearer_auth(reader).send().await.unwrap();
    assert_eq!(deleted.status(), 403);
    assert_eq!(get_state(&app, reader, &list).await.status(), 403, "a document share lists nothing");
    assert_eq!(get_state(&app, reader, &doc_path(&workspace, "other")).await.status(), 403);

    // A read-write share of the workspace writes and lists.
    let share = create_share(&app, &alice, json!({"workspace_id": workspace, "access": "read-write"}), 201).await;
    let writer = share["token"].as_str().unwrap();
    assert_eq!(json(post_update(&app, writer, &notes, append(&fetched, " shared")).await, 200).await["changed"], true);
    let listed = json(get_state(&app, writer, &list).await, 200).await;
    assert_eq!(listed["documents"][0]["name"], "notes");
    let rendered = json(get_state(&app, &alice, &format!("{notes}/json")).await, 200).await;
    assert_eq!(rendered, json!({"body": "secret shared"}));
}

#[tokio::test]
async fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let app = TestApp::builder().env("SYNC_MAX_FRAME_BYTES", "4096").spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let notes = doc_path(&workspace, "notes");
    json(post_update(&app, &alice, &notes, append(&Doc::new(), "kept")).await, 200).await;
    let before = get_state(&app, &alice, &notes).await.bytes().await.unwrap();

    // Not updates: empty, truncated, a count of clients the bytes cannot hold, random text.
    let mut truncated = append(&Doc::new(), "truncated");
    truncated.truncate(truncated.len() / 2);
    for garbage in [vec![], truncated, vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0], b"hello, world".to_vec()] {
        let answer = json(post_update(&app, &alice, &notes, garbage.clone()).await, 400).await;
        assert_eq!(answer["code"], "invalid_update", "{garbage:?}: {answer}");
    }
    let oversized = append(&Doc::new(), &"x".repeat(5000));
    assert_eq!(json(post_update(&app, &alice, &notes, oversized).await, 413).await["code"], "request_too_large");
    for sv in ["%%%", "AQ", "_w"] {
        let answer = json(get_state(&app, &alice, &format!("{notes}?sv={sv}")).await, 400).await;
        assert_eq!(answer["code"], "invalid_sv", "{sv}: {answer}");
    }
    assert_eq!(json(get_state(&app, &alice, &doc_path(&workspace, "missing")).await, 404).await["code"], "not_found");
    assert_eq!(get_state(&app, &alice, &format!("/api/workspaces/{workspace}/docs/%01")).await.status(), 400);
    assert_eq!(get_state(&app, &alice, &notes).await.bytes().await.unwrap(), before, "nothing changed");
    // Garbage created no document either.
    let listed = json(get_state(&app, &alice, &format!("/api/workspaces/{workspace}/docs")).await, 200).await;
    assert_eq!(listed["documents"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn deleting_a_document_closes_its_connections_and_forgets_it() {
    deleting_closes_and_forgets(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn deleting_closes_and_forgets(app: TestApp) {
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let notes = doc_path(&workspace, "notes");
    let mut client = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={alice}"))).await;
    client.insert("doomed").await;
    // Stored (so the room has the connection): the document is not empty any more.
    crate::helpers::eventually(|| async {
        let state = get_state(&app, &alice, &format!("{notes}/json")).await;
        state.status() == 200 && state.text().await.unwrap().contains("doomed")
    })
    .await;
    let deleted = app.client.delete(app.url(&notes)).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(client.closed_code().await, 1000);
    assert_eq!(get_state(&app, &alice, &notes).await.status(), 404);
    let again = app.client.delete(app.url(&notes)).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let listed = json(get_state(&app, &alice, &format!("/api/workspaces/{workspace}/docs")).await, 200).await;
    assert_eq!(listed, json!({"documents": []}));

    // The race: a delete while the document's first connection is still loading it. Whatever
    // the timing, a delete that answered 204 leaves no document behind and closes the connection
    // (a room that loaded after the delete used to create the document again).
    let mut recreated_after_404 = Vec::new();
    for i in 0..10 {
        let name = format!("racing-{i}");
        let mut client = RawClient::connect(&app.ws_url(&format!("/sync/{name}?token={alice}"))).await;
        client.insert("raced").await;
        let path = doc_path(&workspace, &name);
        let deleted = app.client.delete(app.url(&path)).bearer_auth(&alice).send().await.unwrap();
        match deleted.status().as_u16() {
            204 => {
                // Exactly the deletion close, even when the raced edit reaches the socket after
                // its room closed (it used to find the room's queue gone and close with 1011).
                assert_eq!(closed(&mut client).await, (1000, "document deleted".to_owned()), "{name}");
                assert_eq!(get_state(&app, &alice, &path).await.status(), 404, "{name} came back");
            }
            // Not created yet when the delete ran: the connection creates it afterwards.
            404 => recreated_after_404.push(name),
            other => panic!("{name}: delete answered {other}"),
        }
    }
    let listed = json(get_state(&app, &alice, &format!("/api/workspaces/{workspace}/docs")).await, 200).await;
    for doc in listed["documents"].as_array().unwrap() {
        assert!(recreated_after_404.iter().any(|n| doc["name"] == n.as_str()), "{doc} outlived its delete");
    }
}

/// The close code and reason the server ended `client` with.
async fn closed(client: &mut RawClient) -> (u16, String) {
    client.closed_code().await;
    client.closed.clone().unwrap()
}

#[tokio::test]
async fn deleting_a_workspace_closes_its_rooms_with_the_workspace_close_and_no_other() {
    deleting_a_workspace_closes_its_rooms(TestApp::spawn().await).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn deleting_a_workspace_closes_its_rooms(app: TestApp) {
    let alice = app.sign_in("alice@example.com").await;
    // A bystander in the default workspace, typing throughout: its room shares the group commit
    // with the deleted workspace's rooms and must not notice anything.
    let mut bystander = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={alice}"))).await;
    for i in 0..5 {
        let created = app.post_auth("/api/workspaces", &alice, &json!({"name": format!("w{i}")})).await;
        let workspace = json(created, 201).await["id"].as_str().unwrap().to_owned();
        // One connection settled in the workspace, one racing the delete (still loading, or its
        // edit in flight): both get the workspace close, whatever the timing.
        let mut settled = RawClient::connect(&app.ws_url(&format!("/sync/{workspace}:a?token={alice}"))).await;
        settled.insert("a").await;
        let mut stored = RawClient::connect(&app.ws_url(&format!("/sync/{workspace}:a?token={alice}"))).await;
        assert!(stored.pump_until(|c| c.text() == "a").await);
        let mut racing = RawClient::connect(&app.ws_url(&format!("/sync/{workspace}:b?token={alice}"))).await;
        racing.insert("raced").await;
        bystander.insert(&format!("{i};")).await;
        let deleted = app.client.delete(app.url(&format!("/api/workspaces/{workspace}"))).bearer_auth(&alice);
        assert_eq!(deleted.send().await.unwrap().status(), 204);
        for client in [&mut settled, &mut stored, &mut racing] {
            assert_eq!(closed(client).await, (1000, "workspace deleted".to_owned()));
        }
        let listed = app.get_auth(&format!("/api/workspaces/{workspace}/docs"), &alice).await;
        assert_eq!(listed.status(), 404, "the workspace stays deleted");
    }
    // Someone else's workspace id gets a 404 and closes nothing.
    let bob = app.sign_in("bob@example.com").await;
    let default = default_workspace(&app, &alice).await;
    let refused = app.client.delete(app.url(&format!("/api/workspaces/{default}"))).bearer_auth(&bob);
    assert_eq!(refused.send().await.unwrap().status(), 404);
    let mut reader = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={alice}"))).await;
    assert!(reader.pump_until(|c| c.text() == "0;1;2;3;4;").await, "{}", reader.text());
    bystander.pump_for(std::time::Duration::from_millis(200)).await;
    assert!(bystander.closed.is_none(), "the bystander was closed: {:?}", bystander.closed);
}

#[tokio::test]
async fn an_acknowledged_post_survives_kill_9() {
    let mut app = TestApp::spawn().await;
    let alice = app.sign_in("alice@example.com").await;
    let workspace = default_workspace(&app, &alice).await;
    let notes = doc_path(&workspace, "notes");
    // Several posts, the last one acknowledged just before the kill: each answer means stored.
    let doc = Doc::new();
    for i in 0..5 {
        json(post_update(&app, &alice, &notes, append(&doc, &format!("{i} "))).await, 200).await;
    }
    app.kill9().await;
    app.restart().await;
    let rendered: Value = json(get_state(&app, &alice, &format!("{notes}/json")).await, 200).await;
    assert_eq!(rendered, json!({"body": "0 1 2 3 4 "}));
}
