//! Cross-site request forgery: every mutating page route, from one table, refuses a form without
//! the CSRF token and one from a foreign origin with 403, and changes nothing in the database;
//! the same request from our own page then goes through (so the refusals are not an accident of
//! a broken request). The admin console appends its routes to [`ROUTES`].

use std::collections::HashMap;

use crate::helpers::{TEST_PASSWORD, TestApp, eventually, json};
use crate::smtp_sink::SmtpSink;
use crate::web_client::{WebClient, register_confirmed_by_mail};
use crate::web_db::snapshot;

/// A mutating route and a form that would change something. `{name}` in a value is replaced
/// from the fixture (tokens from mails, device ids).
pub struct Route {
    pub path: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
    /// Sign in as this login (password [`TEST_PASSWORD`]) first, for routes that need a session.
    pub session: Option<&'static str>,
    /// The status of the accepted request (after the refusals).
    pub accepted: u16,
}

const OWNER: &str = "csrf-owner@example.com";

pub const ROUTES: &[Route] = &[
    Route { path: "/login", fields: &[("login", OWNER), ("password", TEST_PASSWORD)], session: None, accepted: 303 },
    Route { path: "/login/link", fields: &[("email", "csrf-link@example.com")], session: None, accepted: 200 },
    Route {
        path: "/login/code",
        fields: &[("email", "csrf-code@example.com"), ("code", "{code}")],
        session: None,
        accepted: 303,
    },
    Route {
        path: "/register",
        fields: &[("username", "csrf-new"), ("email", "csrf-new@example.com"), ("password", TEST_PASSWORD)],
        session: None,
        accepted: 200,
    },
    Route { path: "/forgot", fields: &[("email", OWNER)], session: None, accepted: 200 },
    Route { path: "/confirm", fields: &[("token", "{confirm_a}")], session: None, accepted: 303 },
    Route { path: "/api/v1/auth/confirm", fields: &[("token", "{confirm_b}")], session: None, accepted: 200 },
    Route {
        path: "/reset",
        fields: &[("token", "{reset_a}"), ("new_password", "another password 1")],
        session: None,
        accepted: 200,
    },
    Route {
        path: "/api/v1/auth/reset",
        fields: &[("token", "{reset_b}"), ("new_password", "another password 2")],
        session: None,
        accepted: 200,
    },
    Route {
        path: "/dashboard/devices/revoke",
        fields: &[("device_id", "{device}"), ("password", TEST_PASSWORD)],
        session: Some(OWNER),
        accepted: 303,
    },
    Route {
        path: "/dashboard/password",
        fields: &[("current_password", TEST_PASSWORD), ("new_password", "a changed password")],
        session: Some("csrf-pw@example.com"),
        accepted: 200,
    },
    // Share links on the dashboard.
    Route {
        path: "/dashboard/shares",
        fields: &[("workspace_id", "{workspace}"), ("doc", "notes"), ("access", "read-only")],
        session: Some(OWNER),
        accepted: 201,
    },
    Route { path: "/dashboard/shares/revoke", fields: &[("share_id", "{share}")], session: Some(OWNER), accepted: 303 },
    Route { path: "/dashboard/sign-out-everywhere", fields: &[], session: Some(OWNER), accepted: 200 },
    Route { path: "/logout", fields: &[], session: Some(OWNER), accepted: 303 },
];

/// Tokens and ids the table's forms refer to.
pub struct Fixture {
    pub values: HashMap<&'static str, String>,
}

impl Fixture {
    fn fill(&self, value: &str) -> String {
        let mut out = value.to_owned();
        for (name, v) in &self.values {
            out = out.replace(&format!("{{{name}}}"), v);
        }
        out
    }
}

async fn fixture(app: &TestApp, sink: &SmtpSink) -> Fixture {
    let mut values = HashMap::new();
    for (key, name, source) in [("confirm_a", "csrf-a", 1), ("confirm_b", "csrf-b", 2)] {
        let email = format!("{name}@example.com");
        let body = serde_json::json!({ "username": name, "email": email, "password": TEST_PASSWORD });
        let client = app.client_from(std::net::Ipv4Addr::new(127, 0, 8, source));
        json(client.post(app.url("/api/v1/auth/register")).json(&body).send().await.unwrap(), 200).await;
        values.insert(key, sink.next_mail_to(&email).await.link_token());
    }
    for (key, email) in [("reset_a", "csrf-r1@example.com"), ("reset_b", "csrf-r2@example.com")] {
        register_confirmed_by_mail(app, sink, email).await;
        json(app.post_json("/api/v1/auth/forgot", &serde_json::json!({ "email": email })).await, 200).await;
        values.insert(key, sink.next_mail_to(email).await.link_token());
    }
    json(app.post_json("/auth/magic-link", &serde_json::json!({ "email": "csrf-code@example.com" })).await, 200).await;
    values.insert("code", sink.next_mail_to("csrf-code@example.com").await.code());
    register_confirmed_by_mail(app, sink, OWNER).await;
    register_confirmed_by_mail(app, sink, "csrf-pw@example.com").await;
    let pairing = serde_json::json!({
        "login": OWNER, "password": TEST_PASSWORD, "device_name": "d", "client_version": "v", "vault_id": "v1",
    });
    let paired = json(app.post_json("/api/client/pair", &pairing).await, 200).await;
    values.insert("device", paired["device_id"].as_str().unwrap().to_owned());
    // Share links: the owner's default workspace, and a share of it to revoke.
    let token = paired["device_token"].as_str().unwrap();
    let workspace = crate::shares_api::default_workspace(app, token).await;
    let share = serde_json::json!({ "workspace_id": workspace, "access": "read-only" });
    let share = crate::shares_api::create_share(app, token, share, 201).await;
    values.insert("share", share["id"].as_str().unwrap().to_owned());
    values.insert("workspace", workspace);
    Fixture { values }
}

/// A client with a CSRF cookie, signed in as `login` if given.
async fn client(app: &TestApp, login: Option<&str>) -> WebClient {
    let web = WebClient::new(app);
    assert_eq!(web.get("/login").await.status, 200);
    if let Some(login) = login {
        let signed_in = web.post_form("/login", &[("login", login), ("password", TEST_PASSWORD)]).await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        assert!(web.cookie("user_session").is_some());
    }
    web
}

#[tokio::test]
async fn the_csrf_cookie_is_set_once_with_its_attributes() {
    let app = TestApp::spawn().await;
    let web = WebClient::new(&app);
    let first = web.get("/login").await;
    assert_eq!(first.status, 200);
    let cookie = first.set_cookies.iter().find(|c| c.starts_with("csrf_token=")).expect("a csrf cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    assert!(first.body.contains(&web.csrf()), "the page's forms carry the cookie's token");
    let again = web.get("/").await;
    assert!(again.set_cookies.is_empty(), "the token is stable once set: {:?}", again.set_cookies);
}

#[tokio::test]
async fn every_mutating_route_refuses_forged_forms_and_changes_nothing() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let fixture = fixture(&app, &sink).await;
    for route in ROUTES {
        let web = client(&app, route.session).await;
        let token = web.csrf();
        let fields: Vec<(String, String)> =
            route.fields.iter().map(|(k, v)| ((*k).to_owned(), fixture.fill(v))).collect();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut with_token = fields.clone();
        with_token.push(("csrf_token", &token));
        let bad = "0".repeat(64);
        let mut wrong = fields.clone();
        wrong.push(("csrf_token", &bad));
        let before = snapshot(&app).await;
        let attempts = [
            ("no token", web.post_form_as(route.path, &fields, Some(&web.base)).await),
            ("wrong token", web.post_form_as(route.path, &wrong, Some(&web.base)).await),
            ("foreign origin", web.post_form_as(route.path, &with_token, Some("http://evil.example")).await),
            ("no origin", web.post_form_as(route.path, &with_token, None).await),
            // A bearer credential an attacker adds does not excuse the cookies from the check.
            ("a token query", web.post_form_as(&format!("{}?token=x", route.path), &fields, Some(&web.base)).await),
            ("a bearer header", web.post_form_with(route.path, &fields, Some(&web.base), Some("Bearer x")).await),
        ];
        for (what, answer) in attempts {
            assert_eq!(answer.status, 403, "{} with {what}: {}", route.path, answer.body);
            assert_eq!(snapshot(&app).await, before, "{} with {what} changed the database", route.path);
        }
        let accepted = web.post_form(route.path, &fields).await;
        assert_eq!(accepted.status, route.accepted, "{} from our own page: {}", route.path, accepted.body);
        if route.accepted == 303 {
            assert!(accepted.location.is_some_and(|l| l.starts_with('/')), "{} redirects within the site", route.path);
        }
        // Forgot stores its token after answering.
        eventually(|| async { snapshot(&app).await != before }).await;
    }
}
