//! The admin console in a real headless Chromium: the admin signs in, blocks a person (whose
//! device token then gets 403 and whose open Yjs socket closes within a second), unblocks them,
//! switches SMTP to a second real SMTP listener and sends a test mail that arrives there, and
//! turns registration off (`/register` is 404, the register API refuses). Screenshots of the
//! dashboard, the users page and the settings go to `target/screenshots/`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;

use crate::admin_api::with_admin;
use crate::helpers::{TEST_PASSWORD, json};
use crate::smtp_sink::SmtpSink;
use crate::web_browser::Browser;
use crate::web_client::register_confirmed_by_mail;
use crate::yjs_client::RawClient;

#[tokio::test]
async fn the_admin_blocks_a_person_switches_smtp_and_closes_registration_in_a_browser() {
    let (startup, second) = (SmtpSink::start().await, SmtpSink::start().await);
    let app = with_admin(startup.app()).spawn().await;
    register_confirmed_by_mail(&app, &startup, "alice@example.com").await;
    let pair = json!({
        "login": "alice@example.com", "password": TEST_PASSWORD, "device_name": "Alice's desktop",
        "client_version": "verstak-desktop/v2", "vault_id": "vault-1",
    });
    let device_token =
        json(app.post_json("/api/client/pair", &pair).await, 200).await["device_token"].as_str().unwrap().to_owned();
    let mut socket = RawClient::connect(&app.ws_url(&format!("/sync/notes?token={device_token}"))).await;
    socket.pump_for(Duration::from_millis(100)).await;
    assert!(socket.closed.is_none());

    let browser = Browser::start(1280, 900).await;
    browser.goto(&app.url("/admin")).await;
    browser.fill("input[name=login]", "root").await;
    browser.fill("input[name=password]", TEST_PASSWORD).await;
    browser.click("form[action='/admin/login'] button").await;
    browser.wait_for_path("/admin").await;
    browser.wait_for_text("Open WebSockets").await;
    browser.screenshot("admin-dashboard").await;

    browser.goto(&app.url("/admin/users?q=alice")).await;
    browser.screenshot("admin-users").await;
    let started = Instant::now();
    browser.click("form[action$='/block'] button").await;
    assert_eq!(socket.closed_code().await, 1008);
    // The click includes Chrome posting the form; the close itself is announced, not polled.
    assert!(started.elapsed() < Duration::from_secs(1), "closed after {:?}", started.elapsed());
    browser.wait_for_text("is blocked").await;
    assert_eq!(app.get_auth("/api/client/me", &device_token).await.status(), 403);

    browser.goto(&app.url("/admin/users?q=alice")).await;
    browser.click("form[action$='/block'] button").await;
    browser.wait_for_text("is unblocked").await;
    assert_eq!(app.get_auth("/api/client/me", &device_token).await.status(), 200);

    browser.goto(&app.url("/admin/settings")).await;
    let port = browser.client.find(Locator::Css("input[name=port]")).await.unwrap();
    port.clear().await.unwrap();
    port.send_keys(&second.addr.port().to_string()).await.unwrap();
    browser.screenshot("admin-settings").await;
    browser.click("form[action='/admin/smtp'] button").await;
    browser.wait_for_text("SMTP settings saved").await;
    browser.goto(&app.url("/admin/settings")).await;
    browser.fill("form[action='/admin/smtp/test'] input[name=to]", "ops@example.com").await;
    browser.click("form[action='/admin/smtp/test'] button").await;
    browser.wait_for_text("A test mail went to ops@example.com").await;
    let mail = second.next_mail_to("ops@example.com").await;
    assert_eq!(mail.auth_password.as_deref(), Some("sink-password"), "the startup password was kept");
    assert_eq!(startup.count_to("ops@example.com"), 0);

    browser.goto(&app.url("/admin/settings")).await;
    let select = browser.client.find(Locator::Css("select[name=registration]")).await.unwrap();
    select.select_by_value("off").await.unwrap();
    browser.click("form[action='/admin/settings'] button").await;
    browser.wait_for_text("Settings saved").await;
    assert_eq!(app.get("/register").await.status(), 404);
    let register = json!({ "username": "late", "email": "late@example.com", "password": "long enough password" });
    assert_eq!(json(app.post_json("/api/v1/auth/register", &register).await, 403).await["code"], "registration_closed");
    browser.close().await;
}
