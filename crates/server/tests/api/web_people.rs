//! People's pages in a real browser: a person registers, confirms with the link from the mail,
//! signs in, sees a device paired with the desktop's exact request (vault, client version),
//! revokes it with their password, and that device's token is refused at once while its open Yjs
//! socket closes within a second.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::json as json_of;
use crate::smtp_sink::SmtpSink;
use crate::web_browser::Browser;
use crate::yjs_client::RawClient;

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn a_person_registers_confirms_signs_in_and_revokes_a_paired_desktop() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    // A phone-sized window: the pages must work there.
    let browser = Browser::start(412, 915).await;

    browser.goto(&app.url("/")).await;
    browser.click("a[href='/register']").await;
    browser.wait_for_path("/register").await;
    browser.fill("#username", "dora").await;
    browser.fill("#email", "dora@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("form[action='/register'] button").await;
    browser.wait_for_text("Check your mail").await;

    let mail = sink.next_mail_to("dora@example.com").await;
    browser.goto(&mail.link()).await;
    browser.click("form[action='/confirm'] button").await;
    browser.wait_for_path("/confirm/result?status=confirmed").await;
    browser.wait_for_text("Address confirmed").await;

    browser.goto(&app.url("/login")).await;
    browser.screenshot("login").await;
    browser.fill("#login", "dora").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("form[action='/login'] button").await;
    browser.wait_for_path("/dashboard").await;
    browser.wait_for_text("Signed in as dora").await;

    // The Verstak desktop pairs, exactly as it does.
    let pairing = json!({
        "login": "dora@example.com",
        "password": PASSWORD,
        "device_name": "Dora's laptop",
        "client_version": "verstak-desktop/v2.3.1",
        "vault_id": "vault-notes",
    });
    let paired = json_of(app.post_json("/api/client/pair", &pairing).await, 200).await;
    let device_id = paired["device_id"].as_str().unwrap().to_owned();
    let device_token = paired["device_token"].as_str().unwrap().to_owned();
    json_of(app.get_auth("/api/client/me", &device_token).await, 200).await;
    let mut socket = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={device_token}"))).await;
    socket.pump_for(Duration::from_millis(100)).await;
    assert!(socket.closed.is_none());

    browser.goto(&app.url("/dashboard")).await;
    browser.wait_for_text("Dora's laptop").await;
    let card = format!("#device-{device_id}");
    let text = browser.client.find(fantoccini::Locator::Css(&card)).await.unwrap().text().await.unwrap();
    for expected in ["Dora's laptop", "desktop client", "Vault: vault-notes", "Client: verstak-desktop/v2.3.1"] {
        assert!(text.contains(expected), "{expected:?} missing from the device card:\n{text}");
    }
    let page = browser.text().await;
    assert!(page.contains("this browser"), "the browser's own session is listed:\n{page}");
    assert!(page.contains("vault-notes") && page.contains("head 0"), "{page}");
    browser.screenshot("dashboard").await;
    // Nothing inline for the CSP to refuse: the browser would then show the page unstyled.
    let source = browser.source().await;
    assert!(!source.contains("<script") && !source.contains(" style="), "{source}");

    // A wrong password revokes nothing.
    browser.click(&format!("{card} summary")).await;
    browser.fill(&format!("#password-{device_id}"), "not my password").await;
    browser.click(&format!("{card} button")).await;
    browser.wait_for_path("/dashboard/devices/revoke").await;
    browser.wait_for_text("wrong password").await;
    json_of(app.get_auth("/api/client/me", &device_token).await, 200).await;

    browser.goto(&app.url("/dashboard")).await;
    browser.click(&format!("{card} summary")).await;
    browser.fill(&format!("#password-{device_id}"), PASSWORD).await;
    let revoked_at = Instant::now();
    browser.click(&format!("{card} button")).await;
    browser.wait_for_path("/dashboard?done=revoked").await;
    assert_eq!(socket.closed_code().await, 1008);
    assert!(revoked_at.elapsed() < Duration::from_secs(1), "socket closed after {:?}", revoked_at.elapsed());
    let refused = json_of(app.get_auth("/api/client/me", &device_token).await, 401).await;
    assert_eq!(refused["error"], "device revoked");
    browser.wait_for_text("The device is revoked").await;
    let card_text = browser.client.find(fantoccini::Locator::Css(&card)).await.unwrap().text().await.unwrap();
    assert!(card_text.contains("Revoked"), "the card shows the revocation:\n{card_text}");

    // Signing out ends the browser's session: the dashboard sends it back to sign in.
    browser.click("form[action='/logout'] button").await;
    browser.wait_for_path("/").await;
    browser.goto(&app.url("/dashboard")).await;
    browser.wait_for_path("/login").await;
    browser.close().await;
}

#[tokio::test]
async fn with_registration_off_the_page_is_404_and_the_api_refuses() {
    let app = crate::helpers::TestApp::builder().env("CONCORD_REGISTRATION", "false").spawn().await;
    let web = crate::web_client::WebClient::new(&app);
    let home = web.get("/").await;
    assert_eq!(home.status, 200);
    assert!(!home.body.contains("/register"), "no link to a page that is not there:\n{}", home.body);
    assert!(!web.get("/login").await.body.contains("/register"));
    assert_eq!(web.get("/register").await.status, 404);
    let fields = [("username", "zed"), ("email", "zed@example.com"), ("password", PASSWORD)];
    assert_eq!(web.post_form("/register", &fields).await.status, 404);
    let body = json!({ "username": "zed", "email": "zed@example.com", "password": PASSWORD });
    let refused = json_of(app.post_json("/api/v1/auth/register", &body).await, 403).await;
    assert_eq!(refused["code"], "registration_closed");
    // Nobody was created: the address can still sign in by link, as a new account.
    let sign_in = json_of(app.post_json("/auth/magic-link", &json!({ "email": "zed@example.com" })).await, 200).await;
    assert!(sign_in["dev_link"].is_string());
}
