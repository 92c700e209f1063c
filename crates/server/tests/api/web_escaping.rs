//! Text a user controls is escaped on every page that shows it: usernames and emails echoed into
//! forms, device names, vault ids and client versions from pairing, Diaryx device names,
//! workspace and document names, tokens from links. Each is planted as `<script>` and as an
//! attribute breakout, and each page must show it as text, never as markup.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TEST_PASSWORD, TestApp, eventually, json as json_of};
use crate::web_client::WebClient;
use crate::yjs_client::RawClient;

const SCRIPT: &str = "<script>alert(1)</script>";
const BREAKOUT: &str = "\"><img src=x onerror=alert(1)>";
const PAYLOADS: [&str; 2] = [SCRIPT, BREAKOUT];

/// How askama writes a payload as text: what must appear instead of the payload.
fn escaped(payload: &str) -> String {
    payload
        .replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// `body` shows `payload` only as text (and does show it, so the check is not vacuous).
fn assert_shown_as_text(page: &str, body: &str, payload: &str) {
    assert!(!body.contains(payload), "{page} contains {payload:?} unescaped:\n{body}");
    assert!(!body.contains("<img src=x") && !body.contains("<script>alert"), "{page} has planted markup:\n{body}");
    assert!(body.contains(&escaped(payload)), "{page} does not show {payload:?} at all:\n{body}");
}

fn encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn what_people_type_is_shown_as_text_on_every_page() {
    let app = TestApp::spawn().await;
    let web = WebClient::new(&app);
    web.get("/").await;
    for payload in PAYLOADS {
        // Forms echo what was typed when they refuse it.
        let fields = [("username", payload), ("email", payload), ("password", TEST_PASSWORD)];
        let register = web.post_form("/register", &fields).await;
        assert_eq!(register.status, 400);
        assert_shown_as_text("/register", &register.body, payload);
        let login = web.post_form("/login", &[("login", payload), ("password", "wrong password")]).await;
        assert_eq!(login.status, 401);
        assert_shown_as_text("/login", &login.body, payload);
        let code = web.post_form("/login/code", &[("email", payload), ("code", "123456")]).await;
        assert_eq!(code.status, 400);
        assert_shown_as_text("/login/code", &code.body, payload);
        // Tokens from links land in hidden fields.
        for path in ["/reset?token=", "/api/v1/auth/reset?token=", "/api/v1/auth/confirm?token="] {
            let page = web.get(&format!("{path}{}", encode(payload))).await;
            assert_eq!(page.status, 200);
            assert_shown_as_text(path, &page.body, payload);
        }
        // Refusals repeat the account rule's message, never the input; still, nothing raw.
        let reset = web.post_form("/reset", &[("token", payload), ("new_password", "long enough password")]).await;
        assert_eq!(reset.status, 400);
        assert_shown_as_text("/reset (refused)", &reset.body, payload);
    }

    // The dashboard: what pairing, Diaryx sign-ins, workspaces and documents named.
    let email = "o'neil\"&co@example.com";
    let body = json!({ "username": "oneil", "email": email, "password": TEST_PASSWORD });
    let registered = json_of(app.post_json("/api/v1/auth/register", &body).await, 200).await;
    let token = registered["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    json_of(app.post_json("/api/v1/auth/confirm", &json!({ "token": token })).await, 200).await;
    for payload in PAYLOADS {
        let pairing = json!({
            "login": email, "password": TEST_PASSWORD, "device_name": payload,
            "client_version": payload, "vault_id": payload,
        });
        json_of(app.post_json("/api/client/pair", &pairing).await, 200).await;
    }
    let diaryx = app.sign_in(email).await;
    let link = json_of(app.post_json("/auth/magic-link", &json!({ "email": email })).await, 200).await;
    let token = link["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    json_of(app.get(&format!("/auth/verify?token={token}&device_name={}", encode(BREAKOUT))).await, 200).await;
    for payload in PAYLOADS {
        json_of(app.post_auth("/api/workspaces", &diaryx, &json!({ "name": payload })).await, 201).await;
        let mut socket = RawClient::connect(&app.ws_url(&format!("/sync/{}?token={diaryx}", encode(payload)))).await;
        socket.pump_for(Duration::from_millis(100)).await;
    }
    let signed_in = web.post_form("/login", &[("login", email), ("password", TEST_PASSWORD)]).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    // Both documents are listed once their rooms have stored them.
    let complete = |body: &str| PAYLOADS.iter().all(|p| body.matches(&escaped(p)).count() >= 6);
    eventually(|| async { complete(&web.get("/dashboard").await.body) }).await;
    let dashboard = web.get("/dashboard").await.body;
    assert_shown_as_text("/dashboard", &dashboard, email);
    for payload in PAYLOADS {
        assert_shown_as_text("/dashboard", &dashboard, payload);
    }
}
