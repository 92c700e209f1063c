//! The Verstak account flows end to end: registration with mail, pairing, revocation, password
//! reset, and one person signing in both ways.

use serde_json::json;

use crate::helpers::{TEST_PASSWORD, TestApp, json};
use crate::smtp_sink::SmtpSink;
use crate::web_client::WebClient;

fn pair_body(login: &str, password: &str, vault_id: &str) -> serde_json::Value {
    json!({
        "login": login,
        "password": password,
        "device_name": "Desk",
        "client_version": "verstak-desktop/v2",
        "vault_id": vault_id,
    })
}

#[tokio::test]
async fn register_confirm_login_pair_revoke_and_reset() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    register_flow(&sink, app).await;
}

/// Also run on PostgreSQL by `pg_server`.
pub(crate) async fn register_flow(sink: &SmtpSink, app: TestApp) {
    let password = "first password";

    let register = json!({ "username": "carol", "email": "Carol@Example.com", "password": password });
    let registered = json(app.post_json("/api/v1/auth/register", &register).await, 200).await;
    assert_eq!(registered, json!({ "status": "confirmation_sent" }), "no dev link when mail is configured");

    // Before confirmation: a wrong password says only that; the right one learns the status.
    let wrong = json(app.post_json("/api/client/pair", &pair_body("carol", "wrong password", "v1")).await, 401).await;
    assert_eq!(wrong, json!({ "error": "invalid credentials", "code": "unauthorized" }));
    let early = json(app.post_json("/api/client/pair", &pair_body("carol", password, "v1")).await, 403).await;
    assert_eq!(early["error"], "email not confirmed");

    let mail = sink.next_mail_to("carol@example.com").await;
    assert_eq!(mail.header("Subject").as_deref(), Some("Confirm your email address"));
    let link = mail.link();
    assert!(link.starts_with(&format!("{}/api/v1/auth/confirm?token=", app.base)), "{link}");
    // Opening the link shows a page that posts the token back; opening alone confirms nothing.
    let web = WebClient::new(&app);
    let page = web.get(&link).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("method=\"post\"") && page.body.contains(&mail.link_token()), "{}", page.body);
    json(app.post_json("/api/client/pair", &pair_body("carol", password, "v1")).await, 403).await;
    // The API takes the form too (with the page's CSRF token).
    let confirmed = web.post_form("/api/v1/auth/confirm", &[("token", &mail.link_token())]).await;
    assert_eq!(confirmed.status, 200);
    assert!(confirmed.body.contains("Address confirmed"));
    let again = app.post_json("/api/v1/auth/confirm", &json!({ "token": mail.link_token() })).await;
    assert_eq!(json(again, 400).await["code"], "invalid_token");

    let login =
        json(app.post_json("/api/v1/auth/login", &json!({"username": "carol", "password": password})).await, 200).await;
    let session = login["token"].as_str().unwrap().to_owned();

    // Pair two devices: by username and by email.
    let a = json(app.post_json("/api/client/pair", &pair_body("carol", password, " vault-a ")).await, 200).await;
    assert_eq!(a["initial_sync_cursor"], 0);
    assert_eq!(a["user_id"], login["user_id"]);
    let time = a["server_time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.len() == 20, "{time}");
    let a_token = a["device_token"].as_str().unwrap().to_owned();
    assert!(a_token.len() == 64 && a_token.bytes().all(|b| b.is_ascii_hexdigit()));
    let b =
        json(app.post_json("/api/client/pair", &pair_body("CAROL@example.com", password, "vault-a")).await, 200).await;
    let b_token = b["device_token"].as_str().unwrap().to_owned();

    let me = json(app.get_auth("/api/client/me", &a_token).await, 200).await;
    assert_eq!(me["device_id"], a["device_id"]);
    assert_eq!(me["device_name"], "Desk");
    assert_eq!(me["username"], "carol");
    assert_eq!(me["revoked_at"], "");
    for key in ["client_version", "created_at", "last_seen", "user_id"] {
        assert!(me[key].is_string(), "{key}: {me}");
    }
    let ok = app.post_json("/api/auth/test", &json!({"username": "carol", "password": password})).await;
    assert_eq!(json(ok, 200).await, json!({ "status": "ok" }));
    let bad = app.post_json("/api/auth/test", &json!({"username": "carol", "password": "nope nope"})).await;
    assert_eq!(json(bad, 401).await["error"], "invalid credentials");

    // Revoking another device needs the password.
    let revoke = |password: &str| json!({ "device_id": b["device_id"], "password": password });
    let refused =
        json(app.post_auth("/api/client/revoke-device", &a_token, &revoke("wrong password")).await, 403).await;
    assert_eq!(refused["error"], "wrong password");
    json(app.get_auth("/api/client/me", &b_token).await, 200).await;
    let done = json(app.post_auth("/api/client/revoke-device", &a_token, &revoke(password)).await, 200).await;
    assert_eq!(done, json!({ "status": "revoked" }));
    assert_eq!(json(app.get_auth("/api/client/me", &b_token).await, 401).await["error"], "device revoked");
    let missing = json!({ "device_id": "dev_000000000000000000000000", "password": password });
    assert_eq!(
        json(app.post_auth("/api/client/revoke-device", &a_token, &missing).await, 404).await["error"],
        "device not found"
    );
    let incomplete = json!({ "device_id": "" , "password": password });
    assert_eq!(
        json(app.post_auth("/api/client/revoke-device", &a_token, &incomplete).await, 400).await["error"],
        "device_id and password required"
    );

    // The user API lists devices, revoked ones with their time.
    let listed = json(app.get_auth("/api/v1/user/devices", &session).await, 200).await;
    let b_entry = listed.as_array().unwrap().iter().find(|d| d["id"] == b["device_id"]).unwrap();
    assert!(b_entry["revoked_at"].as_str().unwrap().ends_with('Z'));
    let a_entry = listed.as_array().unwrap().iter().find(|d| d["id"] == a["device_id"]).unwrap();
    assert_eq!(a_entry["revoked_at"], "");
    assert_eq!(a_entry["client_version"], "verstak-desktop/v2");

    let current = json(app.post_auth("/api/client/revoke-current", &a_token, &json!({})).await, 200).await;
    assert_eq!(current, json!({ "status": "revoked" }));
    assert_eq!(app.get_auth("/api/client/me", &a_token).await.status(), 401);

    // Forgot → mail → reset: the old password and every old token stop working.
    let c = json(app.post_json("/api/client/pair", &pair_body("carol", password, "vault-c")).await, 200).await;
    let c_token = c["device_token"].as_str().unwrap().to_owned();
    let answer = json!({ "status": "if email exists, reset link sent" });
    assert_eq!(
        json(app.post_json("/api/v1/auth/forgot", &json!({"email": "nobody@example.com"})).await, 200).await,
        answer
    );
    assert_eq!(
        json(app.post_json("/api/v1/auth/forgot", &json!({"email": "carol@example.com"})).await, 200).await,
        answer
    );
    let reset_mail = sink.next_mail_to("carol@example.com").await;
    assert_eq!(reset_mail.header("Subject").as_deref(), Some("Reset your password"));
    assert_eq!(sink.count_to("nobody@example.com"), 0);
    let token = reset_mail.link_token();
    let short = app.post_json("/api/v1/auth/reset", &json!({"token": token, "new_password": "short"})).await;
    assert_eq!(json(short, 400).await["code"], "PASSWORD_TOO_SHORT");
    let reset = app.post_json("/api/v1/auth/reset", &json!({"token": token, "new_password": "second password"})).await;
    assert_eq!(json(reset, 200).await, json!({ "status": "password reset" }));
    let reused = app.post_json("/api/v1/auth/reset", &json!({"token": token, "new_password": "third password"})).await;
    assert_eq!(json(reused, 400).await["code"], "invalid_token");

    assert_eq!(app.get_auth("/api/client/me", &c_token).await.status(), 401);
    assert_eq!(app.get_auth("/api/v1/user/devices", &session).await.status(), 401);
    let old = app.post_json("/api/v1/auth/login", &json!({"username": "carol", "password": password})).await;
    assert_eq!(old.status(), 401);
    let new = app.post_json("/api/v1/auth/login", &json!({"username": "carol", "password": "second password"})).await;
    assert_eq!(new.status(), 200);
}

#[tokio::test]
async fn the_sixth_failed_pairing_within_15_minutes_is_rate_limited() {
    let app = TestApp::spawn().await;
    app.register_confirmed("dan@example.com").await;
    for attempt in 1..=5 {
        let failed = app.post_json("/api/client/pair", &pair_body("dan@example.com", "wrong password", "v")).await;
        assert_eq!(failed.status(), 401, "attempt {attempt}");
    }
    // Even the right password is refused now, without being checked.
    let limited = app.post_json("/api/client/pair", &pair_body("dan@example.com", TEST_PASSWORD, "v")).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    assert_eq!(json(limited, 429).await["code"], "rate_limited");
}

#[tokio::test]
async fn pairing_validates_its_fields() {
    let app = TestApp::spawn().await;
    let check = |body: serde_json::Value, message: &'static str| {
        let app = &app;
        async move {
            let refused = json(app.post_json("/api/client/pair", &body).await, 400).await;
            assert_eq!(refused["error"], message, "{body}");
            assert_eq!(refused["code"], "invalid_request");
        }
    };
    check(json!({ "password": "x", "vault_id": "v" }), "login and password required").await;
    check(json!({ "login": "someone", "vault_id": "v" }), "login and password required").await;
    check(json!({ "login": "someone", "password": "password1", "vault_id": "  " }), "vault_id required").await;
    check(pair_body("someone", "password1", "legacy:abc"), "vault_id must not start with legacy:").await;
    check(pair_body(&"l".repeat(321), "password1", "v"), "login is too long").await;
    check(pair_body("someone", "password1", &"v".repeat(257)), "vault_id is too long").await;
    let mut long_name = pair_body("someone", "password1", "v");
    long_name["device_name"] = json!("n".repeat(129));
    check(long_name, "device_name is too long").await;
    let mut long_version = pair_body("someone", "password1", "v");
    long_version["client_version"] = json!("c".repeat(257));
    check(long_version, "client_version is too long").await;
    let trailing = app.client.post(app.url("/api/client/pair")).body("{} {}").send().await.unwrap();
    assert_eq!(json(trailing, 400).await["code"], "trailing_json");
}

#[tokio::test]
async fn registration_enforces_the_password_policy_and_unique_names() {
    let app = TestApp::spawn().await;
    let register = |username: &str, email: &str, password: &str| {
        let body = json!({ "username": username, "email": email, "password": password });
        let app = &app;
        async move { app.post_json("/api/v1/auth/register", &body).await }
    };
    assert_eq!(json(register("erin", "erin@example.com", "1234567").await, 400).await["code"], "PASSWORD_TOO_SHORT");
    assert_eq!(
        json(register("erin", "erin@example.com", &"x".repeat(257)).await, 400).await["code"],
        "PASSWORD_TOO_LONG"
    );
    assert_eq!(json(register("erin", "not-an-email", "12345678").await, 400).await["code"], "invalid_email");
    assert_eq!(json(register("e", "erin@example.com", "12345678").await, 400).await["code"], "invalid_username");
    json(register("erin", "erin@example.com", "12345678").await, 200).await;
    assert_eq!(json(register("erin", "other@example.com", "12345678").await, 409).await["code"], "already_exists");
    assert_eq!(json(register("other", "ERIN@example.com", "12345678").await, 409).await["code"], "already_exists");
}

#[tokio::test]
async fn one_person_signs_in_both_ways() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;

    // A password account can use a magic link with the same address.
    let register = json!({ "username": "frank", "email": "frank@example.com", "password": "frank's password" });
    json(app.post_json("/api/v1/auth/register", &register).await, 200).await;
    let confirm = sink.next_mail_to("frank@example.com").await.link_token();
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": confirm })).await, 200).await;
    let login = json(
        app.post_json("/api/v1/auth/login", &json!({"username": "frank", "password": "frank's password"})).await,
        200,
    )
    .await;
    json(app.post_json("/auth/magic-link", &json!({ "email": "frank@example.com" })).await, 200).await;
    let link = sink.next_mail_to("frank@example.com").await.link_token();
    let verified = json(app.get(&format!("/auth/verify?token={link}")).await, 200).await;
    assert_eq!(verified["user"]["id"], login["user_id"]);
    let me = json(app.get_auth("/auth/me", verified["token"].as_str().unwrap()).await, 200).await;
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 1, "one default workspace: {me}");
    assert_eq!(me["workspaces"][0]["name"], "default");

    // A magic-link person sets a password through forgot and reset, then pairs with the email.
    json(app.post_json("/auth/magic-link", &json!({ "email": "gina@example.com" })).await, 200).await;
    let link = sink.next_mail_to("gina@example.com").await.link_token();
    let gina = json(app.get(&format!("/auth/verify?token={link}")).await, 200).await;
    json(app.post_json("/api/v1/auth/forgot", &json!({ "email": "gina@example.com" })).await, 200).await;
    let reset = sink.next_mail_to("gina@example.com").await.link_token();
    // This time through the page the mail links to, which posts a form.
    let web = WebClient::new(&app);
    let page = web.get(&format!("/api/v1/auth/reset?token={reset}")).await;
    assert!(page.body.contains("name=\"new_password\""));
    let refused = web.post_form("/api/v1/auth/reset", &[("token", &reset), ("new_password", "short")]).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("at least 8 bytes"));
    let form = [("token", reset.as_str()), ("new_password", "gina's new password")];
    let done = web.post_form("/api/v1/auth/reset", &form).await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("Password changed"));
    let paired =
        json(app.post_json("/api/client/pair", &pair_body("gina@example.com", "gina's new password", "v")).await, 200)
            .await;
    assert_eq!(paired["user_id"], gina["user"]["id"]);
}

#[tokio::test]
async fn mail_sending_and_password_routes_are_rate_limited() {
    let app = TestApp::spawn().await;
    app.register_confirmed("hal@example.com").await;
    let limited = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 429);
        assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 0);
        assert_eq!(json(response, 429).await["code"], "rate_limited");
    };

    // Login: 10 failures per 10 minutes, then even the right password waits.
    let wrong = json!({ "username": "hal.example.com", "password": "wrong password" });
    for _ in 0..10 {
        assert_eq!(app.post_json("/api/v1/auth/login", &wrong).await.status(), 401);
    }
    let right = json!({ "username": "hal.example.com", "password": TEST_PASSWORD });
    limited(app.post_json("/api/v1/auth/login", &right).await).await;

    // Forgot: 5 per hour for an address.
    for _ in 0..5 {
        json(app.post_json("/api/v1/auth/forgot", &json!({ "email": "hal@example.com" })).await, 200).await;
    }
    limited(app.post_json("/api/v1/auth/forgot", &json!({ "email": "hal@example.com" })).await).await;

    // Register: 5 per hour from one address (one was used above).
    for i in 0..4 {
        let body = json!({ "username": format!("user{i}"), "email": format!("user{i}@example.com"), "password": TEST_PASSWORD });
        json(app.post_json("/api/v1/auth/register", &body).await, 200).await;
    }
    let body = json!({ "username": "user9", "email": "user9@example.com", "password": TEST_PASSWORD });
    limited(app.post_json("/api/v1/auth/register", &body).await).await;
}
