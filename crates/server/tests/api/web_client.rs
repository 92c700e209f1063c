//! A cookie-keeping HTTP client for the server's pages, as a browser without JavaScript uses
//! them: it stores the cookies the server sets, sends them back, and submits forms with the page's
//! CSRF token and this server's `Origin`. Redirects are not followed, so tests see them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::helpers::{DEADLINE, TEST_PASSWORD, TestApp, json};
use crate::smtp_sink::SmtpSink;

pub struct WebClient {
    pub base: String,
    client: reqwest::Client,
    /// Cookies the server set, by name (one path each in Concord).
    cookies: Mutex<BTreeMap<String, String>>,
}

/// A response read whole.
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub set_cookies: Vec<String>,
}

impl WebClient {
    pub fn new(app: &TestApp) -> WebClient {
        let client =
            reqwest::Client::builder().timeout(DEADLINE).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        WebClient { base: app.base.clone(), client, cookies: Mutex::default() }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    /// The CSRF token forms must carry (the server sets it on the first page).
    pub fn csrf(&self) -> String {
        self.cookie("csrf_token").expect("no csrf_token cookie yet: get a page first")
    }

    async fn read(&self, response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let set_cookies: Vec<String> =
            headers.get_all(reqwest::header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = cookie.to_ascii_lowercase().contains("max-age=0");
            let mut jar = self.cookies.lock().unwrap();
            if expired || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let location = headers.get(reqwest::header::LOCATION).map(|v| v.to_str().unwrap().to_owned());
        Answer { status, location, body: response.text().await.unwrap(), set_cookies }
    }

    pub async fn get(&self, path: &str) -> Answer {
        let response = self.client.get(self.url(path)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.read(response).await
    }

    /// Submits a form as our own page would: the CSRF token in the body, our origin.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let token = self.csrf();
        let mut fields = fields.to_vec();
        fields.push(("csrf_token", &token));
        self.post_form_as(path, &fields, Some(&self.base.clone())).await
    }

    /// Submits exactly `fields` with `origin` (or none), for tests of the CSRF check.
    pub async fn post_form_as(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Answer {
        self.post_form_with(path, fields, origin, None).await
    }

    /// [`Self::post_form_as`] with an `Authorization` header too.
    pub async fn post_form_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
        authorization: Option<&str>,
    ) -> Answer {
        let mut request = self.client.post(self.url(path)).header("cookie", self.cookie_header()).form(fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        self.read(request.send().await.unwrap()).await
    }
}

/// Registers `email` with [`TEST_PASSWORD`] (username: the email with `@` → `.`) on a server that
/// mails, and confirms it with the link from the mail. Each call comes from its own loopback
/// address, so fixtures with many accounts stay under the per-client registration limit.
pub async fn register_confirmed_by_mail(app: &TestApp, sink: &SmtpSink, email: &str) {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
    let source = std::net::Ipv4Addr::new(127, 0, 7, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let client = app.client_from(source);
    let username = email.replace('@', ".");
    let body = serde_json::json!({ "username": username, "email": email, "password": TEST_PASSWORD });
    json(client.post(app.url("/api/v1/auth/register")).json(&body).send().await.unwrap(), 200).await;
    let token = sink.next_mail_to(email).await.link_token();
    let confirmed =
        json(app.post_json("/api/v1/auth/confirm", &serde_json::json!({ "token": token })).await, 200).await;
    assert_eq!(confirmed["status"], "confirmed");
}
