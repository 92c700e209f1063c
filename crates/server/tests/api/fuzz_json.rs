//! Fuzzing of JSON request bodies: seeded random and malformed bodies into every route that
//! decodes a JSON body (identity, op log, shares, workspaces, document history, the admin API
//! and its DELETEs that carry the admin's password), through the real server and its one
//! `ApiJson` path. Properties: never a 5xx, and every 400 is the `{"error","code"}` shape.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::admin_api::{admin_token, with_admin};
use crate::helpers::TestApp;

/// Field names the request types use, so bodies reach the validators and not only "unknown field".
const KEYS: &[&str] = &[
    "email",
    "password",
    "new_password",
    "current_password",
    "username",
    "login",
    "code",
    "token",
    "device_id",
    "device_name",
    "client_version",
    "vault_id",
    "idempotency_key",
    "ops",
    "op_id",
    "entity_type",
    "entity_id",
    "op_type",
    "payload_json",
    "client_sequence",
    "last_seen_server_seq",
    "created_at",
    "since_sequence",
    "limit",
    "name",
    "workspace_id",
    "doc",
    "access",
    "expires_in_secs",
    "admin",
    "admin_password",
    "blocked",
    "mode",
    "server_name",
    "public_url",
    "registration",
    "host",
    "port",
    "security",
    "clear_password",
    "from_email",
    "from_name",
    "label",
    "x",
];

fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(*[i64::MIN, -1, 0, 1, 100, 101, i64::MAX].get(rng.random_range(0..7)).unwrap()),
        3 => json!(rng.random::<f64>() * 1e20),
        4 => json!(["", " ", "a@b.c", "\u{0}", "é\u{202e}", "file", "-1", "null"][rng.random_range(0..8)]),
        5 => json!("x".repeat(rng.random_range(0..5000))),
        6 => Value::Array((0..rng.random_range(0..4)).map(|_| value(rng, depth + 1)).collect()),
        _ => object(rng, depth + 1),
    }
}

fn object(rng: &mut StdRng, depth: u32) -> Value {
    let mut fields = Map::new();
    for _ in 0..rng.random_range(0..6) {
        fields.insert(KEYS[rng.random_range(0..KEYS.len())].to_owned(), value(rng, depth));
    }
    Value::Object(fields)
}

/// A body: mostly a JSON object of known keys, sometimes another JSON value, malformed JSON,
/// trailing data or bytes that are not UTF-8.
fn body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 => b"{\"email\":".to_vec(),
        1 => b"{} {}".to_vec(),
        2 => vec![0xff, 0xfe, b'{', b'}'],
        3 => serde_json::to_vec(&value(&mut *rng, 0)).unwrap(),
        _ => serde_json::to_vec(&object(rng, 0)).unwrap(),
    }
}

/// 40 bodies per route are enough to reach each request type's decoder and validators with
/// every JSON type in every known field; the in-process fuzz targets go deeper where the logic is.
#[tokio::test]
async fn json_bodies_never_make_the_server_fail() {
    let app = with_admin(TestApp::builder()).spawn().await;
    let session = app.sign_in("fuzz@example.com").await;
    let (_, device) = app.paired_device("fuzz-device@example.com", "vault").await;
    let admin = admin_token(&app).await;
    // The admin routes act on a user of their own, so blocking or editing it leaves the
    // credentials above working for the routes after them.
    let created = json!({ "email": "victim@example.com", "username": "victim", "password": "victim's password" });
    let (status, victim) =
        crate::admin_api::call(&app, "POST", "/admin/api/users/create", Some(&admin), Some(created)).await;
    assert_eq!(status, 201, "{victim}");
    let victim = victim["user"]["id"].as_str().unwrap().to_owned();
    let user_route = |action: &str| format!("/admin/api/users/{victim}/{action}");
    // A workspace (for the admin's removal) and a document with a version, so the history routes
    // get past their 404s.
    let workspace =
        crate::helpers::json(app.post_auth("/api/workspaces", &session, &json!({ "name": "fuzzed" })).await, 201).await
            ["id"]
            .as_str()
            .unwrap()
            .to_owned();
    // A bare name is placed in the default workspace (the sockets' rule).
    let default = crate::shares_api::default_workspace(&app, &session).await;
    let doc = format!("/api/workspaces/{default}/docs/notes");
    let update = {
        use yrs::{ReadTxn, Text, Transact};
        let ydoc = yrs::Doc::new();
        ydoc.get_or_insert_text("body").insert(&mut ydoc.transact_mut(), 0, "fuzzed");
        ydoc.transact().encode_state_as_update_v1(&yrs::StateVector::default())
    };
    let written = app.client.post(app.url(&doc)).bearer_auth(&session).body(update).send().await.unwrap();
    assert_eq!(written.status(), 200);
    let version = crate::helpers::json(
        app.post_auth(&format!("{doc}/versions"), &session, &json!({ "label": "first" })).await,
        201,
    )
    .await;
    let version = version["id"].as_i64().expect("a version id");
    let document_routes: Vec<(String, &str)> = vec![
        ("/api/workspaces".to_owned(), &session),
        (format!("{doc}/versions"), &session),
        (format!("{doc}/versions/{version}/restore"), &session),
    ];
    let admin_routes: Vec<(String, &str)> = vec![
        ("/api/shares".to_owned(), &session),
        ("/admin/api/users/create".to_owned(), &admin),
        (user_route("block"), &admin),
        (user_route("confirm"), &admin),
        (user_route("admin"), &admin),
        (user_route("edit"), &admin),
        (user_route("reset-password"), &admin),
        (format!("DELETE:/admin/api/users/{victim}"), &admin),
        ("/admin/api/devices/1/revoke".to_owned(), &admin),
        ("/admin/api/storage/cleanup".to_owned(), &admin),
        ("DELETE:/admin/api/devices/1".to_owned(), &admin),
        ("DELETE:/admin/api/vaults/nobody/vault".to_owned(), &admin),
        (format!("DELETE:/admin/api/workspaces/{workspace}"), &admin),
        ("/admin/api/settings".to_owned(), &admin),
        // Last of the admin routes: a fuzzed SMTP relay must not receive the mails above.
        ("/admin/api/smtp".to_owned(), &admin),
    ];
    // The routes that end sessions or devices come last, so the others are fuzzed signed in.
    let first: &[(&str, &str)] = &[
        ("/auth/magic-link", ""),
        ("/auth/verify-code", ""),
        ("/api/v1/auth/register", ""),
        ("/api/v1/auth/confirm", ""),
        ("/api/v1/auth/login", ""),
        ("/api/v1/auth/forgot", ""),
        ("/api/v1/auth/reset", ""),
        ("/api/client/pair", ""),
        ("/api/auth/test", &device),
        ("/api/v1/sync/push", &device),
        ("/api/v1/sync/pull", &device),
    ];
    let last: &[(&str, &str)] = &[
        ("/api/v1/user/devices/1/revoke", &session),
        ("/api/client/revoke-device", &device),
        ("/api/client/revoke-current", &device),
        ("/auth/logout", &session),
    ];
    let routes = first
        .iter()
        .map(|&(path, token)| (path.to_owned(), token))
        .chain(document_routes)
        .chain(admin_routes)
        .chain(last.iter().map(|&(path, token)| (path.to_owned(), token)));
    let mut rng = StdRng::seed_from_u64(0x15_0b0d);
    for (path, token) in routes {
        let path = path.as_str();
        for _ in 0..40 {
            let body = body(&mut rng);
            // `DELETE:` routes are the admin API's removals, whose body carries the password.
            let mut request = match path.strip_prefix("DELETE:") {
                Some(path) => app.client.delete(app.url(path)),
                None => app.client.post(app.url(path)),
            }
            .header("content-type", "application/json");
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            let response = request.body(body.clone()).send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            assert!(status < 500, "POST {path} {shown:?} got {status}: {text}");
            if status == 400 {
                let parsed: Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("POST {path} {shown:?}: {text}"));
                assert!(parsed["error"].is_string() && parsed["code"].is_string(), "POST {path} {shown:?}: {text}");
            }
        }
    }
}
