//! No page gives away a credential: every page a signed-in person and a stranger can reach, and
//! the answers to refused forms, are scanned for every token the server issued (device, Diaryx
//! session, browser session), every token hash and password hash in the database.

use serde_json::json;

use crate::helpers::{TEST_PASSWORD, TestApp, json as json_of};
use crate::smtp_sink::SmtpSink;
use crate::web_client::{WebClient, register_confirmed_by_mail};

const EMAIL: &str = "sam@example.com";

/// Every hash the database keeps of a secret, as lowercase hex, and every password hash.
async fn stored_secrets(app: &TestApp) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}?mode=ro", app.db_path().display())).await.unwrap();
    let mut secrets = Vec::new();
    for sql in [
        "SELECT lower(hex(hash)) FROM tokens",
        "SELECT lower(hex(hash)) FROM magic_tokens",
        "SELECT lower(hex(code_hash)) FROM magic_tokens WHERE code_hash IS NOT NULL",
        "SELECT lower(hex(hash)) FROM account_tokens",
        "SELECT password_hash FROM users WHERE password_hash IS NOT NULL",
    ] {
        let found: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        secrets.extend(found);
    }
    pool.close().await;
    secrets
}

#[tokio::test]
async fn no_page_contains_a_token_or_a_hash() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    register_confirmed_by_mail(&app, &sink, EMAIL).await;
    let pairing = json!({
        "login": EMAIL, "password": TEST_PASSWORD, "device_name": "Desk", "client_version": "v2", "vault_id": "vault",
    });
    let paired = json_of(app.post_json("/api/client/pair", &pairing).await, 200).await;
    let mut issued = vec![paired["device_token"].as_str().unwrap().to_owned()];
    json_of(app.post_json("/auth/magic-link", &json!({ "email": EMAIL })).await, 200).await;
    let mail = sink.next_mail_to(EMAIL).await;
    let diaryx = json_of(app.get(&format!("/auth/verify?token={}", mail.link_token())).await, 200).await;
    issued.push(diaryx["token"].as_str().unwrap().to_owned());
    json_of(app.post_json("/api/v1/auth/forgot", &json!({ "email": EMAIL })).await, 200).await;
    sink.next_mail_to(EMAIL).await;

    let stranger = WebClient::new(&app);
    let web = WebClient::new(&app);
    web.get("/login").await;
    let signed_in = web.post_form("/login", &[("login", EMAIL), ("password", TEST_PASSWORD)]).await;
    assert_eq!(signed_in.status, 303);
    issued.push(web.cookie("user_session").unwrap());

    let mut bodies = Vec::new();
    for client in [&stranger, &web] {
        for path in [
            "/",
            "/login",
            "/register",
            "/forgot",
            "/reset?token=x",
            "/confirm/result?status=confirmed",
            "/dashboard",
            "/nope",
        ] {
            bodies.push((path.to_owned(), client.get(path).await.body));
        }
    }
    let device_id = paired["device_id"].as_str().unwrap();
    let refusals = [
        ("/login", vec![("login", EMAIL), ("password", "wrong password")]),
        ("/dashboard/devices/revoke", vec![("device_id", device_id), ("password", "wrong password")]),
        ("/dashboard/password", vec![("current_password", "wrong password"), ("new_password", "long enough 1")]),
        ("/register", vec![("username", "sam"), ("email", EMAIL), ("password", TEST_PASSWORD)]),
    ];
    for (path, fields) in refusals {
        let answer = web.post_form(path, &fields).await;
        assert!((400..500).contains(&answer.status), "{path} refuses: {}", answer.status);
        bodies.push((format!("POST {path}"), answer.body));
    }
    assert!(bodies.iter().any(|(_, b)| b.contains(device_id)), "the dashboard lists the device, so it was scanned");

    let mut secrets = stored_secrets(&app).await;
    assert!(secrets.len() >= 8, "tokens, links and passwords are all in the database: {}", secrets.len());
    secrets.extend(issued);
    for (page, body) in &bodies {
        let body = body.to_lowercase();
        for secret in &secrets {
            assert!(!body.contains(&secret.to_lowercase()), "{page} contains a secret ({}…)", &secret[..8]);
        }
    }
}
