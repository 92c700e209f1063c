//! Issue 10, secrets from files: `SMTP_PASSWORD_FILE`, `CONCORD_ADMIN_PASSWORD_FILE` and systemd
//! credentials (`$CREDENTIALS_DIRECTORY`) reach the relay and the admin account; bad ones stop
//! the start, naming the setting.

use std::path::Path;

use serde_json::json;

use crate::helpers::{TEST_PASSWORD, TestApp, TestAppBuilder, concord_refuses_to_start, json};
use crate::smtp_sink::SmtpSink;

/// A server mailing through `sink` with the login `concord` and no password setting of its own.
fn mailing_through(sink: &SmtpSink) -> TestAppBuilder {
    TestApp::builder()
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", sink.addr.port().to_string())
        .env("SMTP_SECURITY", "none")
        .env("SMTP_USERNAME", "concord")
}

/// Asks for a sign-in mail to `to` and returns the password the relay was given for it.
async fn password_the_relay_saw(app: &TestApp, sink: &SmtpSink, to: &str) -> Option<String> {
    json(app.post_json("/auth/magic-link", &json!({ "email": to })).await, 200).await;
    sink.next_mail_to(to).await.auth_password
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn secrets_come_from_files_without_their_trailing_newline() {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = mailing_through(&sink)
        .env("SMTP_PASSWORD_FILE", write(dir.path(), "smtp", "file password\n"))
        .env("CONCORD_ADMIN_USER", "root")
        .env("CONCORD_ADMIN_PASSWORD_FILE", write(dir.path(), "admin", &format!("{TEST_PASSWORD}\r\n")))
        .spawn()
        .await;
    assert_eq!(password_the_relay_saw(&app, &sink, "ann@example.com").await.as_deref(), Some("file password"));
    app.paired_device("root", "v").await;
    assert!(!app.logs().contains("file password") && !app.logs().contains(TEST_PASSWORD));
}

#[tokio::test]
async fn systemd_credentials_are_read_when_nothing_else_is_set() {
    let sink = SmtpSink::start().await;
    let credentials = tempfile::tempdir().unwrap();
    write(credentials.path(), "smtp_password", "credential password\n");
    write(credentials.path(), "admin_password", &format!("{TEST_PASSWORD}\n"));
    let dir = credentials.path().to_str().unwrap();
    let app = mailing_through(&sink).env("CREDENTIALS_DIRECTORY", dir).env("CONCORD_ADMIN_USER", "root").spawn().await;
    assert_eq!(password_the_relay_saw(&app, &sink, "bea@example.com").await.as_deref(), Some("credential password"));
    app.paired_device("root", "v").await;
    // A password set as a setting wins over the credential, as over any default.
    let app = mailing_through(&sink).env("CREDENTIALS_DIRECTORY", dir).env("SMTP_PASSWORD", "given").spawn().await;
    assert_eq!(password_the_relay_saw(&app, &sink, "cid@example.com").await.as_deref(), Some("given"));
}

#[tokio::test]
async fn bad_secret_settings_stop_the_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = write(dir.path(), "smtp", "p\n");
    let admin = write(dir.path(), "admin", &format!("{TEST_PASSWORD}\n"));
    let empty = write(dir.path(), "empty", "\n");
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let relay = [("SMTP_HOST", "relay")];
    for (envs, args, names) in [
        (
            vec![("SMTP_PASSWORD", "p"), ("SMTP_PASSWORD_FILE", smtp.as_str())],
            vec![],
            vec!["SMTP_PASSWORD and SMTP_PASSWORD_FILE"],
        ),
        (vec![("SMTP_PASSWORD_FILE", missing.as_str())], vec![], vec!["SMTP_PASSWORD_FILE", "missing"]),
        (vec![("SMTP_PASSWORD_FILE", empty.as_str())], vec![], vec!["SMTP_PASSWORD_FILE", "empty"]),
        (
            vec![("CONCORD_ADMIN_USER", "root"), ("CONCORD_ADMIN_PASSWORD_FILE", missing.as_str())],
            vec![],
            vec!["CONCORD_ADMIN_PASSWORD_FILE"],
        ),
        (
            vec![("CONCORD_ADMIN_USER", "root"), ("CONCORD_ADMIN_PASSWORD", "x")],
            vec!["--admin-pass-file", &admin],
            vec!["--admin-pass-file", "CONCORD_ADMIN_PASSWORD"],
        ),
        // A credential folder holding `smtp_password` as something unreadable.
        (vec![("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())], vec![], vec!["CREDENTIALS_DIRECTORY"]),
    ] {
        let envs: Vec<_> = relay.iter().copied().chain(envs).collect();
        if envs.iter().any(|(k, _)| *k == "CREDENTIALS_DIRECTORY") {
            std::fs::create_dir_all(dir.path().join("smtp_password")).unwrap();
        }
        let err = concord_refuses_to_start(&envs, &args);
        for name in names {
            assert!(err.contains(name), "{envs:?} {args:?}: {err} should name {name}");
        }
    }
}
