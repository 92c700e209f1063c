//! The Diaryx sign-in flow end to end, with mail delivered over real SMTP to a test relay.

use serde_json::json;

use crate::helpers::{TestApp, json};
use crate::smtp_sink::SmtpSink;

const INVALID_LINK: &str = "Invalid or expired link. Please request a new one.";

async fn request_link(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/auth/magic-link", &json!({ "email": email })).await
}

#[tokio::test]
async fn magic_link_and_code_sign_in_two_devices_then_revoke_and_log_out() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;

    let sent = json(request_link(&app, " Alice@Example.com ").await, 200).await;
    assert_eq!(sent, json!({ "success": true, "message": "Check your email for a sign-in link." }));
    let mail = sink.next_mail_to("alice@example.com").await;
    assert_eq!(mail.header("Subject").as_deref(), Some("Sign in to Diaryx"));
    assert_eq!(mail.from, "noreply@concord.test");
    let link = mail.link();
    assert!(link.starts_with("http://localhost:5173/auth/verify?token="), "{link}");
    assert!(mail.html().contains(&link));
    assert!(mail.text().contains("15 minutes"));
    let first_token = mail.link_token();
    assert_eq!(first_token.len(), 43);

    // The first device opens the link.
    let verified = json(app.get(&format!("/auth/verify?token={first_token}&device_name=Laptop")).await, 200).await;
    assert_eq!(verified["success"], true);
    assert_eq!(verified["user"]["email"], "alice@example.com");
    let laptop = verified["token"].as_str().unwrap().to_owned();
    let me = json(app.get_auth("/auth/me", &laptop).await, 200).await;
    assert_eq!(me["user"]["id"], verified["user"]["id"]);
    assert_eq!(me["workspaces"][0]["name"], "default");
    assert_eq!(me["devices"].as_array().unwrap().len(), 1);
    assert_eq!(me["devices"][0]["name"], "Laptop");
    let laptop_id = me["devices"][0]["id"].as_str().unwrap().to_owned();
    let seen = me["devices"][0]["last_seen_at"].as_str().unwrap();
    assert!(seen.ends_with("+00:00") && seen.len() == 25, "{seen}");

    // The link works once.
    let reused = json(app.get(&format!("/auth/verify?token={first_token}")).await, 400).await;
    assert_eq!(reused["error"], INVALID_LINK);

    // A second device signs in with the code from a new mail; a wrong code is refused first.
    json(request_link(&app, "alice@example.com").await, 200).await;
    let code = sink.next_mail_to("alice@example.com").await.code();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = app.post_json("/auth/verify-code", &json!({ "email": "alice@example.com", "code": wrong })).await;
    assert_eq!(json(refused, 400).await["error"], "Invalid or expired code. Please request a new one.");
    let body = json!({ "email": "ALICE@example.com", "code": code, "device_name": "Phone" });
    let by_code = json(app.post_json("/auth/verify-code", &body).await, 200).await;
    assert_eq!(by_code["user"]["id"], verified["user"]["id"]);
    let phone = by_code["token"].as_str().unwrap().to_owned();
    let devices = json(app.get_auth("/auth/devices", &phone).await, 200).await;
    let names: Vec<&str> = devices.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Laptop") && names.contains(&"Phone"));

    // The phone removes the laptop, whose token dies at once; it cannot remove itself.
    let phone_id = devices.as_array().unwrap().iter().find(|d| d["name"] == "Phone").unwrap()["id"].clone();
    let own = app.client.delete(app.url(&format!("/auth/devices/{}", phone_id.as_str().unwrap()))).bearer_auth(&phone);
    assert_eq!(own.send().await.unwrap().status(), 400);
    let removed = app.client.delete(app.url(&format!("/auth/devices/{laptop_id}"))).bearer_auth(&phone);
    assert_eq!(removed.send().await.unwrap().status(), 204);
    assert_eq!(json(app.get_auth("/auth/me", &laptop).await, 401).await["error"], "device revoked");
    let gone = app.client.delete(app.url("/auth/devices/dev_000000000000000000000000")).bearer_auth(&phone);
    assert_eq!(gone.send().await.unwrap().status(), 404);

    // Logout ends the phone's session.
    let logout = app.client.post(app.url("/auth/logout")).bearer_auth(&phone).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(app.get_auth("/auth/me", &phone).await.status(), 401);

    // Three links an hour per address: the fourth is refused with a retry delay.
    json(request_link(&app, "alice@example.com").await, 200).await;
    let limited = request_link(&app, "alice@example.com").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
    assert_eq!(json(limited, 429).await["error"], "Too many requests. Please try again later.");
    // Other addresses are not affected.
    json(request_link(&app, "bob@example.com").await, 200).await;
}

#[tokio::test]
async fn unknown_and_missing_links_are_refused() {
    // An expired link gets this same answer: the store consumes only a link before its expiry
    // (contract story `accounts`, "expired at its expiry", on both backends), and a used one is
    // refused above. Black-box tests do not write into the server's database to age a link.
    let app = TestApp::spawn().await;
    let unknown = json(app.get("/auth/verify?token=never-issued").await, 400).await;
    assert_eq!(unknown["error"], INVALID_LINK);
    assert_eq!(json(app.get("/auth/verify").await, 400).await["error"], INVALID_LINK);
}

#[tokio::test]
async fn dev_mode_returns_the_link_and_logs_it_and_bad_emails_are_refused() {
    let app = TestApp::spawn().await;
    let body = json(request_link(&app, "dev@example.com").await, 200).await;
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Email not configured. Use the dev link below.");
    let link = body["dev_link"].as_str().unwrap();
    assert!(link.starts_with("http://localhost:5173/auth/verify?token="), "{link}");
    app.wait_for_log("dev mode: sign-in link not mailed").await;

    for bad in ["", "a@b", "no-at-sign", "x@y\r\nBcc: z@w.com"] {
        let refused = json(request_link(&app, bad).await, 400).await;
        assert_eq!(refused["error"], "Invalid email address", "{bad:?}");
    }
    assert_eq!(json(app.post_json("/auth/magic-link", &json!({})).await, 400).await["error"], "Invalid email address");
}

#[tokio::test]
async fn a_failing_relay_is_reported_as_the_reference_says() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = TestApp::builder()
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", port.to_string())
        .env("SMTP_SECURITY", "none")
        .env("SMTP_USERNAME", "u")
        .env("SMTP_PASSWORD", "p")
        .spawn()
        .await;
    let failed = json(request_link(&app, "alice@example.com").await, 500).await;
    assert_eq!(failed["error"], "Failed to send email");
    app.wait_for_log("sending the sign-in mail failed").await;
}

#[tokio::test]
async fn wrong_codes_are_limited_and_the_link_survives() {
    let app = TestApp::spawn().await;
    let body = json(request_link(&app, "carol@example.com").await, 200).await;
    let code = body["dev_code"].as_str().unwrap().to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let attempt = json!({ "email": "carol@example.com", "code": wrong });
        json(app.post_json("/auth/verify-code", &attempt).await, 400).await;
    }
    let right = json!({ "email": "carol@example.com", "code": code });
    json(app.post_json("/auth/verify-code", &right).await, 400).await;
    // The link itself still signs in: only guessing at the code was cut off.
    let token = body["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    json(app.get(&format!("/auth/verify?token={token}")).await, 200).await;
    let malformed = json!({ "email": "carol@example.com", "code": "12ab56" });
    json(app.post_json("/auth/verify-code", &malformed).await, 400).await;
}

#[tokio::test]
async fn blocked_users_get_403_at_once() {
    let app = TestApp::spawn().await;
    let (_, device) = app.paired_device("mallory@example.com", "vault").await;
    let session = app.sign_in("mallory@example.com").await;
    let me = json(app.get_auth("/auth/me", &session).await, 200).await;
    app.block_user(me["user"]["id"].as_str().unwrap()).await;
    for (path, token) in [("/auth/me", &session), ("/api/client/me", &device), ("/api/workspaces", &session)] {
        let blocked = json(app.get_auth(path, token).await, 403).await;
        assert_eq!(blocked, json!({ "error": "user blocked", "code": "forbidden" }), "{path}");
    }
    let pair = json!({ "login": "mallory@example.com", "password": crate::helpers::TEST_PASSWORD, "vault_id": "v" });
    assert_eq!(json(app.post_json("/api/client/pair", &pair).await, 403).await["error"], "account blocked");
    // A new sign-in is refused too, after the link proved the address.
    let link = json(request_link(&app, "mallory@example.com").await, 200).await;
    let token = link["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    assert_eq!(json(app.get(&format!("/auth/verify?token={token}")).await, 403).await["error"], "user blocked");
}

#[tokio::test]
async fn one_client_ip_gets_20_links_an_hour_across_addresses() {
    let app = TestApp::spawn().await;
    for i in 0..20 {
        json(request_link(&app, &format!("user{i}@example.com")).await, 200).await;
    }
    let limited = request_link(&app, "user20@example.com").await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(json(limited, 429).await["code"], "rate_limited");
}
