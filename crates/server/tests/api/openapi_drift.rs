//! The OpenAPI document and the router agree: every documented operation is served, every served
//! route is documented, and the pages left out of the document are exactly the listed ones.
//!
//! The router cannot list its routes, so the live server is asked: a `PATCH` (a method no route
//! uses) to a routed path is answered 405 with an `Allow` header naming the methods the path
//! serves, while an unrouted path falls through to 404. The other direction comes from the
//! source: routes are registered only through `utoipa_axum::routes!` (which documents them), and
//! a `.route(` call is allowed only among the pages of `web/`, whose paths must all be listed in
//! [`PAGES`].
//!
//! Statuses are checked where that is cheap: every operation asked without credentials or body
//! answers a status its entry documents, and every WebSocket endpoint answers a real upgrade
//! with its documented 101. Schema names are unique in the source, or one type's schema would
//! silently stand for two.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::helpers::TestApp;

/// Pages for people (HTML forms and their assets), deliberately not in the document. A new page
/// goes here; a new API route gets `#[utoipa::path]` and `routes!` instead (see ARCHITECTURE.md).
const PAGES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/assets/concord.css", &["GET"]),
    ("/login", &["GET", "POST"]),
    ("/login/link", &["POST"]),
    ("/login/code", &["POST"]),
    ("/register", &["GET", "POST"]),
    ("/forgot", &["GET", "POST"]),
    ("/logout", &["POST"]),
    ("/confirm", &["POST"]),
    ("/confirm/result", &["GET"]),
    ("/reset", &["GET", "POST"]),
    ("/dashboard", &["GET"]),
    ("/dashboard/devices/revoke", &["POST"]),
    ("/dashboard/password", &["POST"]),
    ("/dashboard/sign-out-everywhere", &["POST"]),
    ("/dashboard/shares", &["POST"]),
    ("/dashboard/shares/revoke", &["POST"]),
    ("/admin/login", &["GET", "POST"]),
    ("/admin/logout", &["POST"]),
    ("/admin", &["GET"]),
    ("/admin/users", &["GET"]),
    ("/admin/users/create", &["POST"]),
    ("/admin/users/{id}/block", &["POST"]),
    ("/admin/users/{id}/confirm", &["POST"]),
    ("/admin/users/{id}/admin", &["POST"]),
    ("/admin/users/{id}/edit", &["POST"]),
    ("/admin/users/{id}/reset-password", &["POST"]),
    ("/admin/users/{id}/delete", &["POST"]),
    ("/admin/devices", &["GET"]),
    ("/admin/devices/{id}/revoke", &["POST"]),
    ("/admin/devices/{id}/delete", &["POST"]),
    ("/admin/vaults", &["GET"]),
    ("/admin/vaults/{user_id}/{vault_id}/delete", &["POST"]),
    ("/admin/workspaces/{id}/delete", &["POST"]),
    ("/admin/storage", &["GET"]),
    ("/admin/storage/cleanup", &["POST"]),
    ("/admin/backup", &["POST"]),
    ("/admin/audit", &["GET"]),
    ("/admin/settings", &["GET", "POST"]),
    ("/admin/smtp", &["POST"]),
    ("/admin/smtp/clear", &["POST"]),
    ("/admin/smtp/test", &["POST"]),
    ("/admin/diagnostics", &["GET"]),
];

/// Pages that are also a documented WebSocket upgrade: `/` upgrades Hocuspocus providers
/// pointed at the base URL.
const UPGRADE_PAGES: &[&str] = &["/"];

/// Path templates with every `{param}` filled, so the router matches them.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed parameter") + start;
        out.push_str("probe");
        rest = &rest[end + 1..];
    }
    out + rest
}

/// The methods the live router serves at `template`, from the `Allow` of a 405 to `PATCH`;
/// `None` when nothing is routed there.
async fn served_methods(app: &TestApp, template: &str) -> Option<BTreeSet<String>> {
    let response = reqwest::Client::new().patch(app.url(&concrete(template))).send().await.expect("server answers");
    match response.status().as_u16() {
        405 => {
            let allow = response.headers().get("allow").expect("405 names the allowed methods").to_str().unwrap();
            // axum adds HEAD to every GET route by itself; the document lists GET only.
            Some(allow.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty() && m != "HEAD").collect())
        }
        404 => None,
        other => panic!("PATCH {template}: expected 405 (routed) or 404 (not routed), got {other}"),
    }
}

fn documented(doc: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item.as_object().unwrap().keys().filter(|k| HTTP_METHODS.contains(&k.as_str()));
            (path.clone(), methods.map(|m| m.to_ascii_uppercase()).collect())
        })
        .collect()
}

const HTTP_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

#[tokio::test]
async fn every_documented_operation_is_served_with_exactly_its_documented_methods() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = crate::helpers::json(app.get("/api/openapi.json").await, 200).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let documented = documented(&doc);
    assert!(documented.len() > 50, "suspiciously few paths: {documented:?}");
    let mut drift = Vec::new();
    for (path, methods) in &documented {
        match served_methods(&app, path).await {
            Some(served) if &served == methods => {}
            served => drift.push(format!("{path}: documented {methods:?}, served {served:?}")),
        }
    }
    // The wildcard template is documented as a plain parameter; it still routes nested names.
    assert!(served_methods(&app, "/sync/a/b/c").await.is_some());
    assert!(drift.is_empty(), "document and router disagree:\n{}", drift.join("\n"));
}

#[tokio::test]
async fn pages_are_served_and_left_out_of_the_document() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = crate::helpers::json(app.get("/api/openapi.json").await, 200).await;
    let documented = documented(&doc);
    let mut drift = Vec::new();
    for (path, methods) in PAGES {
        let methods: BTreeSet<String> = methods.iter().map(|m| (*m).to_owned()).collect();
        let served = served_methods(&app, path).await;
        if served.as_ref() != Some(&methods) {
            drift.push(format!("page {path}: listed {methods:?}, served {served:?}"));
        }
        if documented.contains_key(*path) && !UPGRADE_PAGES.contains(path) {
            drift.push(format!("page {path} is in the OpenAPI document"));
        }
    }
    // An unrouted path must read as such, or the probe above would prove nothing.
    assert_eq!(served_methods(&app, "/api/no-such-route").await, None);
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.route("…"` in the server's source: outside `web/` there must be none (API routes go
/// through `routes!`, which documents them), and inside it each path must be a listed page.
#[test]
fn routes_outside_the_pages_are_registered_only_through_the_documenting_macro() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let web = src.join("web");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let pages: BTreeSet<&str> = PAGES.iter().map(|(path, _)| *path).collect();
    let mut seen = BTreeSet::new();
    let mut drift = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for undocumented in [".route(", ".route_service(", ".nest(", ".nest_service(", "Router::new()"] {
            for (at, _) in text.match_indices(undocumented) {
                if text[..at].ends_with("OpenApi") {
                    continue;
                }
                if !file.starts_with(&web) {
                    drift.push(format!(
                        "{}: `{undocumented}` registers a route the document cannot see",
                        file.display()
                    ));
                    continue;
                }
                if undocumented != ".route(" {
                    continue;
                }
                let path =
                    text[at + undocumented.len()..].trim_start().strip_prefix('"').and_then(|s| s.split('"').next());
                match path {
                    Some(path) if pages.contains(path) => {
                        seen.insert(path.to_owned());
                    }
                    other => drift.push(format!("{}: page route {other:?} is not listed in PAGES", file.display())),
                }
            }
        }
    }
    let unseen: Vec<_> = pages.iter().filter(|p| !seen.contains(**p)).collect();
    assert!(unseen.is_empty(), "PAGES lists routes no page registers: {unseen:?}");
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}

/// The statuses `doc` documents for `method` (lower case) at `path`.
fn documented_statuses(doc: &serde_json::Value, path: &str, method: &str) -> BTreeSet<String> {
    doc["paths"][path][method]["responses"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default()
}

/// The cheapest request of every operation (no credentials, no body, `probe` for each path
/// parameter) must get a documented status: the refusal of a missing credential or body is
/// where undocumented 401s, 400s and 415s hide.
#[tokio::test]
async fn every_operation_asked_without_credentials_answers_a_documented_status() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = crate::helpers::json(app.get("/api/openapi.json").await, 200).await;
    let mut drift = Vec::new();
    let mut refused = 0;
    for (path, methods) in documented(&doc) {
        for method in methods {
            let lower = method.to_ascii_lowercase();
            let request =
                app.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url(&concrete(&path)));
            let status = request.send().await.expect("server answers").status().as_u16();
            refused += u32::from(status == 401);
            if !documented_statuses(&doc, &path, &lower).contains(&status.to_string()) {
                drift.push(format!(
                    "{method} {path}: answered {status}, documented {:?}",
                    documented_statuses(&doc, &path, &lower)
                ));
            }
        }
    }
    assert!(drift.is_empty(), "undocumented statuses:\n{}", drift.join("\n"));
    // The probe must reach the credential checks, or it proved nothing about them.
    assert!(refused > 30, "only {refused} operations refused a missing credential");
}

/// Every WebSocket endpoint switches protocols on a real upgrade (101 documented), and refuses
/// a plain GET with a documented status.
#[tokio::test]
async fn websocket_endpoints_upgrade_with_their_documented_101() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = crate::helpers::json(app.get("/api/openapi.json").await, 200).await;
    let token = app.sign_in("upgrade@example.com").await;
    let endpoints = [
        ("/", "/".to_owned()),
        ("/hocuspocus", "/hocuspocus".to_owned()),
        ("/sync", format!("/sync?doc=notes&token={token}")),
        ("/sync/{name}", format!("/sync/notes?token={token}")),
    ];
    for (template, url) in endpoints {
        let statuses = documented_statuses(&doc, template, "get");
        assert!(statuses.contains("101"), "{template}: 101 not documented: {statuses:?}");
        let (socket, response) = tokio_tungstenite::connect_async(app.ws_url(&url))
            .await
            .unwrap_or_else(|e| panic!("{template}: upgrade refused: {e}"));
        assert_eq!(response.status().as_u16(), 101, "{template}");
        drop(socket);
        let plain = app.get(&url).await.status().as_u16().to_string();
        assert!(statuses.contains(&plain), "{template}: plain GET answered {plain}, documented {statuses:?}");
    }
}

/// utoipa names a schema after its type (or its `#[schema(as = …)]`); two types of one name
/// would make the document describe both with one of them, wrongly for the other route.
#[test]
fn schema_names_are_unique() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("ToSchema)]") {
            let after = &text[at..];
            let item = after.find("struct ").into_iter().chain(after.find("enum ")).min().expect("a type follows");
            let renamed = after[..item].split("#[schema(as = ").nth(1).and_then(|s| s.split(')').next());
            let declared = after[item..].split_whitespace().nth(1).unwrap();
            let name = renamed.unwrap_or(declared).split(['<', '{', '(', ';']).next().unwrap().to_owned();
            seen.entry(name).or_default().push(file.display().to_string());
        }
    }
    assert!(seen.len() > 40, "suspiciously few schemas: {seen:?}");
    let duplicates: Vec<_> = seen.iter().filter(|(_, files)| files.len() > 1).collect();
    assert!(duplicates.is_empty(), "schema names used twice: {duplicates:?}");
}

/// The stateful links name operations that exist, with a parameter those operations take; a
/// renamed handler would otherwise leave links schemathesis silently skips.
#[tokio::test]
async fn links_point_to_operations_that_take_their_parameter() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = crate::helpers::json(app.get("/api/openapi.json").await, 200).await;
    let mut parameters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for (method, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str().filter(|_| HTTP_METHODS.contains(&method.as_str())) {
                let names = operation["parameters"].as_array().into_iter().flatten();
                parameters.insert(id.to_owned(), names.filter_map(|p| p["name"].as_str().map(str::to_owned)).collect());
            }
        }
    }
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values().filter_map(|op| op["operationId"].as_str()))
        .collect();
    assert_eq!(ids.len(), parameters.len(), "operation ids are not unique: {ids:?}");
    let mut links = 0;
    let mut drift = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for response in operation["responses"].as_object().into_iter().flat_map(|r| r.values()) {
                for link in response["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    links += 1;
                    let target = link["operationId"].as_str().unwrap_or_default();
                    for name in link["parameters"].as_object().unwrap().keys() {
                        if !parameters.get(target).is_some_and(|p| p.contains(name)) {
                            drift.push(format!("link to {target:?} with parameter {name:?}"));
                        }
                    }
                }
            }
        }
    }
    assert!(links >= 12, "only {links} links");
    assert!(drift.is_empty(), "{}", drift.join("\n"));
}
