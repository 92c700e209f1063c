//! Issue 8, items 5, 10, 11 and 13: rate limits that hold under parallel bursts, bounded password
//! hashing, limits that never lock the owner out, per-user caps, and usernames without case.

use std::net::Ipv4Addr;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{TEST_PASSWORD, TestApp, json};

fn creds(login: &str, password: &str) -> Value {
    json!({ "username": login, "password": password })
}

fn pair_body(login: &str, password: &str) -> Value {
    json!({ "login": login, "password": password, "device_name": "Desk", "vault_id": "v" })
}

/// Sends `count` copies of a POST at once (one client, so one client IP) and counts the statuses.
async fn burst(app: &TestApp, path: &str, body: &Value, count: usize) -> std::collections::BTreeMap<u16, usize> {
    let sends = (0..count).map(|_| app.client.post(app.url(path)).json(body).send());
    let mut statuses = std::collections::BTreeMap::new();
    for response in join_all(sends).await {
        *statuses.entry(response.unwrap().status().as_u16()).or_default() += 1;
    }
    statuses
}

/// The pre-fix server checked the limit, hashed, then counted: all 150 got 401. Now the attempt is
/// counted before hashing, so exactly the limit gets an answer and the rest are refused unhashed.
#[tokio::test]
async fn parallel_wrong_passwords_get_no_more_answers_than_the_limit() {
    let app = TestApp::spawn().await;
    app.register_confirmed("ann@example.com").await;
    let login = burst(&app, "/api/v1/auth/login", &creds("ann.example.com", "wrong password"), 150).await;
    assert_eq!(login, [(401, 10), (429, 140)].into(), "login (10 per account and client)");
    let pair = burst(&app, "/api/client/pair", &pair_body("ann@example.com", "wrong password"), 40).await;
    assert_eq!(pair, [(401, 5), (429, 35)].into(), "pairing (5 per account and client)");
    let test = burst(&app, "/api/auth/test", &creds("ann.example.com", "wrong password"), 60).await;
    assert_eq!(test, [(401, 10), (429, 50)].into(), "connection test");

    // Revoking a device re-checks the password: wrong ones count as failed logins (10).
    let (device, token) = app.paired_device("abe@example.com", "v").await;
    let revoke = json!({ "device_id": device, "password": "wrong password" });
    let sends = (0..30).map(|_| app.post_auth("/api/client/revoke-device", &token, &revoke));
    let revokes = join_all(sends).await.iter().fold(std::collections::BTreeMap::new(), |mut counts, r| {
        *counts.entry(r.status().as_u16()).or_insert(0usize) += 1;
        counts
    });
    assert_eq!(revokes, [(403, 10), (429, 20)].into(), "revoke with password");

    // Sign-in codes: 20 wrong codes per client.
    json(app.post_json("/auth/magic-link", &json!({ "email": "ann@example.com" })).await, 200).await;
    let codes = burst(&app, "/auth/verify-code", &json!({ "email": "ann@example.com", "code": "000000" }), 200).await;
    assert_eq!(codes.get(&400), Some(&20), "{codes:?}");
    assert_eq!(codes.get(&429), Some(&180), "{codes:?}");
}

/// Correct passwords are given back their hit once checked: many more sign-ins than the limit
/// all succeed from one client. (While in flight an attempt counts: its outcome is not known.)
/// The same holds for the codes' limit.
#[tokio::test]
async fn successes_do_not_use_up_the_limit() {
    let app = TestApp::spawn().await;
    app.register_confirmed("bea@example.com").await;
    for _ in 0..3 {
        let ok = burst(&app, "/api/auth/test", &creds("bea.example.com", TEST_PASSWORD), 10).await;
        assert_eq!(ok, [(200, 10)].into());
    }
    // Codes: 19 failures, a right code (given back its hit), then the 20th failure is still
    // answered and only the 21st refused.
    json(app.post_json("/auth/magic-link", &json!({ "email": "bea@example.com" })).await, 200).await;
    for _ in 0..19 {
        json(app.post_json("/auth/verify-code", &json!({ "email": "x@example.com", "code": "000000" })).await, 400)
            .await;
    }
    let link = json(app.post_json("/auth/magic-link", &json!({ "email": "bea@example.com" })).await, 200).await;
    let code = link["dev_code"].as_str().unwrap();
    json(app.post_json("/auth/verify-code", &json!({ "email": "bea@example.com", "code": code })).await, 200).await;
    json(app.post_json("/auth/verify-code", &json!({ "email": "x@example.com", "code": "000000" })).await, 400).await;
    json(app.post_json("/auth/verify-code", &json!({ "email": "x@example.com", "code": "000000" })).await, 429).await;
}

/// 200 parallel logins (half of them right) on different client addresses (so the rate limits let every one
/// through to Argon2): without a bound they would take 200 × 19 MiB ≈ 3.8 GiB. With at most
/// `2 × cores` hashes at once, peak memory stays under the bound below, and a well-behaved
/// client is served once the burst is over. 200 is enough: it is 25 times the slots of a 4-core
/// machine, so an unbounded server would exceed the bound many times over.
#[tokio::test]
async fn a_burst_of_password_checks_keeps_memory_bounded() {
    let app = TestApp::spawn().await;
    app.register_confirmed("cal@example.com").await;
    let before = app.peak_rss_kib();
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    // The hashing slots' reused memory (19 MiB each) plus 64 MiB for the 200 connections and
    // everything else; before the fix this burst peaked at 0.8 to 3.9 GB.
    let bound = before + 2 * cores * 19 * 1024 + 64 * 1024;
    let sends = (0..200u32).map(|i| {
        let client = app.client_from(Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, (i % 250 + 1) as u8));
        let body = creds("cal.example.com", if i % 2 == 0 { TEST_PASSWORD } else { "wrong password" });
        let request = client.post(app.url("/api/v1/auth/login")).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = join_all(sends).await;
    // Every request was checked (200 or 401) or, on a machine too loaded to drain the queue within
    // the slot wait, refused as busy (503); nothing else.
    assert!(statuses.iter().all(|s| [200, 401, 503].contains(s)), "{statuses:?}");
    // At least four rounds of every slot ran, so the bound was tested at full hashing load.
    let checked = statuses.iter().filter(|&&s| s == 200 || s == 401).count() as u64;
    assert!(checked >= 4 * 2 * cores, "{statuses:?}");
    let peak = app.peak_rss_kib();
    assert!(peak < bound, "peak {peak} KiB ≥ bound {bound} KiB (before: {before} KiB)");
    let ok = app.post_json("/api/v1/auth/login", &creds("cal.example.com", TEST_PASSWORD)).await;
    json(ok, 200).await;
    assert!(app.peak_rss_kib() < bound, "a well-behaved login afterwards stays within the bound too");
}

/// Ten wrong passwords from one address must not lock the owner out elsewhere, and one account
/// has one count whatever name (username, email, any case) it is addressed by.
#[tokio::test]
async fn failures_lock_out_the_guessing_client_only_and_count_each_account_once() {
    let app = TestApp::spawn().await;
    app.register_confirmed("dee@example.com").await;
    let attacker = app.client_from(Ipv4Addr::new(127, 0, 0, 2));
    let owner = app.client_from(Ipv4Addr::new(127, 0, 0, 3));
    let post = |client: &reqwest::Client, path: &str, body: Value| {
        let request = client.post(app.url(path)).json(&body);
        async move { request.send().await.unwrap() }
    };
    // Five wrong by username and five by email in another case are ten for one account.
    for login in ["dee.example.com", "DEE.example.com", "dee@example.com", "Dee@Example.com", "dee.example.com"] {
        for _ in 0..2 {
            let failed = post(&attacker, "/api/v1/auth/login", creds(login, "wrong password")).await;
            assert_eq!(failed.status(), 401, "{login}");
        }
    }
    let limited = post(&attacker, "/api/v1/auth/login", creds("DEE@EXAMPLE.COM", TEST_PASSWORD)).await;
    assert_eq!(json(limited, 429).await["code"], "rate_limited");
    // The owner, from another address, signs in and pairs.
    json(post(&owner, "/api/v1/auth/login", creds("dee.example.com", TEST_PASSWORD)).await, 200).await;
    for _ in 0..5 {
        json(post(&attacker, "/api/client/pair", pair_body("dee@example.com", "wrong password")).await, 401).await;
    }
    json(post(&attacker, "/api/client/pair", pair_body("dee@example.com", TEST_PASSWORD)).await, 429).await;
    json(post(&owner, "/api/client/pair", pair_body("dee@example.com", TEST_PASSWORD)).await, 200).await;

    // Unknown names behave exactly like known ones: one count per name in any case.
    let stranger = app.client_from(Ipv4Addr::new(127, 0, 0, 4));
    for login in ["Nobody", "nobody", "NOBODY", "nobody", "noBody", "nobody", "nobody", "nobody", "nobody", "nobody"] {
        json(post(&stranger, "/api/v1/auth/login", creds(login, "wrong password")).await, 401).await;
    }
    json(post(&stranger, "/api/v1/auth/login", creds("nobody", "wrong password")).await, 429).await;
    // And each client is bounded across accounts: 40 failed logins per client in all.
    for i in 0..30 {
        let login = format!("name{}", i / 10);
        json(post(&stranger, "/api/v1/auth/login", creds(&login, "wrong password")).await, 401).await;
    }
    let spread = post(&stranger, "/api/v1/auth/login", creds("fresh-name", "wrong password")).await;
    assert_eq!(json(spread, 429).await["code"], "rate_limited");
    json(post(&owner, "/api/v1/auth/login", creds("dee@example.com", TEST_PASSWORD)).await, 200).await;
}

#[tokio::test]
async fn per_user_caps_hold_under_concurrency_and_say_which_cap() {
    let app = TestApp::builder()
        .env("CONCORD_MAX_DEVICES_PER_USER", "5")
        .env("CONCORD_MAX_WORKSPACES_PER_USER", "3")
        .spawn()
        .await;
    app.register_confirmed("eve@example.com").await;
    // 12 pairings at once, for a cap of 5: the count is checked in the inserting statement.
    // From 12 client addresses, so that the rate limit (which counts attempts in flight) stays out
    // of the way. (12 rather than more: each pairing hashes a password, and a larger burst would
    // test the hashing queue on a loaded machine rather than the cap.)
    let body = pair_body("eve@example.com", TEST_PASSWORD);
    let pairings = (0..12).map(|i| {
        let client = app.client_from(Ipv4Addr::new(127, 0, 2, i + 1));
        client.post(app.url("/api/client/pair")).json(&body).send()
    });
    let mut tokens = Vec::new();
    for response in join_all(pairings).await {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => tokens.push(json(response, 200).await["device_token"].as_str().unwrap().to_owned()),
            403 => {
                let refused = json(response, 403).await;
                assert_eq!(refused["code"], "device_limit_reached", "{refused}");
                assert!(refused["error"].as_str().unwrap().contains("device limit"), "{refused}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(tokens.len(), 5);
    // Every route that makes a device says the same: login and magic-link sign-in.
    let login = json(app.post_json("/api/v1/auth/login", &creds("eve@example.com", TEST_PASSWORD)).await, 403).await;
    assert_eq!(login["code"], "device_limit_reached");
    let link = json(app.post_json("/auth/magic-link", &json!({ "email": "eve@example.com" })).await, 200).await;
    let token = link["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    assert_eq!(json(app.get(&format!("/auth/verify?token={token}")).await, 403).await["code"], "device_limit_reached");
    // Revoking one frees its place, for one more.
    json(app.post_auth("/api/client/revoke-current", &tokens[0], &json!({})).await, 200).await;
    json(app.post_json("/api/client/pair", &body).await, 200).await;
    json(app.post_json("/api/client/pair", &body).await, 403).await;

    // Sign-ins at the cap make room by revoking the least recently seen sessions, so the owner can
    // always sign in; 12 at once still leave exactly 5 live devices.
    app.register_confirmed("gus@example.com").await;
    let logins = (0..12).map(|i| {
        let client = app.client_from(Ipv4Addr::new(127, 0, 3, i + 1));
        client.post(app.url("/api/v1/auth/login")).json(&creds("gus@example.com", TEST_PASSWORD)).send()
    });
    let mut sessions = Vec::new();
    for response in join_all(logins).await {
        sessions.push(json(response.unwrap(), 200).await["token"].as_str().unwrap().to_owned());
    }
    let mut live = 0;
    for session in &sessions {
        match app.get_auth("/api/v1/user/devices", session).await.status().as_u16() {
            200 => live += 1,
            status => assert_eq!(status, 401, "an evicted session reads as revoked"),
        }
    }
    assert_eq!(live, 5);

    // Workspaces: another user (its sign-in session is its only device), 20 creations at once
    // for a cap of 3 besides `default`.
    let session = app.sign_in("fay@example.com").await;
    let creations = (0..20).map(|i| {
        let request = app.client.post(app.url("/api/workspaces")).bearer_auth(&session);
        request.json(&json!({ "name": format!("w{i}") })).send()
    });
    let mut created = 0;
    for response in join_all(creations).await {
        let response = response.unwrap();
        match response.status().as_u16() {
            201 => created += 1,
            403 => assert_eq!(json(response, 403).await["code"], "workspace_limit_reached"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 3);
    let listed = json(app.get_auth("/api/workspaces", &session).await, 200).await;
    assert_eq!(listed.as_array().unwrap().len(), 4, "three and default: {listed}");
    // Signing in again (which ensures `default`) still works at the cap.
    app.sign_in("fay@example.com").await;
}

#[tokio::test]
async fn usernames_are_unique_and_matched_without_case() {
    let app = TestApp::spawn().await;
    let register = |username: &str, email: &str| {
        let body = json!({ "username": username, "email": email, "password": TEST_PASSWORD });
        let app = &app;
        async move { app.post_json("/api/v1/auth/register", &body).await }
    };
    let first = json(register("Bob", "bob@example.com").await, 200).await;
    let token = first["dev_link"].as_str().unwrap().split_once("token=").unwrap().1.to_owned();
    json(app.post_json("/api/v1/auth/confirm", &json!({ "token": token })).await, 200).await;
    for taken in ["bob", "BOB", "bOb"] {
        assert_eq!(json(register(taken, &format!("{taken}2@example.com")).await, 409).await["code"], "already_exists");
    }
    let user_id =
        json(app.post_json("/api/v1/auth/login", &creds("BOB", TEST_PASSWORD)).await, 200).await["user_id"].clone();
    let paired = json(app.post_json("/api/client/pair", &pair_body("bob", TEST_PASSWORD)).await, 200).await;
    assert_eq!(paired["user_id"], user_id);
    let me = json(app.get_auth("/api/client/me", paired["device_token"].as_str().unwrap()).await, 200).await;
    assert_eq!(me["username"], "Bob", "the name keeps the spelling it was registered with");
}
