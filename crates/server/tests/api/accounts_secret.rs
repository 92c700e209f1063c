//! Issue 8, item 18: sign-in codes are stored keyed by a server secret kept outside the database,
//! so a copy of the database alone cannot be used to try the codes of a pending sign-in.

use std::os::unix::fs::PermissionsExt;

use concord_core::token::TokenHash;
use serde_json::json;

use crate::helpers::{DEADLINE, TestApp, json};

async fn request_code(app: &TestApp, email: &str) -> String {
    let sent = json(app.post_json("/auth/magic-link", &json!({ "email": email })).await, 200).await;
    sent["dev_code"].as_str().unwrap().to_owned()
}

async fn stored_code_hashes(app: &TestApp) -> Vec<Vec<u8>> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=ro", app.db_path().display())).await.unwrap();
    let hashes = sqlx::query_scalar("SELECT code_hash FROM magic_tokens").fetch_all(&pool).await.unwrap();
    pool.close().await;
    hashes
}

#[tokio::test]
async fn the_secret_is_created_private_and_keeps_codes_valid_across_restarts() {
    let mut app = TestApp::spawn().await;
    let secret = app.data_dir().join("secret.key");
    let text = std::fs::read_to_string(&secret).unwrap();
    assert!(text.trim().len() == 64 && text.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{text:?}");
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);

    let code = request_code(&app, "ida@example.com").await;
    // What the database holds is not the unkeyed hash anyone could recompute from a guess.
    let plain = TokenHash::of(&format!("sign-in-code:ida@example.com:{code}"));
    let stored = stored_code_hashes(&app).await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], plain.as_bytes().to_vec());
    assert_eq!(stored[0].len(), 32);

    app.restart().await;
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), text, "the secret is kept, not regenerated");
    let body = json!({ "email": "ida@example.com", "code": code });
    json(app.post_json("/auth/verify-code", &body).await, 200).await;
}

#[tokio::test]
async fn a_configured_secret_file_is_used_and_another_key_invalidates_pending_codes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("concord.secret");
    std::fs::write(&file, format!("{}\n", "ab".repeat(32))).unwrap();
    let mut app = TestApp::builder().env("CONCORD_SECRET_FILE", file.to_str().unwrap()).spawn().await;
    assert!(!app.data_dir().join("secret.key").exists(), "no default secret beside a configured one");
    let code = request_code(&app, "jo@example.com").await;
    app.terminate().await;
    std::fs::write(&file, "cd".repeat(32)).unwrap();
    app.restart().await;
    let body = json!({ "email": "jo@example.com", "code": code });
    json(app.post_json("/auth/verify-code", &body).await, 400).await;
    let fresh = request_code(&app, "jo@example.com").await;
    json(app.post_json("/auth/verify-code", &json!({ "email": "jo@example.com", "code": fresh })).await, 200).await;
}

#[tokio::test]
async fn a_missing_or_invalid_secret_file_stops_startup_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "abcd").unwrap();
    let missing = dir.path().join("missing.secret");
    // A default secret file that exists but is damaged is refused too, not silently replaced.
    let damaged = tempfile::tempdir().unwrap();
    std::fs::write(damaged.path().join("secret.key"), "not hex").unwrap();
    for (data, secret, expected) in [
        (dir.path().join("data"), Some(&missing), "No such file"),
        (dir.path().join("data"), Some(&short), "64 hexadecimal characters"),
        (damaged.path().to_owned(), None, "64 hexadecimal characters"),
    ] {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"));
        command.env_clear().args(["--listen", "127.0.0.1:0", "--data"]).arg(&data);
        if let Some(secret) = secret {
            command.env("CONCORD_SECRET_FILE", secret);
        }
        let output = tokio::time::timeout(DEADLINE, command.output()).await.unwrap().unwrap();
        assert!(!output.status.success(), "{expected}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("CONCORD_SECRET_FILE") && stderr.contains(expected), "{stderr}");
    }
}
