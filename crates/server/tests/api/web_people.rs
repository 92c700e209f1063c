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
    browser.wait_for_path("/register").await;
    assert!(browser.text().await.contains("Check your mail"));

    let mail = sink.next_mail_to("dora@example.com").await;
    browser.goto(&mail.link()).await;
    browser.click("form[action='/confirm'] button").await;
    browser.wait_for_path("/confirm/result?status=confirmed").await;
    assert!(browser.text().await.contains("Address confirmed"));

    browser.goto(&app.url("/login")).await;
    browser.screenshot("login").await;
    browser.fill("#login", "dora").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("form[action='/login'] button").await;
    browser.wait_for_path("/dashboard").await;

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
    assert!(browser.text().await.contains("wrong password"));
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
    assert!(browser.text().await.contains("Revoked"), "the card shows the revocation");

    // Signing out ends the browser's session: the dashboard sends it back to sign in.
    browser.click("form[action='/logout'] button").await;
    browser.wait_for_path("/").await;
    browser.goto(&app.url("/dashboard")).await;
    browser.wait_for_path("/login").await;
    browser.close().await;
}
