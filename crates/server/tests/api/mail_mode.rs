//! The mail mode: dev only on loopback or when asked for, a relay without a login, half a login
//! refused, and no link, code or mail body in the logs in smtp mode.

use serde_json::json;

use crate::helpers::{TEST_PASSWORD, TestApp, concord_refuses_to_start, json};
use crate::smtp_sink::SmtpSink;

#[test]
fn an_exposed_server_without_mail_settings_refuses_to_start_naming_the_setting() {
    // Every way of being reachable from elsewhere: HOST, --listen, IPv4 and IPv6, a file, a public URL.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("concord.toml");
    std::fs::write(&file, "host = \"0.0.0.0\"\nport = 0\n").unwrap();
    for (envs, args) in [
        (&[("HOST", "0.0.0.0"), ("PORT", "0")][..], &[][..]),
        (&[], &["--listen", "0.0.0.0:0"][..]),
        (&[], &["--listen", "[::]:0"][..]),
        (&[], &["--config", file.to_str().unwrap()][..]),
        // Loopback behind a reverse proxy: the public URL tells.
        (&[("PUBLIC_URL", "https://sync.example.com")][..], &["--listen", "127.0.0.1:0"][..]),
        // An empty value is no value (templated environment files produce them).
        (&[("HOST", "0.0.0.0"), ("PORT", "0"), ("SMTP_HOST", ""), ("SMTP_USERNAME", "")][..], &[][..]),
    ] {
        let err = concord_refuses_to_start(envs, args);
        assert!(err.contains("CONCORD_MAIL") && err.contains("--mail"), "{envs:?} {args:?}: {err}");
    }
}

#[test]
fn half_an_smtp_login_or_smtp_without_a_relay_refuses_to_start() {
    for (envs, missing) in [
        (&[("SMTP_HOST", "127.0.0.1"), ("SMTP_USERNAME", "u")][..], "SMTP_PASSWORD"),
        (&[("SMTP_HOST", "127.0.0.1"), ("SMTP_PASSWORD", "sink-password")][..], "SMTP_USERNAME"),
        (&[("CONCORD_MAIL", "smtp")][..], "SMTP_HOST"),
        (&[("CONCORD_MAIL", "maybe")][..], "--mail"),
    ] {
        // On loopback, where no mail settings at all would be dev mode: a half setting is not.
        let err = concord_refuses_to_start(envs, &["--listen", "127.0.0.1:0"]);
        assert!(err.contains(missing), "{envs:?}: {err}");
        assert!(!err.contains("sink-password"), "the error shows no secret: {err}");
    }
}

#[tokio::test]
async fn dev_mode_asked_for_on_an_exposed_address_starts_and_warns() {
    let app = TestApp::builder().listen("0.0.0.0:0").env("CONCORD_MAIL", "dev").spawn().await;
    let logs = app.wait_for_log("mail mode dev").await;
    let line = logs.lines().find(|l| l.contains("mail mode dev")).unwrap();
    assert!(line.contains("WARN") && line.contains("non-loopback"), "{line}");
    let link = json(app.post_json("/auth/magic-link", &json!({"email": "a@example.com"})).await, 200).await;
    assert!(link["dev_link"].is_string(), "dev mode as asked: {link}");
}

#[tokio::test]
async fn loopback_without_settings_is_dev_mode_and_says_so() {
    let app = TestApp::spawn().await;
    let logs = app.wait_for_log("mail mode dev").await;
    let line = logs.lines().find(|l| l.contains("mail mode dev")).unwrap();
    assert!(line.contains("INFO"), "loopback dev mode is the intended default, not a warning: {line}");
    let link = json(app.post_json("/auth/magic-link", &json!({"email": "a@example.com"})).await, 200).await;
    assert!(link["dev_link"].is_string() && link["dev_code"].is_string(), "{link}");
}

#[tokio::test]
async fn a_relay_without_a_login_delivers_and_nothing_is_handed_out() {
    let sink = SmtpSink::start().await;
    // On every interface: a relay alone is mail configured, so the server starts.
    let app = sink.relay_app().listen("0.0.0.0:0").spawn().await;
    let logs = app.wait_for_log("mail mode smtp").await;
    assert!(logs.contains("login=false"), "{logs}");

    let answer = json(app.post_json("/auth/magic-link", &json!({"email": "relay@example.com"})).await, 200).await;
    assert!(answer.get("dev_link").is_none() && answer.get("dev_code").is_none(), "{answer}");
    let mail = sink.next_mail_to("relay@example.com").await;
    assert_eq!(mail.auth_user, None, "no AUTH was sent");
    // The mailed link signs in: the relay path is the real one.
    let token = mail.link_token();
    let verified = json(app.get(&format!("/auth/verify?token={token}&device_name=t")).await, 200).await;
    assert!(verified["token"].is_string());

    let body = json!({"username": "relayed", "email": "relayed@example.com", "password": TEST_PASSWORD});
    let registered = json(app.post_json("/api/v1/auth/register", &body).await, 200).await;
    assert!(registered.get("dev_link").is_none(), "{registered}");
    assert!(sink.next_mail_to("relayed@example.com").await.link().contains("/api/v1/auth/confirm?token="));
}

/// Log lines without their leading timestamp, whose microseconds could match a six-digit code.
fn log_messages(logs: &str) -> Vec<&str> {
    logs.lines().map(|line| line.split_once(' ').map_or(line, |(_, rest)| rest)).collect()
}

#[tokio::test]
async fn in_smtp_mode_no_link_code_or_mail_body_reaches_the_logs() {
    let sink = SmtpSink::start().await;
    // Debug level, so that whatever the libraries log at debug is checked too.
    let app = sink.app().env("CONCORD_LOG", "debug").spawn().await;
    app.wait_for_log("mail mode smtp").await;
    let mut secrets = Vec::new();

    // Sign-in: the link's token and the code.
    json(app.post_json("/auth/magic-link", &json!({"email": "quiet@example.com"})).await, 200).await;
    let sign_in = sink.next_mail_to("quiet@example.com").await;
    secrets.extend([sign_in.link_token(), sign_in.code(), sign_in.text()]);
    let verified =
        json(app.get(&format!("/auth/verify?token={}&device_name=t", sign_in.link_token())).await, 200).await;
    secrets.push(verified["token"].as_str().unwrap().to_owned());

    // Register: the confirmation link; opening it (the page a person sees) logs the URL.
    let body = json!({"username": "quiet", "email": "quiet2@example.com", "password": TEST_PASSWORD});
    json(app.post_json("/api/v1/auth/register", &body).await, 200).await;
    let confirm = sink.next_mail_to("quiet2@example.com").await;
    secrets.extend([confirm.link_token(), confirm.text(), TEST_PASSWORD.to_owned()]);
    assert_eq!(app.client.get(confirm.link()).send().await.unwrap().status(), 200);

    // Forgot: the reset link and its token.
    json(app.post_json("/api/v1/auth/forgot", &json!({"email": "quiet2@example.com"})).await, 200).await;
    let reset = sink.next_mail_to("quiet2@example.com").await;
    secrets.extend([reset.link_token(), reset.text()]);
    assert_eq!(app.client.get(reset.link()).send().await.unwrap().status(), 200);

    let logs = app.wait_for_log("/reset?token=[redacted]").await;
    let messages = log_messages(&logs);
    for secret in &secrets {
        // Whole bodies and each of their lines (a body could be logged in part).
        for piece in std::iter::once(secret.as_str()).chain(secret.lines().filter(|l| l.len() >= 6)) {
            assert!(!messages.iter().any(|m| m.contains(piece)), "{piece:?} reached the logs in smtp mode:\n{logs}");
        }
    }
}
