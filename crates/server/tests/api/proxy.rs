//! Issue 10, behind a proxy: forwarded client addresses are believed only from
//! `--trusted-proxies`, and then rate limits (keyed per IPv6 /64) and request logs see them.

use std::net::Ipv4Addr;

use serde_json::json;

use crate::helpers::TestApp;

/// The login limit allows 10 failures per (account, client) in 10 minutes; the 11th is refused.
const LOGIN_BUDGET: usize = 10;

/// One wrong-password login for `nobody` (unknown names are limited like known ones), with
/// `headers`, from `client`: the status.
async fn wrong_login(app: &TestApp, client: &reqwest::Client, headers: &[(&str, &str)]) -> u16 {
    let mut request =
        client.post(app.url("/api/v1/auth/login")).json(&json!({ "username": "nobody", "password": "wrong password" }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Uses up one client's login budget (`LOGIN_BUDGET` answers, then 429) with `headers`.
async fn use_up_budget(app: &TestApp, client: &reqwest::Client, headers: &[(&str, &str)]) {
    for attempt in 0..LOGIN_BUDGET {
        assert_eq!(wrong_login(app, client, headers).await, 401, "attempt {attempt} with {headers:?}");
    }
    assert_eq!(wrong_login(app, client, headers).await, 429, "over the budget with {headers:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_keys_on_the_forwarded_client() {
    let app = TestApp::builder().arg("--trusted-proxies").arg("127.0.0.1/32").spawn().await;
    let proxy = &app.client; // connects from 127.0.0.1
    use_up_budget(&app, proxy, &[("x-forwarded-for", "198.51.100.1")]).await;
    // Another forwarded client has its own budget, behind the same proxy.
    assert_eq!(wrong_login(&app, proxy, &[("x-forwarded-for", "198.51.100.2")]).await, 401);
    // Entries left of the proxy's own are the client's to write: changing them changes nothing.
    for spoofed in ["6.6.6.1", "6.6.6.2, 7.7.7.7", "garbage"] {
        let chain = format!("{spoofed}, 198.51.100.1");
        assert_eq!(wrong_login(&app, proxy, &[("x-forwarded-for", &chain)]).await, 429, "{chain}");
    }
    // A trusted hop on the right is skipped: 127.0.0.1 forwarded 198.51.100.1 through itself.
    assert_eq!(wrong_login(&app, proxy, &[("x-forwarded-for", "198.51.100.1, 127.0.0.1")]).await, 429);
    // RFC 7239, IPv6 with brackets and port; the whole /64 is one client, the next /64 another.
    use_up_budget(&app, proxy, &[("forwarded", "for=\"[2001:db8::1]:443\";proto=https")]).await;
    assert_eq!(wrong_login(&app, proxy, &[("forwarded", "for=\"[2001:db8::ffff:2]\"")]).await, 429);
    assert_eq!(wrong_login(&app, proxy, &[("x-forwarded-for", "2001:db8:0:1::1")]).await, 401);
    // Without a forwarded header, the proxy is the client, with a budget of its own.
    assert_eq!(wrong_login(&app, proxy, &[]).await, 401);
    // The request log names the forwarded client.
    app.wait_for_log("client=198.51.100.2").await;
    app.wait_for_log("client=2001:db8::1").await;
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peers_are_ignored() {
    // Trusted proxies are set, but this client (127.0.0.2) is not one of them; and a server that
    // trusts no proxy (the default) believes no header from anyone, 127.0.0.1 included.
    let app = TestApp::builder().arg("--trusted-proxies").arg("127.0.0.1/32").spawn().await;
    let untrusted = app.client_from(Ipv4Addr::new(127, 0, 0, 2));
    let default = TestApp::spawn().await;
    for (app, client) in [(&app, &untrusted), (&default, &default.client)] {
        // A client rotating forged headers is still one client with one budget.
        for attempt in 0..LOGIN_BUDGET {
            let forged = format!("198.51.100.{attempt}");
            let status = match attempt % 2 {
                0 => wrong_login(app, client, &[("x-forwarded-for", &forged)]).await,
                _ => wrong_login(app, client, &[("forwarded", &format!("for={forged}"))]).await,
            };
            assert_eq!(status, 401, "attempt {attempt}");
        }
        assert_eq!(wrong_login(app, client, &[("x-forwarded-for", "203.0.113.99")]).await, 429);
        assert_eq!(wrong_login(app, client, &[("forwarded", "for=203.0.113.98")]).await, 429);
        assert!(!app.logs().contains("client=198.51.100."), "forged addresses must not reach the log");
    }
    // The trusted proxy itself still gets its forwarded clients' budgets.
    assert_eq!(wrong_login(&app, &app.client, &[("x-forwarded-for", "203.0.113.99")]).await, 401);
}

#[tokio::test]
async fn trusted_proxies_must_be_networks() {
    let err = crate::helpers::concord_refuses_to_start(&[("CONCORD_TRUSTED_PROXIES", "10.0.0.0/8,proxy.lan")], &[]);
    assert!(err.contains("CONCORD_TRUSTED_PROXIES") && err.contains("proxy.lan"), "{err}");
}

/// `/metrics` is open to loopback peers only; a trusted proxy on loopback forwarding a remote
/// client must not make that client local.
#[tokio::test]
async fn metrics_from_a_client_forwarded_by_a_trusted_proxy_need_the_token() {
    let app = TestApp::builder().arg("--trusted-proxies").arg("127.0.0.1/32").spawn().await;
    let scrape = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = app.client.get(app.url("/metrics"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(scrape(&[]).await, 200, "the proxy host itself is local");
    assert_eq!(scrape(&[("x-forwarded-for", "198.51.100.7")]).await, 401);
    assert_eq!(scrape(&[("forwarded", "for=198.51.100.7")]).await, 401);
    assert_eq!(scrape(&[("x-forwarded-for", "127.0.0.1")]).await, 200, "a local client behind the proxy");
}
