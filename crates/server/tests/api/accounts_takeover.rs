//! Issue 8, item 1: a stranger registers the victim's address before the victim first signs in.
//! Every route to the account (magic link, code, confirm, reset, pair, login, auth test) must
//! leave the stranger's username and password dead and the victim's data out of their reach.
//!
//! Mail goes to a real SMTP sink (not dev mode), so, as in production, only the address owner
//! receives links and codes: the stranger holds only what they typed at registration.

use serde_json::{Value, json};

use crate::helpers::{TestApp, json};
use crate::smtp_sink::SmtpSink;

const VICTIM: &str = "victim@example.com";
const STRANGER_NAME: &str = "mallory";
const STRANGER_PASSWORD: &str = "mallory's password";

/// The stranger's registration of the victim's address: accepted (nothing tells them the address
/// is someone else's) and mailed to the victim.
async fn stranger_registers(app: &TestApp, sink: &SmtpSink) -> String {
    let body = json!({ "username": STRANGER_NAME, "email": VICTIM, "password": STRANGER_PASSWORD });
    assert_eq!(json(app.post_json("/api/v1/auth/register", &body).await, 200).await["status"], "confirmation_sent");
    sink.next_mail_to(VICTIM).await.link_token()
}

/// Every way the stranger's credentials could open the account, each by username (in two cases)
/// and by email: `status` is 403 `email not confirmed` while the registration is pending, 401
/// `invalid credentials` once the address owner has taken the account.
async fn assert_stranger_locked_out(app: &TestApp, status: u16) {
    for login in [STRANGER_NAME, "MALLORY", VICTIM] {
        let creds = json!({ "username": login, "password": STRANGER_PASSWORD });
        let pair = json!({ "login": login, "password": STRANGER_PASSWORD, "vault_id": "v" });
        for (path, body) in [("/api/v1/auth/login", &creds), ("/api/auth/test", &creds), ("/api/client/pair", &pair)] {
            let refused = json(app.post_json(path, body).await, status).await;
            let expected = if status == 401 { "invalid credentials" } else { "email not confirmed" };
            assert_eq!(refused["error"], expected, "{path} as {login}");
        }
    }
}

/// The victim's data after taking the account: a workspace of their own beside `default`.
async fn victim_data(app: &TestApp, session: &str) -> String {
    let made = json(app.post_auth("/api/workspaces", session, &json!({ "name": "diary" })).await, 201).await;
    made["id"].as_str().unwrap().to_owned()
}

/// The stranger, with an account of their own, sees none of the victim's devices or workspaces.
async fn assert_stranger_sees_nothing_of(app: &TestApp, sink: &SmtpSink, victim_workspace: &str) {
    let own = json!({ "username": "mallory2", "email": "mallory@evil.example", "password": STRANGER_PASSWORD });
    json(app.post_json("/api/v1/auth/register", &own).await, 200).await;
    let token = sink.next_mail_to("mallory@evil.example").await.link_token();
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": token })).await, 200).await;
    let creds = json!({ "username": "mallory2", "password": STRANGER_PASSWORD });
    let web = json(app.post_json("/api/v1/auth/login", &creds).await, 200).await["token"].as_str().unwrap().to_owned();
    let workspaces = json(app.get_auth("/api/workspaces", &web).await, 200).await;
    assert!(workspaces.as_array().unwrap().iter().all(|w| w["id"] != victim_workspace), "{workspaces}");
    json(app.get_auth(&format!("/api/workspaces/{victim_workspace}"), &web).await, 404).await;
    let devices = json(app.get_auth("/api/v1/user/devices", &web).await, 200).await;
    assert_eq!(devices.as_array().unwrap().len(), 1, "only the stranger's own login: {devices}");
}

async fn request_link(app: &TestApp, sink: &SmtpSink) -> crate::smtp_sink::ReceivedMail {
    json(app.post_json("/auth/magic-link", &json!({ "email": VICTIM })).await, 200).await;
    sink.next_mail_to(VICTIM).await
}

fn session_of(verified: &Value) -> String {
    verified["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_pending_registration_opens_nothing_and_only_its_own_token_confirms_it() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let _victims_confirm = stranger_registers(&app, &sink).await;
    assert_stranger_locked_out(&app, 403).await;
    // Tokens of another registration, or made-up ones, confirm nothing.
    let own = json!({ "username": "mallory2", "email": "mallory@evil.example", "password": STRANGER_PASSWORD });
    json(app.post_json("/api/v1/auth/register", &own).await, 200).await;
    let own_token = sink.next_mail_to("mallory@evil.example").await.link_token();
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": own_token })).await, 200).await;
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": "0".repeat(64) })).await, 400).await;
    assert_stranger_locked_out(&app, 403).await;
}

#[tokio::test]
async fn a_magic_link_sign_in_discards_the_strangers_credentials() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let victims_confirm = stranger_registers(&app, &sink).await;

    let link = request_link(&app, &sink).await.link_token();
    let verified = json(app.get(&format!("/auth/verify?token={link}")).await, 200).await;
    let session = session_of(&verified);
    let workspace = victim_data(&app, &session).await;

    assert_stranger_locked_out(&app, 401).await;
    // The registration's confirm link died with it: it cannot bring the credentials back.
    let stale = json(app.post_json("/api/v1/auth/confirm", &json!({ "token": victims_confirm })).await, 400).await;
    assert_eq!(stale["code"], "invalid_token");
    assert_stranger_locked_out(&app, 401).await;
    // The address is the victim's now: registering it again is refused, and the name is free.
    let again = json!({ "username": "mallory3", "email": VICTIM, "password": STRANGER_PASSWORD });
    assert_eq!(json(app.post_json("/api/v1/auth/register", &again).await, 409).await["code"], "already_exists");
    assert_stranger_sees_nothing_of(&app, &sink, &workspace).await;
    // The victim's session is intact and sees their own data.
    let me = json(app.get_auth("/auth/me", &session).await, 200).await;
    assert_eq!(me["workspaces"].as_array().unwrap().len(), 2, "{me}");
}

#[tokio::test]
async fn a_code_sign_in_discards_the_strangers_credentials() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let victims_confirm = stranger_registers(&app, &sink).await;

    let code = request_link(&app, &sink).await.code();
    let verified = json(app.post_json("/auth/verify-code", &json!({ "email": VICTIM, "code": code })).await, 200).await;
    let session = session_of(&verified);
    let workspace = victim_data(&app, &session).await;

    assert_stranger_locked_out(&app, 401).await;
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": victims_confirm })).await, 400).await;
    assert_stranger_sees_nothing_of(&app, &sink, &workspace).await;
    json(app.get_auth("/auth/me", &session).await, 200).await;
}

#[tokio::test]
async fn a_password_reset_keeps_only_the_password_the_address_owner_chose() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let victims_confirm = stranger_registers(&app, &sink).await;

    json(app.post_json("/api/v1/auth/forgot", &json!({ "email": VICTIM })).await, 200).await;
    let reset = sink.next_mail_to(VICTIM).await.link_token();
    let body = json!({ "token": reset, "new_password": "the victim's own password" });
    json(app.post_json("/api/v1/auth/reset", &body).await, 200).await;

    assert_stranger_locked_out(&app, 401).await;
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": victims_confirm })).await, 400).await;
    // The stranger's username is gone with their password; the owner logs in by address.
    let by_name = json!({ "username": STRANGER_NAME, "password": "the victim's own password" });
    json(app.post_json("/api/v1/auth/login", &by_name).await, 401).await;
    let by_email = json!({ "username": VICTIM, "password": "the victim's own password" });
    let login = json(app.post_json("/api/v1/auth/login", &by_email).await, 200).await;
    let web = login["token"].as_str().unwrap().to_owned();
    let pair = json!({ "login": VICTIM, "password": "the victim's own password", "vault_id": "v" });
    let paired = json(app.post_json("/api/client/pair", &pair).await, 200).await;
    assert_eq!(
        json(app.get_auth("/api/client/me", paired["device_token"].as_str().unwrap()).await, 200).await["username"],
        VICTIM
    );

    // The victim's account holds the victim's things, out of the stranger's reach.
    let session = session_of(
        &json(app.get(&format!("/auth/verify?token={}", request_link(&app, &sink).await.link_token())).await, 200)
            .await,
    );
    let workspace = victim_data(&app, &session).await;
    assert_stranger_sees_nothing_of(&app, &sink, &workspace).await;
    let devices = json(app.get_auth("/api/v1/user/devices", &web).await, 200).await;
    assert_eq!(devices.as_array().unwrap().len(), 3, "web login, paired client, sign-in session: {devices}");
}

/// The one route that does activate the registration: the address owner opening the confirm mail
/// (it names the registration). Before that, and through the other routes, nothing does.
#[tokio::test]
async fn confirming_through_the_mailed_link_is_the_only_way_to_activate_a_registration() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let confirm = stranger_registers(&app, &sink).await;
    assert_stranger_locked_out(&app, 403).await;
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": confirm })).await, 200).await;
    let creds = json!({ "username": STRANGER_NAME, "password": STRANGER_PASSWORD });
    json(app.post_json("/api/v1/auth/login", &creds).await, 200).await;
}
