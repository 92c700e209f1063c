//! Wrongly shaped push and pull bodies: every top-level JSON type but an object, operations that
//! are not objects, and control characters in every id and string field. Each gets a precise
//! 400 and stores nothing.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json as json_of};
use crate::oplog_client::{Device, device, op, pull_all, push, push_raw};

async fn post_raw(app: &TestApp, d: &Device, path: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(&d.token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap().to_owned())
}

fn bad(code: &str) -> (u16, String) {
    (400, code.to_owned())
}

#[tokio::test]
async fn non_object_bodies_are_invalid_requests_on_push_and_pull() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let an_op = op("a", "a.md", "create", json!({"path": "a.md"}), 0).to_string();
    for body in
        ["[]", &format!("[{an_op}]"), &format!("[null, null, [{an_op}]]"), "\"ops\"", "42", "-1.5", "null", "true"]
    {
        assert_eq!(
            code(post_raw(&app, &d, "/api/v1/sync/push", body).await).await,
            bad("invalid_request"),
            "push {body}"
        );
        assert_eq!(
            code(post_raw(&app, &d, "/api/v1/sync/pull", body).await).await,
            bad("invalid_request"),
            "pull {body}"
        );
    }
    // The field-ordered array form of one op, and other non-objects, inside `ops`.
    for ops in [json!([["a", "file", "a.md", "create", "{}", 0, 0, ""]]), json!([1]), json!([null]), json!(["a"])] {
        let response = push_raw(&app, &d, &json!({"ops": ops})).await;
        assert_eq!(code(response).await, bad("invalid_operation"), "ops {ops}");
    }
    // Still malformed JSON and wrong field types keep their own code.
    assert_eq!(code(post_raw(&app, &d, "/api/v1/sync/push", "{").await).await, bad("invalid_json"));
    assert_eq!(code(push_raw(&app, &d, &json!({"ops": "a"})).await).await, bad("invalid_json"));
    assert_eq!(
        code(post_raw(&app, &d, "/api/v1/sync/pull", r#"{"since_sequence":"1"}"#).await).await,
        bad("invalid_json")
    );

    assert_eq!(pull_all(&app, &d, 0).await, (vec![], 0), "nothing was stored");
    // A well-formed push is served as before.
    assert_eq!(push(&app, &d, vec![serde_json::from_str(&an_op).unwrap()]).await["accepted"], json!(["a"]));
    assert_eq!(pull_all(&app, &d, 0).await.1, 1);
}

#[tokio::test]
async fn control_characters_in_ids_and_names_are_refused() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    // C0 (NUL, tab, newline, ESC), DEL and a C1 control.
    let controls = ['\0', '\t', '\n', '\u{1b}', '\u{7f}', '\u{85}'];
    for c in controls {
        for field in ["op_id", "entity_type", "entity_id", "op_type", "created_at"] {
            let mut bad_op = op("ok", "ok.md", "create", json!({"path": "ok.md"}), 0);
            let value = format!("{}{c}x", bad_op[field].as_str().unwrap());
            bad_op[field] = json!(value);
            let response = push_raw(&app, &d, &json!({"ops": [bad_op]})).await;
            let answer = json_of(response, 400).await;
            assert_eq!(answer["code"], "invalid_operation", "{field} with {c:?}: {answer}");
            assert!(answer["error"].as_str().unwrap().contains(field), "{answer}");
        }
        for field in ["device_id", "idempotency_key"] {
            let body = json!({field: format!("k{c}"), "ops": [op("ok", "ok.md", "create", json!({}), 0)]});
            assert_eq!(code(push_raw(&app, &d, &body).await).await, bad("invalid_request"), "{field} with {c:?}");
        }
    }
    // Control characters escaped inside the opaque payload are the payload's own business.
    let fine = op("é ✓", "dir/naïve file.md", "create", json!({"text": "a\u{0}b\nc"}), 0);
    assert_eq!(push(&app, &d, vec![fine]).await["accepted"], json!(["é ✓"]));
    let (ops, head) = pull_all(&app, &d, 0).await;
    assert_eq!((ops.len(), head), (1, 1), "only the well-formed op was stored");
}
