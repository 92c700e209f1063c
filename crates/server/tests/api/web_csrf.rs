//! Cross-site request forgery: every mutating page route, from one table, refuses a form without
//! the CSRF token and one from a foreign origin with 403, and changes nothing in the database;
//! the same request from our own page then goes through (so the refusals are not an accident of
//! a broken request). The admin console appends its routes to [`ROUTES`].

use std::collections::HashMap;

use crate::helpers::{TEST_PASSWORD, TestApp};
use crate::smtp_sink::SmtpSink;
use crate::web_client::{WebClient, register_confirmed_by_mail};
use crate::web_db::snapshot;

/// A mutating route and a form that would change something. `{name}` in a value is replaced
/// from the fixture (tokens from mails, device ids).
pub struct Route {
    pub path: &'static str,
    pub fields: &'static [(&'static str, &'static str)],
    /// The status of the accepted request (after the two refusals).
    pub accepted: u16,
}

pub const ROUTES: &[Route] = &[
    Route { path: "/confirm", fields: &[("token", "{confirm_a}")], accepted: 303 },
    Route { path: "/api/v1/auth/confirm", fields: &[("token", "{confirm_b}")], accepted: 200 },
    Route { path: "/reset", fields: &[("token", "{reset_a}"), ("new_password", "another password 1")], accepted: 200 },
    Route {
        path: "/api/v1/auth/reset",
        fields: &[("token", "{reset_b}"), ("new_password", "another password 2")],
        accepted: 200,
    },
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
    for (key, name) in [("confirm_a", "csrf-a"), ("confirm_b", "csrf-b")] {
        let email = format!("{name}@example.com");
        let body = serde_json::json!({ "username": name, "email": email, "password": TEST_PASSWORD });
        crate::helpers::json(app.post_json("/api/v1/auth/register", &body).await, 200).await;
        values.insert(key, sink.next_mail_to(&email).await.link_token());
    }
    for (key, email) in [("reset_a", "csrf-r1@example.com"), ("reset_b", "csrf-r2@example.com")] {
        register_confirmed_by_mail(app, sink, email).await;
        let body = serde_json::json!({ "email": email });
        crate::helpers::json(app.post_json("/api/v1/auth/forgot", &body).await, 200).await;
        values.insert(key, sink.next_mail_to(email).await.link_token());
    }
    Fixture { values }
}

#[tokio::test]
async fn every_mutating_route_refuses_forged_forms_and_changes_nothing() {
    let sink = SmtpSink::start().await;
    let app = sink.app().spawn().await;
    let fixture = fixture(&app, &sink).await;
    let web = WebClient::new(&app);
    let first = web.get("/confirm/result?status=confirmed").await;
    assert_eq!(first.status, 200);
    let cookie = first.set_cookies.iter().find(|c| c.starts_with("csrf_token=")).expect("a csrf cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http here: {cookie}");
    let token = web.csrf();
    let again = web.get("/confirm/result?status=confirmed").await;
    assert!(again.set_cookies.is_empty(), "the token is stable once set: {:?}", again.set_cookies);
    for route in ROUTES {
        let fields: Vec<(String, String)> =
            route.fields.iter().map(|(k, v)| ((*k).to_owned(), fixture.fill(v))).collect();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut with_token = fields.clone();
        with_token.push(("csrf_token", &token));
        let before = snapshot(&app).await;
        let attempts = [
            ("no token", web.post_form_as(route.path, &fields, Some(&web.base)).await),
            ("wrong token", {
                let mut wrong = fields.clone();
                let bad = "0".repeat(64);
                wrong.push(("csrf_token", &bad));
                web.post_form_as(route.path, &wrong, Some(&web.base)).await
            }),
            ("foreign origin", web.post_form_as(route.path, &with_token, Some("http://evil.example")).await),
            ("no origin", web.post_form_as(route.path, &with_token, None).await),
        ];
        for (what, answer) in attempts {
            assert_eq!(answer.status, 403, "{} with {what}: {}", route.path, answer.body);
            assert_eq!(snapshot(&app).await, before, "{} with {what} changed the database", route.path);
        }
        let accepted = web.post_form(route.path, &fields).await;
        assert_eq!(accepted.status, route.accepted, "{} from our own page: {}", route.path, accepted.body);
        assert_ne!(snapshot(&app).await, before, "{} from our own page changed nothing", route.path);
        if route.accepted == 303 {
            assert!(accepted.location.is_some_and(|l| l.starts_with('/')), "{} redirects within the site", route.path);
        }
    }
}
