//! Regression tests for what the schemathesis runs found: each answer is checked against the
//! live document, so the status stays both answered and documented.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json as expect_json};

fn documents(doc: &Value, method: &str, path: &str, status: u16) -> bool {
    doc["paths"][path][method]["responses"][status.to_string()].is_object()
}

/// Found by the device run: a pull from beyond the head answers 409 `resync_required`, which
/// the document did not list. The neighbouring forms (a cursor at the head, one past it) are
/// checked too: the first is an empty page, the second the documented refusal.
#[tokio::test]
async fn a_pull_ahead_of_the_head_answers_a_documented_409() {
    let app = TestApp::spawn().await;
    let doc = expect_json(app.get("/api/openapi.json").await, 200).await;
    let (_, token) = app.paired_device("ahead@example.com", "vault").await;
    for since in [i64::MAX - 1, 1] {
        let response = app.post_auth("/api/v1/sync/pull", &token, &json!({ "since_sequence": since })).await;
        let body = expect_json(response, 409).await;
        assert_eq!(body["code"], "resync_required", "{body}");
    }
    assert!(documents(&doc, "post", "/api/v1/sync/pull", 409));
    let page =
        expect_json(app.post_auth("/api/v1/sync/pull", &token, &json!({ "since_sequence": 0 })).await, 200).await;
    assert_eq!(page["ops"].as_array().map(Vec::len), Some(0), "{page}");
}

/// The server-sent events endpoint is documented with the media type it answers, so a client
/// generated from the document reads a stream and not a string.
#[tokio::test]
async fn the_event_stream_is_documented_as_text_event_stream() {
    let app = TestApp::spawn().await;
    let doc = expect_json(app.get("/api/openapi.json").await, 200).await;
    let (_, token) = app.paired_device("events@example.com", "vault").await;
    let response = app.get_auth("/api/v1/sync/events", &token).await;
    assert_eq!(response.status(), 200);
    let served = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(served.starts_with("text/event-stream"), "{served}");
    let content = &doc["paths"]["/api/v1/sync/events"]["get"]["responses"]["200"]["content"];
    assert!(content["text/event-stream"].is_object(), "{content}");
}
