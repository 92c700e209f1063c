//! schemathesis (PyPI, in a git-ignored venv this test makes) against a live server, signed in as
//! a real user, over every documented operation; plus a regression test for each finding.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::{TestApp, json};

fn tool_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi")
}

/// The venv's `schemathesis`, installed from the pinned requirements on first use.
fn schemathesis() -> PathBuf {
    crate::helpers::python_tool(&tool_dir(), "schemathesis")
}

/// Every documented operation but the two that end the caller's own credential (the run would
/// then see only 401s), with the three checks the issue asks for. 25 examples per operation and
/// phase (about 3000 requests, under a minute on a loaded 2-core machine) reach the stateful
/// phase's links (list, then act on a listed id), which found the second bug below;
/// the fixed seed makes a failure reproducible (`st run … --seed`).
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_schema_violation_or_undocumented_status() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let app = TestApp::spawn().await;
    let token = app.sign_in("schemathesis@example.com").await;
    let run = tokio::process::Command::new(bin)
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .args(["--checks", "not_a_server_error,status_code_conformance,response_schema_conformance"])
        .args(["--max-examples", "25", "--seed", "15", "--no-color", "--workers", "2"])
        .args(["--exclude-path-regex", "^/(auth/logout|api/client/revoke-current)$"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run).await.expect("schemathesis finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // A run that tested nothing would pass too.
    assert!(["Tested: 6", "Tested: 7", "Tested: 8"].iter().any(|n| stdout.contains(n)), "{stdout}");
}

/// Found by schemathesis: `GET /auth/verify` with a bad token answers 400, which the document
/// did not list. The neighbouring sign-in code route is checked the same way.
#[tokio::test]
async fn bad_sign_in_links_and_codes_answer_a_documented_400() {
    let app = TestApp::spawn().await;
    let doc = json(app.get("/api/openapi.json").await, 200).await;
    let body = json(app.get("/auth/verify?token=bogus").await, 400).await;
    assert_eq!(body["code"], "invalid_request", "{body}");
    assert!(doc["paths"]["/auth/verify"]["get"]["responses"]["400"].is_object());
    let response =
        app.post_json("/auth/verify-code", &serde_json::json!({ "email": "a@example.com", "code": "x" })).await;
    let status = response.status().as_u16().to_string();
    assert!(doc["paths"]["/auth/verify-code"]["post"]["responses"][&status].is_object(), "{status} undocumented");
}

/// Found by schemathesis' stateful phase (list devices, delete one): deleting the caller's own
/// device answers 400 (log out instead), which the document did not list.
#[tokio::test]
async fn deleting_the_callers_own_device_answers_a_documented_400() {
    let app = TestApp::spawn().await;
    let doc = json(app.get("/api/openapi.json").await, 200).await;
    let token = app.sign_in("own-device@example.com").await;
    let devices = json(app.get_auth("/auth/devices", &token).await, 200).await;
    let own = devices[0]["id"].as_str().unwrap();
    let response = reqwest::Client::new()
        .delete(app.url(&format!("/auth/devices/{own}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body = json(response, 400).await;
    assert_eq!(body["code"], "invalid_request", "{body}");
    assert!(doc["paths"]["/auth/devices/{id}"]["delete"]["responses"]["400"].is_object());
    // Nothing changed: the device still works.
    json(app.get_auth("/auth/me", &token).await, 200).await;
}
