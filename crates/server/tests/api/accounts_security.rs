//! Account security properties: no secrets at rest, users isolated from each other, the admin
//! bootstrap, and the cleanup job.

use serde_json::json;

use crate::helpers::{DEADLINE, TEST_PASSWORD, TestApp, json};

#[tokio::test]
async fn the_database_file_holds_no_live_token_or_password_in_plaintext() {
    let app = TestApp::spawn().await;
    let mut secrets = vec![TEST_PASSWORD.to_owned()];
    // A Diaryx session, and a magic link and code still waiting to be used.
    secrets.push(app.sign_in("alice@example.com").await);
    let pending = json(app.post_json("/auth/magic-link", &json!({ "email": "alice@example.com" })).await, 200).await;
    secrets.push(pending["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned());
    // A paired device, a web session, and unused confirm and reset tokens.
    let (_, device_token) = app.paired_device("bob@example.com", "vault").await;
    secrets.push(device_token);
    let login = json!({ "username": "bob.example.com", "password": TEST_PASSWORD });
    secrets
        .push(json(app.post_json("/api/v1/auth/login", &login).await, 200).await["token"].as_str().unwrap().to_owned());
    let register = json!({ "username": "carol", "email": "carol@example.com", "password": "carol's password" });
    let registered = json(app.post_json("/api/v1/auth/register", &register).await, 200).await;
    secrets.push(registered["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned());
    secrets.push("carol's password".to_owned());

    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("concord.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(bytes.windows(17).any(|w| w == b"alice@example.com"), "the scan reads the live data");
    for secret in &secrets {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is stored in plaintext");
    }
}

#[tokio::test]
async fn users_cannot_see_or_touch_each_others_devices_or_workspaces() {
    let app = TestApp::spawn().await;
    let (a_device, a_token) = app.paired_device("a@example.com", "vault").await;
    let a_session = app.sign_in("a@example.com").await;
    let (b_device, b_token) = app.paired_device("b@example.com", "vault").await;
    let b_session = app.sign_in("b@example.com").await;
    let a_me = json(app.get_auth("/auth/me", &a_session).await, 200).await;
    let a_workspace = a_me["workspaces"][0]["id"].as_str().unwrap().to_owned();
    let login = json!({ "username": "b.example.com", "password": TEST_PASSWORD });
    let b_web =
        json(app.post_json("/api/v1/auth/login", &login).await, 200).await["token"].as_str().unwrap().to_owned();

    // Reading: B's lists hold only B's things, and A's workspace reads as absent.
    let b_devices = json(app.get_auth("/auth/devices", &b_session).await, 200).await;
    assert!(b_devices.as_array().unwrap().iter().all(|d| d["id"] != a_device.as_str()));
    assert!(b_devices.as_array().unwrap().iter().any(|d| d["id"] == b_device.as_str()));
    let b_listed = json(app.get_auth("/api/v1/user/devices", &b_web).await, 200).await;
    assert!(b_listed.as_array().unwrap().iter().all(|d| d["id"] != a_device.as_str()));
    let b_workspaces = json(app.get_auth("/api/workspaces", &b_session).await, 200).await;
    assert!(b_workspaces.as_array().unwrap().iter().all(|w| w["id"] != a_workspace.as_str()));
    assert_eq!(
        json(app.get_auth(&format!("/api/workspaces/{a_workspace}"), &b_session).await, 404).await["code"],
        "not_found"
    );
    json(app.get_auth(&format!("/api/workspaces/{a_workspace}"), &a_session).await, 200).await;

    // Writing: every route that takes a device id refuses A's device.
    let delete = app.client.delete(app.url(&format!("/auth/devices/{a_device}"))).bearer_auth(&b_session);
    assert_eq!(delete.send().await.unwrap().status(), 404);
    let body = json!({ "device_id": a_device, "password": TEST_PASSWORD });
    let refused = json(app.post_auth("/api/client/revoke-device", &b_token, &body).await, 403).await;
    assert_eq!(refused["error"], "device does not belong to you");
    let path = format!("/api/v1/user/devices/{a_device}/revoke");
    let refused = json(app.post_auth(&path, &b_web, &json!({ "password": TEST_PASSWORD })).await, 403).await;
    assert_eq!(refused["error"], "device does not belong to you");

    // A's device and session are untouched.
    json(app.get_auth("/api/client/me", &a_token).await, 200).await;
    json(app.get_auth("/auth/me", &a_session).await, 200).await;
    // And B can revoke B's own device through the user API.
    let own = format!("/api/v1/user/devices/{b_device}/revoke");
    assert_eq!(
        json(app.post_auth(&own, &b_web, &json!({ "password": TEST_PASSWORD })).await, 200).await["status"],
        "revoked"
    );
    assert_eq!(app.get_auth("/api/client/me", &b_token).await.status(), 401);
}

#[tokio::test]
async fn the_admin_bootstrap_creates_then_updates_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-pass");
    std::fs::write(&file, format!("{TEST_PASSWORD}\n")).unwrap();
    let mut app = TestApp::builder()
        .arg("--admin-user")
        .arg("root")
        .arg("--admin-pass-file")
        .arg(file.to_str().unwrap())
        .spawn()
        .await;
    app.wait_for_log("admin user ready").await;
    let (_, token) = app.paired_device("root", "admin-vault").await;
    assert_eq!(json(app.get_auth("/api/client/me", &token).await, 200).await["username"], "root");

    // A new password in the file and a restart on the same data directory update the admin.
    std::fs::write(&file, "a brand new password\n").unwrap();
    app.restart().await;
    let new = json!({ "login": "root", "password": "a brand new password", "vault_id": "v" });
    json(app.post_json("/api/client/pair", &new).await, 200).await;
    let old = json!({ "login": "root", "password": TEST_PASSWORD, "vault_id": "v" });
    assert_eq!(app.post_json("/api/client/pair", &old).await.status(), 401);

    // The password can come from the environment too.
    let from_env =
        TestApp::builder().env("CONCORD_ADMIN_USER", "ops").env("CONCORD_ADMIN_PASSWORD", TEST_PASSWORD).spawn().await;
    from_env.paired_device("ops", "v").await;
    assert!(!from_env.logs().contains(TEST_PASSWORD));
}

#[tokio::test]
async fn the_admin_password_can_come_from_stdin() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let data = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .env_clear()
        .args(["--data", data.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--admin-user", "root", "--admin-pass-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{TEST_PASSWORD}\n").as_bytes()).await.unwrap();
    drop(stdin);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("server exited before listening");
            if let Some(base) = line.strip_prefix("listening on ") {
                return base.to_owned();
            }
        }
    })
    .await
    .unwrap();
    let body = json!({ "login": "root", "password": TEST_PASSWORD, "vault_id": "v" });
    let paired = reqwest::Client::new().post(format!("{base}/api/client/pair")).json(&body).send().await.unwrap();
    assert_eq!(json(paired, 200).await["device_token"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn an_incomplete_admin_bootstrap_stops_the_server_naming_the_flag() {
    let data = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .env_clear()
        .args(["--data", data.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-user", "root"])
        .output();
    let output = tokio::time::timeout(DEADLINE, run).await.unwrap().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--admin-user"), "{stderr}");

    let short = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .env_clear()
        .env("CONCORD_ADMIN_PASSWORD", "short")
        .args(["--data", data.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-user", "root"])
        .output();
    let output = tokio::time::timeout(DEADLINE, short).await.unwrap().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 8 bytes"));
}

/// Expiry of sessions and revoked tokens is days away, so the store tests cover those rules; this
/// proves the job runs on its own schedule against the live database and spares live links.
#[tokio::test]
async fn the_cleanup_job_runs_periodically_and_removes_used_links() {
    let app = TestApp::builder().env("CONCORD_CLEANUP_INTERVAL_SECS", "1").spawn().await;
    app.sign_in("gone@example.com").await;
    let pending = json(app.post_json("/auth/magic-link", &json!({ "email": "gone@example.com" })).await, 200).await;
    app.wait_for_log("magic_tokens=1").await;
    let token = pending["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    json(app.get(&format!("/auth/verify?token={token}")).await, 200).await;
}
