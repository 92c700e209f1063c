//! Live settings from outside: SMTP saved through the admin API is used for the very next mail
//! (switching between two real SMTP listeners), the password is never shown back, registration
//! and the public URL of mail links change at once, all of it survives a restart, and clearing a
//! value brings the startup one back.

use serde_json::{Value, json};

use crate::admin_api::{admin_token, call, with_admin};
use crate::helpers::{TestApp, json};
use crate::smtp_sink::SmtpSink;

fn smtp(sink: &SmtpSink, password: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": sink.addr.port(),
        "security": "none",
        "username": "console",
        "password": password,
        "from_email": "admin@concord.test",
        "from_name": "Concord <Console>",
    })
}

async fn test_mail(app: &TestApp, admin: &str, to: &str) -> (u16, Value) {
    call(app, "POST", "/admin/api/smtp/test", Some(admin), Some(json!({ "to": to }))).await
}

async fn audit_text(app: &TestApp, admin: &str) -> String {
    call(app, "GET", "/admin/api/audit?per_page=200", Some(admin), None).await.1.to_string()
}

#[tokio::test]
async fn smtp_registration_and_links_change_at_once_and_survive_a_restart() {
    let (first, second) = (SmtpSink::start().await, SmtpSink::start().await);
    let mut app = with_admin(TestApp::builder()).spawn().await;
    let admin = admin_token(&app).await;
    let (_, settings) = call(&app, "GET", "/admin/api/settings", Some(&admin), None).await;
    assert_eq!((settings["mail_mode"].as_str(), settings["registration"].as_bool()), (Some("dev"), Some(true)));
    let (_, stats) = call(&app, "GET", "/admin/api/stats", Some(&admin), None).await;
    let warnings = stats["warnings"].to_string();
    assert!(warnings.contains("mail_dev_mode") && warnings.contains("registration_open"), "{warnings}");
    let (status, body) = test_mail(&app, &admin, "ops@example.com").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("mail_dev_mode")));

    // The first relay: the next mail goes through it, with the saved login.
    let (status, saved) = call(&app, "POST", "/admin/api/smtp", Some(&admin), Some(smtp(&first, "first-secret"))).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!((saved["mail_mode"].as_str(), saved["smtp"]["password_set"].as_bool()), (Some("smtp"), Some(true)));
    assert!(!saved.to_string().contains("first-secret"), "the password is never shown back: {saved}");
    assert_eq!(test_mail(&app, &admin, "ops@example.com").await.0, 200);
    let mail = first.next_mail_to("ops@example.com").await;
    assert_eq!((mail.auth_user.as_deref(), mail.auth_password.as_deref()), (Some("console"), Some("first-secret")));

    // The second one, keeping the password (an empty field): switched for the very next mail.
    let (status, _) = call(&app, "POST", "/admin/api/smtp", Some(&admin), Some(smtp(&second, ""))).await;
    assert_eq!(status, 200);
    assert_eq!(test_mail(&app, &admin, "ops@example.com").await.0, 200);
    let mail = second.next_mail_to("ops@example.com").await;
    assert_eq!(mail.auth_password.as_deref(), Some("first-secret"));
    assert!(mail.raw.contains("admin@concord.test"), "{}", mail.raw);
    assert_eq!(first.count_to("ops@example.com"), 0);

    // Bad settings are refused whole and change nothing.
    for bad in [
        json!({ "port": 0 }),
        json!({ "from_email": "not an address" }),
        json!({ "host": "" }),
        json!({ "clear_password": true }),
        json!({ "security": "ssl3" }),
    ] {
        let mut body = smtp(&second, "");
        body.as_object_mut().unwrap().extend(bad.as_object().unwrap().clone());
        let (status, answer) = call(&app, "POST", "/admin/api/smtp", Some(&admin), Some(body)).await;
        assert!(status == 400, "{bad}: {status} {answer}");
        assert!(["invalid_setting", "invalid_json"].contains(&answer["code"].as_str().unwrap()), "{bad}: {answer}");
    }
    let (_, settings) = call(&app, "GET", "/admin/api/settings", Some(&admin), None).await;
    assert_eq!(settings["smtp"]["port"].as_u64(), Some(u64::from(second.addr.port())), "{settings}");

    // General settings: registration off refuses the register API; mail links use the new URL.
    let general =
        json!({ "registration": false, "server_name": "Our <b>Sync</b>", "public_url": "https://sync.example.com/" });
    let (status, settings) = call(&app, "POST", "/admin/api/settings", Some(&admin), Some(general)).await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["public_url"], "https://sync.example.com");
    // People's pages show the new name at once, as text, and their cookies are `Secure` now
    // that the public URL is https.
    for path in ["/", "/login"] {
        let response = app.get(path).await;
        let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("csrf_token=") && cookie.contains("Secure"), "{path}: {cookie}");
        let page = response.text().await.unwrap();
        assert!(page.contains("Our &#60;b&#62;Sync&#60;/b&#62;") && !page.contains("<b>Sync"), "{path}: {page}");
    }
    let register = json!({ "username": "newbie", "email": "newbie@example.com", "password": "long enough password" });
    let refused = json(app.post_json("/api/v1/auth/register", &register).await, 403).await;
    assert_eq!(refused["code"], "registration_closed");
    let created = json!({ "email": "dana@example.com", "username": "dana", "password": "dana's password" });
    assert_eq!(call(&app, "POST", "/admin/api/users/create", Some(&admin), Some(created)).await.0, 201);
    json(app.post_json("/api/v1/auth/forgot", &json!({ "email": "dana@example.com" })).await, 200).await;
    let reset = second.next_mail_to("dana@example.com").await;
    assert!(reset.text().contains("https://sync.example.com/reset?token="), "{}", reset.text());
    let (status, bad) =
        call(&app, "POST", "/admin/api/settings", Some(&admin), Some(json!({ "public_url": "javascript:alert(1)" })))
            .await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_setting")));

    // A relay that refuses connections: the test mail says so and is audited as failed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut unreachable = smtp(&second, "");
    unreachable["port"] = json!(closed);
    assert_eq!(call(&app, "POST", "/admin/api/smtp", Some(&admin), Some(unreachable)).await.0, 200);
    let (status, failed) = test_mail(&app, &admin, "ops@example.com").await;
    assert_eq!((status, failed["code"].as_str()), (502, Some("smtp_failed")), "{failed}");
    assert_eq!(call(&app, "POST", "/admin/api/smtp", Some(&admin), Some(smtp(&second, ""))).await.0, 200);

    // After a restart everything saved is still in force.
    app.restart().await;
    let admin = admin_token(&app).await;
    let (_, settings) = call(&app, "GET", "/admin/api/settings", Some(&admin), None).await;
    assert_eq!(
        (settings["registration"].as_bool(), settings["server_name"].as_str(), settings["mail_mode"].as_str()),
        (Some(false), Some("Our <b>Sync</b>"), Some("smtp")),
        "{settings}"
    );
    json(app.post_json("/api/v1/auth/register", &register).await, 403).await;
    assert_eq!(test_mail(&app, &admin, "ops@example.com").await.0, 200);
    assert_eq!(second.next_mail_to("ops@example.com").await.auth_password.as_deref(), Some("first-secret"));

    // Clearing brings back the startup values: dev mode and open registration.
    let (_, cleared) = call(&app, "DELETE", "/admin/api/smtp", Some(&admin), None).await;
    assert_eq!(cleared["mail_mode"], "dev");
    let (_, cleared) =
        call(&app, "POST", "/admin/api/settings", Some(&admin), Some(json!({ "registration": null }))).await;
    assert_eq!(
        (cleared["registration"].as_bool(), cleared["server_name"].as_str()),
        (Some(true), Some("Our <b>Sync</b>"))
    );
    let registered = json(app.post_json("/api/v1/auth/register", &register).await, 200).await;
    assert!(registered["dev_link"].as_str().is_some(), "{registered}");

    let audit = audit_text(&app, &admin).await;
    for event in
        ["smtp_settings_updated", "smtp_test_passed", "smtp_test_failed", "web_settings_updated", "user_created"]
    {
        assert!(audit.contains(event), "{event} missing from {audit}");
    }
    assert!(!audit.contains("first-secret"), "no secret in the audit log");
}
