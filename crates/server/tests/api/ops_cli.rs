//! The recovery CLI on a data directory the server is using at the same moment: passwords,
//! blocking (open sockets close), the user and device commands with their exit codes, `--help`,
//! and `doctor`'s findings.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::helpers::{CliRun, TEST_PASSWORD, TestApp, concord_cli, json as json_of};
use crate::oplog_client::{device, op, push, sha256_hex, upload};
use crate::yjs_client::RawClient;

/// `concord <args…> --data <the app's directory>`, with `stdin`.
async fn cli(app: &TestApp, args: &[&str], stdin: &str) -> CliRun {
    let data = app.data_dir().to_str().unwrap().to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--data", data.as_str()]);
    concord_cli(&all, stdin).await
}

async fn login_status(app: &TestApp, username: &str, password: &str) -> u16 {
    app.post_json("/api/v1/auth/login", &json!({"username": username, "password": password})).await.status().as_u16()
}

/// How long the server may take to notice a change made by another process; it re-reads
/// blocking and revocation for open connections about twice a second.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_cli_resets_a_password_and_blocks_a_user_on_a_running_server() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let username = "alice.example.com";
    assert_eq!(login_status(&app, username, TEST_PASSWORD).await, 200);

    // A password the policy refuses changes nothing.
    let short = cli(&app, &["user", "set-password", username], "short\n").await;
    assert_eq!(short.code, 2, "{short:?}");
    assert_eq!(login_status(&app, username, TEST_PASSWORD).await, 200);
    let reset = cli(&app, &["user", "set-password", username], "a brand new passphrase\n").await;
    assert_eq!(reset.code, 0, "{reset:?}");
    assert_eq!(login_status(&app, username, "a brand new passphrase").await, 200);
    assert_eq!(login_status(&app, username, TEST_PASSWORD).await, 401);
    // The email works as well as the username; the device stays paired.
    let by_email = cli(&app, &["user", "set-password", "alice@example.com"], "another new passphrase\r\n").await;
    assert_eq!(by_email.code, 0, "{by_email:?}");
    assert_eq!(login_status(&app, username, "another new passphrase").await, 200);
    json_of(app.get_auth("/api/client/me", &d.token).await, 200).await;

    // Blocking: the open WebSocket and event stream close, requests are refused.
    let session = app.sign_in("alice@example.com").await;
    let mut socket = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={session}"))).await;
    socket.insert("hello").await;
    let mut events = app.client.get(app.url("/api/v1/sync/events")).bearer_auth(&d.token).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let bystander = app.sign_in("bob@example.com").await;
    let mut other = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={bystander}"))).await;

    let blocked = cli(&app, &["user", "block", username], "").await;
    assert_eq!(blocked.code, 0, "{blocked:?}");
    let closed = tokio::time::timeout(NOTICED_WITHIN, socket.closed_code()).await;
    assert!(closed.is_ok(), "the blocked user's WebSocket was still open after {NOTICED_WITHIN:?}");
    let ended = tokio::time::timeout(NOTICED_WITHIN, async { while let Ok(Some(_)) = events.chunk().await {} }).await;
    assert!(ended.is_ok(), "the blocked user's event stream was still open after {NOTICED_WITHIN:?}");
    assert_eq!(app.get_auth("/api/client/me", &d.token).await.status(), 403);
    // Another user's socket on the same document stays open and served.
    other.insert("still here").await;
    other.pump_for(Duration::from_millis(200)).await;
    assert!(other.closed.is_none(), "a bystander's socket stays open");

    let unblocked = cli(&app, &["user", "unblock", username], "").await;
    assert_eq!(unblocked.code, 0, "{unblocked:?}");
    json_of(app.get_auth("/api/client/me", &d.token).await, 200).await;
}

#[tokio::test]
async fn user_and_device_commands_and_their_exit_codes() {
    let app = TestApp::spawn().await;
    let created =
        cli(&app, &["user", "create", "root", "--email", "Root@Example.com", "--admin"], "root passphrase\n").await;
    assert_eq!(created.code, 0, "{created:?}");
    assert_eq!(login_status(&app, "root", "root passphrase").await, 200, "created confirmed, ready to log in");
    let taken = cli(&app, &["user", "create", "root", "--email", "other@example.com"], "root passphrase\n").await;
    assert_eq!(taken.code, 4, "{taken:?}");
    let bad_name = cli(&app, &["user", "create", "no spaces", "--email", "x@example.com"], "root passphrase\n").await;
    assert_eq!(bad_name.code, 2, "{bad_name:?}");

    let list = cli(&app, &["user", "list"], "").await;
    assert_eq!(list.code, 0);
    let row = list.stdout.lines().find(|l| l.contains("\troot\t")).unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(row.contains("root@example.com\tyes\tno\tyes"), "email lowercased, confirmed, not blocked, admin: {row}");
    assert_eq!(cli(&app, &["user", "make-admin", "root", "--revoke"], "").await.code, 0);
    let list = cli(&app, &["user", "list"], "").await.stdout;
    assert!(list.contains("root@example.com\tyes\tno\tno"), "{list}");

    // A registered but unconfirmed account can be confirmed by the operator.
    let body = json!({"username": "dora", "email": "dora@example.com", "password": TEST_PASSWORD});
    json_of(app.post_json("/api/v1/auth/register", &body).await, 200).await;
    assert_eq!(login_status(&app, "dora", TEST_PASSWORD).await, 403, "unconfirmed");
    assert_eq!(cli(&app, &["user", "confirm", "dora"], "").await.code, 0);
    assert_eq!(login_status(&app, "dora", TEST_PASSWORD).await, 200);

    // Devices: listed per user and revoked by id.
    let d = device(&app, "erin", "vault-9").await;
    let devices = cli(&app, &["device", "list", "--user", "erin@example.com"], "").await;
    assert_eq!(devices.code, 0);
    assert!(devices.stdout.contains(&d.device_id) && devices.stdout.contains("vault-9"), "{}", devices.stdout);
    assert!(!devices.stdout.contains("root"), "only erin's devices: {}", devices.stdout);
    assert!(cli(&app, &["device", "list"], "").await.stdout.contains(&d.device_id));
    assert_eq!(cli(&app, &["device", "revoke", &d.device_id], "").await.code, 0);
    assert_eq!(app.get_auth("/api/client/me", &d.token).await.status(), 401);
    assert_eq!(cli(&app, &["device", "revoke", "no-such-device"], "").await.code, 3);

    // Deleting needs --yes; then the account and its data are gone.
    let unconfirmed = cli(&app, &["user", "delete", "dora"], "").await;
    assert_eq!(unconfirmed.code, 2, "{unconfirmed:?}");
    assert_eq!(login_status(&app, "dora", TEST_PASSWORD).await, 200);
    assert_eq!(cli(&app, &["user", "delete", "dora", "--yes"], "").await.code, 0);
    assert_eq!(login_status(&app, "dora", TEST_PASSWORD).await, 401);

    for missing in
        [&["user", "block", "nobody"][..], &["user", "set-password", "nobody"], &["user", "delete", "nobody", "--yes"]]
    {
        let run = cli(&app, missing, "some long passphrase\n").await;
        assert_eq!(run.code, 3, "{missing:?}: {run:?}");
        assert!(run.stderr.contains("no user \"nobody\""), "{run:?}");
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let no_db = concord_cli(&["user", "list", "--data", elsewhere.path().to_str().unwrap()], "").await;
    assert_eq!(no_db.code, 3, "{no_db:?}");
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "no database is created by a typo");

    // Every command explains itself and its exit codes; unknown commands are usage errors.
    for command in [
        &["backup"][..],
        &["restore"],
        &["doctor"],
        &["user", "list"],
        &["user", "create"],
        &["user", "set-password"],
        &["user", "block"],
        &["user", "unblock"],
        &["user", "confirm"],
        &["user", "make-admin"],
        &["user", "delete"],
        &["device", "list"],
        &["device", "revoke"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = concord_cli(&args, "").await;
        assert_eq!(help.code, 0, "{args:?}");
        assert!(help.stdout.contains("Usage: concord") && help.stdout.contains("Exit codes"), "{args:?}: {help:?}");
    }
    assert_eq!(concord_cli(&["user", "promote", "root"], "").await.code, 2);
    assert_eq!(concord_cli(&["device"], "").await.code, 2);
}

fn blob_path(data: &Path, sha: &str) -> std::path::PathBuf {
    data.join("blobs").join(&sha[0..2]).join(&sha[2..4]).join(sha)
}

#[tokio::test]
async fn doctor_reports_each_finding_on_a_running_server() {
    let app = TestApp::spawn().await;
    let d = device(&app, "alice", "v").await;
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
    let sha = upload(&app, &d, &data).await;
    push(&app, &d, vec![op("f", "a.bin", "create", json!({"blob": {"sha256": sha, "size": data.len()}}), 0)]).await;
    let healthy = cli(&app, &["doctor"], "").await;
    assert_eq!(healthy.code, 0, "{healthy:?}");
    for line in [
        "integrity_check: ok",
        "all 1 referenced blobs present",
        "no orphan blob files",
        "no abandoned uploads",
        "MiB free",
    ] {
        assert!(healthy.stdout.contains(line), "{line:?} in {}", healthy.stdout);
    }
    assert!(
        healthy.stdout.contains(&format!("version {}", concord_store::sqlite::SqliteStore::latest_schema_version()))
    );

    // An unreferenced blob and an abandoned upload are warnings: nothing is lost.
    let orphan = b"nobody references me";
    let orphan_path = blob_path(app.data_dir(), &sha256_hex(orphan));
    std::fs::create_dir_all(orphan_path.parent().unwrap()).unwrap();
    std::fs::write(&orphan_path, orphan).unwrap();
    let temp = std::fs::File::create(app.data_dir().join("blobs/tmp/abandoned.part")).unwrap();
    temp.set_modified(SystemTime::now() - Duration::from_secs(2 * 3600)).unwrap();
    let warned = cli(&app, &["doctor"], "").await;
    assert_eq!(warned.code, 0, "{warned:?}");
    assert!(warned.stdout.contains("1 blob files no scope references"), "{}", warned.stdout);
    assert!(warned.stdout.contains("1 abandoned uploads"), "{}", warned.stdout);

    // A referenced blob that is gone is a problem.
    std::fs::remove_file(blob_path(app.data_dir(), &sha)).unwrap();
    let broken = cli(&app, &["doctor"], "").await;
    assert_eq!(broken.code, 1, "{broken:?}");
    assert!(
        broken.stdout.contains(&format!("PROBLEM  blobs            1 referenced blobs missing: {sha}")),
        "{}",
        broken.stdout
    );
}
