//! The `user_session` cookie: its attributes (Secure only behind an https public URL), and that
//! it is a device like any other: listed on the dashboard, ended by sign-out, by revocation from
//! another device, and by "sign out everywhere", after which the cookie opens nothing.

use crate::helpers::{TEST_PASSWORD, TestApp, json};
use crate::smtp_sink::SmtpSink;
use crate::web_client::{WebClient, register_confirmed_by_mail};

async fn signed_in(app: &TestApp, login: &str) -> (WebClient, String) {
    let web = WebClient::new(app);
    web.get("/login").await;
    let answer = web.post_form("/login", &[("login", login), ("password", TEST_PASSWORD)]).await;
    assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/dashboard")), "{}", answer.body);
    let cookie = answer.set_cookies.iter().find(|c| c.starts_with("user_session=")).expect("a session cookie").clone();
    (web, cookie)
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_secure_behind_https() {
    let sink = SmtpSink::start().await;
    let app = sink.app().env("PUBLIC_URL", "https://concord.example").spawn().await;
    register_confirmed_by_mail(&app, &sink, "sue@example.com").await;
    let (web, cookie) = signed_in(&app, "sue@example.com").await;
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let token = web.cookie("user_session").unwrap();
    assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "a Concord token: {token}");
    // The cookie's token is a live device: the user API sees it too.
    let devices = json(app.get_auth("/api/v1/user/devices", &token).await, 200).await;
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");

    let plain = TestApp::spawn().await;
    plain.register_confirmed("sid@example.com").await;
    let (_, cookie) = signed_in(&plain, "sid@example.com").await;
    assert!(!cookie.contains("Secure"), "plain http keeps working: {cookie}");
}

#[tokio::test]
async fn a_session_ends_by_sign_out_revocation_and_sign_out_everywhere() {
    let app = TestApp::spawn().await;
    app.register_confirmed("ann@example.com").await;

    // Sign-out deletes the session's device; the old cookie then opens nothing.
    let (web, _) = signed_in(&app, "ann@example.com").await;
    let token = web.cookie("user_session").unwrap();
    let out = web.post_form("/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert!(web.cookie("user_session").is_none(), "the cookie is cleared");
    json(app.get_auth("/api/v1/user/devices", &token).await, 401).await;

    // Revoked from another browser: the first one is sent back to sign in.
    let (first, _) = signed_in(&app, "ann@example.com").await;
    let (second, _) = signed_in(&app, "ann@example.com").await;
    let first_token = first.cookie("user_session").unwrap();
    let first_id = json(app.get_auth("/api/client/me", &first_token).await, 200).await["device_id"].clone();
    let revoked = second
        .post_form(
            "/dashboard/devices/revoke",
            &[("device_id", first_id.as_str().unwrap()), ("password", TEST_PASSWORD)],
        )
        .await;
    assert_eq!((revoked.status, revoked.location.as_deref()), (303, Some("/dashboard?done=revoked")));
    assert_eq!(first.get("/dashboard").await.location.as_deref(), Some("/login"));
    assert_eq!(second.get("/dashboard").await.status, 200);

    // Everywhere: every session of the person ends, a paired client stays.
    let (_, device_token) = app.paired_device("ann@example.com", "vault").await;
    let (third, _) = signed_in(&app, "ann@example.com").await;
    let everywhere = third.post_form("/dashboard/sign-out-everywhere", &[]).await;
    assert_eq!(everywhere.status, 200);
    for web in [&second, &third] {
        assert_eq!(web.get("/dashboard").await.location.as_deref(), Some("/login"));
    }
    json(app.get_auth("/api/client/me", &device_token).await, 200).await;
}
