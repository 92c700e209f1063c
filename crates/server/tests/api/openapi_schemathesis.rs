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

/// One bounded schemathesis run against `app` with `token`, over the operations `selection`
/// picks, with the three checks the issue asks for; returns its report. The fixed seed makes a
/// failure reproducible (`st run … --seed 15`). Security parameters are not generated: the run
/// authenticates with the bearer token, and a generated session cookie beside it would only be
/// refused as cross-site (403) before the operation is reached.
async fn run(app: &TestApp, token: &str, selection: &[&str], envs: &[(&str, String)]) -> String {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let output = run_once(app, &bin, token, selection, envs).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // CPython 3.11's `ast` sometimes raises this SystemError inside schemathesis when its two
    // workers compile at once (seen about one run in five here); it is the interpreter failing,
    // not a finding about the server, so that one error gets a second run. Anything else fails.
    let output = if !output.status.success() && stdout.contains("AST constructor recursion depth mismatch") {
        run_once(app, &bin, token, selection, envs).await
    } else {
        output
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "schemathesis failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

async fn run_once(
    app: &TestApp,
    bin: &Path,
    token: &str,
    selection: &[&str],
    envs: &[(&str, String)],
) -> std::process::Output {
    let run = tokio::process::Command::new(bin)
        .current_dir(tool_dir())
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .args(["--checks", "not_a_server_error,status_code_conformance,response_schema_conformance"])
        .args(["--max-examples", "25", "--seed", "15", "--no-color", "--workers", "2"])
        .args(["--generation-with-security-parameters", "false"])
        .args(selection)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(RUN_LIMIT, run).await.expect("schemathesis finishes").unwrap()
}

/// The bound of one run. 25 examples per operation and phase are about 1500 to 3000 requests,
/// under a minute each on a loaded 2-core machine (measured: 40 s for the admin run, 60 s for
/// the user run); they reach the stateful phase's links (list or create, then act on the id),
/// which found the second bug below. The limit leaves room for a slower machine, and the two
/// runs together stay a few minutes of the suite's budget.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// How many operations a run tested, from its summary.
fn tested(report: &str) -> usize {
    let line = report.lines().find_map(|l| l.trim().strip_prefix("Tested: ")).unwrap_or_else(|| panic!("{report}"));
    line.trim().parse().unwrap_or_else(|_| panic!("{report}"))
}

/// Every documented operation outside the admin API but the two that end the caller's own
/// credential (the run would then see only 401s), signed in as a real user.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_schema_violation_or_undocumented_status() {
    let app = TestApp::spawn().await;
    let token = app.sign_in("schemathesis@example.com").await;
    let selection = ["--exclude-path-regex", "^/(auth/logout|api/client/revoke-current|admin/api/.*)$"];
    let report = run(&app, &token, &selection, &[]).await;
    // A run that tested nothing would pass too.
    assert!(tested(&report) > 40, "{report}");
}

/// The op-log and blob APIs as a paired Verstak device (the user run's Diaryx session may not use
/// them, so there it sees only 403s). This run found the undocumented 400 of a malformed blob hash
/// (`GET /api/v1/blobs/0`), now in the description.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_as_a_device_finds_nothing_in_the_op_log_api() {
    let app = TestApp::spawn().await;
    let (_, token) = app.paired_device("schemathesis-device@example.com", "vault").await;
    // No stateful phase: these operations take no ids, so there are no links to follow.
    let selection = ["--include-path-regex", "^/api/v1/(sync/|blobs)", "--phases", "examples,coverage,fuzzing"];
    let report = run(&app, &token, &selection, &[]).await;
    assert!(tested(&report) >= 6, "{report}");
}

/// The admin API, as a real admin (the `--admin-user` account): `admin_hooks.py` gives
/// destructive actions the admin's password and keeps the run off its own account and device,
/// so the run reaches past the password re-check to users, devices and settings.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_as_an_admin_finds_nothing_in_the_admin_api() {
    let app = crate::admin_api::with_admin(TestApp::builder()).spawn().await;
    let token = crate::admin_api::admin_token(&app).await;
    let me = json(app.get_auth("/api/client/me", &token).await, 200).await;
    let envs = [
        ("PYTHONPATH", tool_dir().display().to_string()),
        ("SCHEMATHESIS_HOOKS", "admin_hooks".to_owned()),
        ("CONCORD_ADMIN_PASSWORD", crate::helpers::TEST_PASSWORD.to_owned()),
        ("CONCORD_ADMIN_USER_ID", me["user_id"].as_str().unwrap().to_owned()),
        ("CONCORD_ADMIN_DEVICE_ID", me["device_id"].as_str().unwrap().to_owned()),
    ];
    // Filtering the admin's own ids can leave few cases for an operation; that is the point.
    let selection = ["--include-path-regex", "^/admin/api/", "--suppress-health-check", "filter_too_much"];
    let report = run(&app, &token, &selection, &envs).await;
    // Every admin operation was exercised (the webhooks' among them). Whether generated cases
    // get past the password re-check to create accounts depends on what the seed draws for the
    // whole operation set, so it is not asserted here; the admin API's own tests cover it.
    assert!(tested(&report) >= 26, "{report}");
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
