//! The admin console's pages from outside, as a browser without JavaScript uses them: one route
//! table for 401 without a session and 403 for a signed-in non-admin, one for CSRF (every
//! mutating form refuses a missing or wrong token and a foreign or missing origin and changes
//! nothing), and text users control escaped on every page.

use serde_json::json;

use crate::admin_api::{admin_token, call, with_admin};
use crate::helpers::{TEST_PASSWORD, TestApp, json};
use crate::web_client::WebClient;
use crate::web_db::snapshot;

/// Every console page (GET) and form target (POST), with ids that do not exist.
pub const CONSOLE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin"),
    ("GET", "/admin/users"),
    ("GET", "/admin/devices"),
    ("GET", "/admin/vaults"),
    ("GET", "/admin/storage"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/settings"),
    ("GET", "/admin/diagnostics"),
    ("POST", "/admin/logout"),
    ("POST", "/admin/users/create"),
    ("POST", "/admin/users/nobody/block"),
    ("POST", "/admin/users/nobody/confirm"),
    ("POST", "/admin/users/nobody/admin"),
    ("POST", "/admin/users/nobody/edit"),
    ("POST", "/admin/users/nobody/reset-password"),
    ("POST", "/admin/users/nobody/delete"),
    ("POST", "/admin/devices/nothing/revoke"),
    ("POST", "/admin/devices/nothing/delete"),
    ("POST", "/admin/vaults/nobody/v1/delete"),
    ("POST", "/admin/workspaces/nothing/delete"),
    ("POST", "/admin/storage/cleanup"),
    ("POST", "/admin/backup"),
    ("POST", "/admin/settings"),
    ("POST", "/admin/smtp"),
    ("POST", "/admin/smtp/clear"),
    ("POST", "/admin/smtp/test"),
];

/// Signs `web` in to the console as `login`.
async fn console_sign_in(web: &WebClient, login: &str, password: &str) {
    assert_eq!(web.get("/admin/login").await.status, 200);
    let answer = web.post_form("/admin/login", &[("login", login), ("password", password)]).await;
    assert_eq!((answer.status, answer.location.as_deref()), (303, Some("/admin")), "{}", answer.body);
    let cookie = answer.set_cookies.iter().find(|c| c.starts_with("admin_session=")).expect("an admin_session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/admin"),
        "{cookie}"
    );
}

async fn request(web: &WebClient, method: &str, path: &str) -> crate::web_client::Answer {
    if method == "GET" { web.get(path).await } else { web.post_form(path, &[]).await }
}

#[tokio::test]
async fn every_console_route_is_401_without_a_session_and_403_for_a_non_admin() {
    let app = with_admin(TestApp::builder()).spawn().await;
    let admin = admin_token(&app).await;
    let nobody = WebClient::new(&app);
    // A person's own session opens nothing here.
    let person = WebClient::new(&app);
    person.get("/login").await;
    let signed_in = person.post_form("/login", &[("login", "root"), ("password", TEST_PASSWORD)]).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    // An admin whose rights are withdrawn keeps a console session that no longer opens anything.
    let created =
        json!({ "email": "former@example.com", "username": "former", "password": TEST_PASSWORD, "admin": true });
    let (status, body) = call(&app, "POST", "/admin/api/users/create", Some(&admin), Some(created)).await;
    assert_eq!(status, 201, "{body}");
    let former = WebClient::new(&app);
    console_sign_in(&former, "former", TEST_PASSWORD).await;
    assert_eq!(former.get("/admin/users").await.status, 200);
    let id = body["user"]["id"].as_str().unwrap();
    let withdraw = Some(json!({ "admin": false }));
    assert_eq!(call(&app, "POST", &format!("/admin/api/users/{id}/admin"), Some(&admin), withdraw).await.0, 200);

    nobody.get("/admin/login").await;
    for &(method, path) in CONSOLE_ROUTES {
        for (who, web, expected) in
            [("no session", &nobody, 401), ("a person", &person, 401), ("a non-admin", &former, 403)]
        {
            let answer = request(web, method, path).await;
            assert_eq!(answer.status, expected, "{method} {path} as {who}: {}", answer.body);
            assert!(answer.location.is_none(), "{method} {path} as {who}: never a redirect");
        }
    }
    // The API under /admin/api takes the console cookie too, with the same rules.
    let answer = former.get("/admin/api/stats").await;
    assert_eq!(answer.status, 403, "{}", answer.body);
}

/// A mutating console form and fields that would change something (`{user}`, `{device}` and
/// `{workspace}` filled in from the fixture), in the shape of `web_csrf::ROUTES`.
struct Route {
    path: &'static str,
    fields: &'static [(&'static str, &'static str)],
}

const PW: (&str, &str) = ("admin_password", TEST_PASSWORD);

const ROUTES: &[Route] = &[
    Route { path: "/admin/users/create", fields: &[("email", "made@example.com")] },
    Route { path: "/admin/users/{user}/block", fields: &[("blocked", "true")] },
    Route { path: "/admin/users/{user}/admin", fields: &[("admin", "true")] },
    Route { path: "/admin/users/{user}/edit", fields: &[("email", "edited@example.com"), ("username", "edited")] },
    Route {
        path: "/admin/settings",
        fields: &[("server_name", "Renamed"), ("public_url", ""), ("registration", "off")],
    },
    Route {
        path: "/admin/smtp",
        fields: &[("host", "127.0.0.1"), ("port", "2526"), ("security", "none"), ("from_email", "a@example.com")],
    },
    Route { path: "/admin/smtp/clear", fields: &[] },
    Route { path: "/admin/storage/cleanup", fields: &[] },
    Route { path: "/admin/devices/{device}/revoke", fields: &[PW] },
    Route { path: "/admin/workspaces/{workspace}/delete", fields: &[PW] },
    Route { path: "/admin/vaults/{user}/vault-1/delete", fields: &[PW] },
    Route { path: "/admin/users/{user}/reset-password", fields: &[PW, ("mode", "one_time")] },
    Route { path: "/admin/users/{user}/delete", fields: &[PW] },
];

#[tokio::test]
async fn every_console_form_refuses_forgeries_and_changes_nothing() {
    let app = with_admin(TestApp::builder()).spawn().await;
    let admin = admin_token(&app).await;
    let (_, device_token) = app.paired_device("victim@example.com", "vault-1").await;
    // Revoked by its own form; the vault-1 client is revoked by deleting its vault.
    let (device, _) = app.paired_device("victim@example.com", "vault-2").await;
    let me = json(app.get_auth("/api/client/me", &device_token).await, 200).await;
    let user = me["user_id"].as_str().unwrap().to_owned();
    let session = app.sign_in("victim@example.com").await;
    let workspace = json(app.post_auth("/api/workspaces", &session, &json!({ "name": "notes" })).await, 201).await;
    let workspace = workspace["id"].as_str().unwrap().to_owned();
    // Clear SMTP must have something to clear.
    let smtp = json!({ "host": "127.0.0.1", "port": 2525, "security": "none", "from_email": "a@example.com" });
    assert_eq!(call(&app, "POST", "/admin/api/smtp", Some(&admin), Some(smtp)).await.0, 200);
    let web = WebClient::new(&app);
    console_sign_in(&web, "root", TEST_PASSWORD).await;
    let token = web.csrf();
    for route in ROUTES {
        let path = route.path.replace("{user}", &user).replace("{device}", &device).replace("{workspace}", &workspace);
        let fields: Vec<(&str, &str)> = route.fields.to_vec();
        let mut with_token = fields.clone();
        with_token.push(("csrf_token", &token));
        let wrong = "0".repeat(64);
        let mut with_wrong = fields.clone();
        with_wrong.push(("csrf_token", &wrong));
        let before = snapshot(&app).await;
        let attempts = [
            ("no token", web.post_form_as(&path, &fields, Some(&web.base)).await),
            ("wrong token", web.post_form_as(&path, &with_wrong, Some(&web.base)).await),
            ("foreign origin", web.post_form_as(&path, &with_token, Some("http://evil.example")).await),
            ("no origin", web.post_form_as(&path, &with_token, None).await),
        ];
        for (what, answer) in attempts {
            assert_eq!(answer.status, 403, "{path} with {what}: {}", answer.body);
            assert_eq!(snapshot(&app).await, before, "{path} with {what} changed the database");
        }
        let accepted = web.post_form(&path, &fields).await;
        assert_eq!(accepted.status, 200, "{path} from our own page: {}", accepted.body);
        // Cleanup may legitimately find nothing to remove; every other form changes something.
        if route.path != "/admin/storage/cleanup" {
            crate::helpers::eventually(|| async { snapshot(&app).await != before }).await;
        }
    }
}

const SCRIPT: &str = "<script>alert(1)</script>";
const ATTRIBUTE: &str = "\"><img src=x onerror=alert(1)>";

/// Whether `body` holds `raw` as HTML escaping writes it (named or numeric references).
fn shows_escaped(body: &str, raw: &str) -> bool {
    let escape = |named: bool| {
        raw.chars()
            .map(|c| match (c, named) {
                ('<', true) => "&lt;".to_owned(),
                ('>', true) => "&gt;".to_owned(),
                ('"', true) => "&quot;".to_owned(),
                ('<' | '>' | '"' | '\'', _) => format!("&#{};", c as u32),
                ('&', _) => "&amp;".to_owned(),
                (c, _) => c.to_string(),
            })
            .collect::<String>()
    };
    body.contains(&escape(true)) || body.contains(&escape(false))
}

#[tokio::test]
async fn text_users_control_is_escaped_on_every_console_page() {
    let app = with_admin(TestApp::builder()).spawn().await;
    let admin = admin_token(&app).await;
    app.register_confirmed("mallory@example.com").await;
    for (name, vault) in [(SCRIPT, ATTRIBUTE), (ATTRIBUTE, SCRIPT)] {
        let body = json!({
            "login": "mallory@example.com", "password": TEST_PASSWORD, "device_name": name,
            "client_version": name, "vault_id": vault,
        });
        json(app.post_json("/api/client/pair", &body).await, 200).await;
    }
    let session = app.sign_in("mallory@example.com").await;
    for name in [SCRIPT, ATTRIBUTE] {
        json(app.post_auth("/api/workspaces", &session, &json!({ "name": name })).await, 201).await;
    }
    let settings = json!({ "server_name": format!("{SCRIPT}{ATTRIBUTE}") });
    assert_eq!(call(&app, "POST", "/admin/api/settings", Some(&admin), Some(settings)).await.0, 200);
    // A failed sign-in puts the attacker's login text into the audit log.
    let wrong = json!({ "username": SCRIPT, "password": "not the password" });
    app.post_json("/api/v1/auth/login", &wrong).await;
    crate::helpers::eventually(|| async {
        call(&app, "GET", "/admin/api/audit?event=sign_in_failed", Some(&admin), None).await.1["total"] == 1
    })
    .await;

    let web = WebClient::new(&app);
    console_sign_in(&web, "root", TEST_PASSWORD).await;
    for page in [
        "/admin",
        "/admin/users",
        "/admin/devices",
        "/admin/vaults",
        "/admin/audit",
        "/admin/settings",
        "/admin/storage",
        "/admin/diagnostics",
    ] {
        let answer = web.get(page).await;
        assert_eq!(answer.status, 200, "{page}: {}", answer.body);
        for raw in [SCRIPT, ATTRIBUTE, "<img"] {
            assert!(!answer.body.contains(raw), "{page} shows {raw:?} unescaped");
        }
        assert!(shows_escaped(&answer.body, SCRIPT), "{page} shows the server name, escaped");
    }
    for page in ["/admin/devices", "/admin/vaults"] {
        let body = web.get(page).await.body;
        assert!(shows_escaped(&body, ATTRIBUTE) && shows_escaped(&body, SCRIPT), "{page}: {body}");
    }
    // The login page (no session) names the server too, escaped.
    let fresh = WebClient::new(&app).get("/admin").await;
    assert_eq!(fresh.status, 401);
    assert!(!fresh.body.contains(SCRIPT) && shows_escaped(&fresh.body, SCRIPT));
}
