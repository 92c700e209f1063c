//! The OpenAPI 3.1 document: security schemes, the shared error responses, and `GET /api/openapi.json`.
//!
//! Routes are registered through `utoipa_axum`'s `OpenApiRouter::routes(routes!(handler))`, so one
//! registration feeds both the router and this document; a route cannot be served undocumented
//! (the `openapi_drift` test checks that nothing is registered any other way outside the pages).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::{Extension, Json};
use serde::Serialize;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// Every error body: `error` for people (and Diaryx clients), `code` for programs (Verstak).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub code: &'a str,
}

/// `{"status": "…"}`: the answer of actions that have nothing else to say.
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    pub status: &'static str,
}

/// The security scheme names used in `security(...)` of the handlers.
pub const DEVICE_TOKEN: &str = "device_token";
pub const TOKEN_QUERY: &str = "token_query";
pub const USER_SESSION: &str = "user_session";
pub const ADMIN_SESSION: &str = "admin_session";
pub const CSRF: &str = "csrf";

fn errors(statuses: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    statuses
        .iter()
        .map(|(status, what)| {
            let content = ContentBuilder::new().schema(Some(ErrorBody::schema())).build();
            (
                status.to_string(),
                ResponseBuilder::new().description(*what).content("application/json", content).build().into(),
            )
        })
        .collect()
}

/// Errors any route can answer, from the middleware around every route: rate limits, a
/// panicking handler, a saturated server or full disk.
pub enum Common {}
impl IntoResponses for Common {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            (429, "rate limited (`Retry-After`)"),
            (500, "internal error"),
            (503, "saturated or out of disk (`Retry-After`)"),
        ])
    }
}

/// Routes that read a JSON body.
pub enum JsonBody {}
impl IntoResponses for JsonBody {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[(400, "invalid request or JSON"), (413, "request body too large")])
    }
}

/// Routes behind a credential (device token or session cookie).
pub enum Authed {}
impl IntoResponses for Authed {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[(401, "missing, invalid or revoked credential"), (403, "user blocked, not allowed, or CSRF refused")])
    }
}

/// Routes that address a resource by id.
pub enum NotFound {}
impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[(404, "no such resource")])
    }
}

/// Routes that can refuse because of the current state (duplicate, conflict).
pub enum Conflict {}
impl IntoResponses for Conflict {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[(409, "conflicts with the current state")])
    }
}

/// Adds the security schemes the handlers name, and rewrites axum's `{*rest}` wildcards into
/// plain OpenAPI parameters.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "Concord".to_owned();
    doc.info.description = Some("The Concord sync server's HTTP API (generated from the code).".to_owned());
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("device or API token")).build();
    components.add_security_scheme(DEVICE_TOKEN, SecurityScheme::Http(bearer));
    components.add_security_scheme(TOKEN_QUERY, SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))));
    components
        .add_security_scheme(USER_SESSION, SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("user_session"))));
    components
        .add_security_scheme(ADMIN_SESSION, SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("admin_session"))));
    let csrf = ApiKeyValue::with_description(
        crate::web::csrf::HEADER,
        "equal to the `csrf_token` cookie; needed beside a session cookie on mutating requests",
    );
    components.add_security_scheme(CSRF, SecurityScheme::ApiKey(ApiKey::Header(csrf)));
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths.into_iter().map(|(path, item)| (path.replace("{*", "{"), item)).collect();
    document_root_upgrade(&mut doc);
    unique_operation_ids(&mut doc);
    add_links(&mut doc);
    doc
}

/// utoipa names an operation after its handler, and handlers of different modules share names
/// (`revoke_device`, `devices`, `workspaces`…). OpenAPI requires unique ids (links and client
/// generators address operations by them), so a shared name gets its path appended.
fn unique_operation_ids(doc: &mut OpenApi) {
    let mut counts = BTreeMap::<String, usize>::new();
    for item in doc.paths.paths.values() {
        for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch].into_iter().flatten() {
            *counts.entry(operation.operation_id.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    for (path, item) in &mut doc.paths.paths {
        let slug: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch] {
            let Some(operation) = operation.as_mut() else { continue };
            let id = operation.operation_id.clone().unwrap_or_default();
            if counts.get(&id).is_some_and(|n| *n > 1) {
                operation.operation_id = Some(format!("{id}{}", slug.trim_end_matches('_')));
            }
        }
    }
}

/// OpenAPI `links`: `(operation that answers an id, its status, parameter, where the answer has
/// the id, the paths that take it)`. They let schemathesis' stateful phase act on a user,
/// device, workspace or share that exists instead of random ids that all answer 404.
const LINKS: &[(&str, &str, &str, &str, &str)] = &[
    ("POST /admin/api/users/create", "201", "id", "$response.body#/user/id", "/admin/api/users/{id}"),
    ("GET /admin/api/devices", "200", "id", "$response.body#/items/0/id", "/admin/api/devices/{id}"),
    ("POST /api/workspaces", "201", "id", "$response.body#/id", "/api/workspaces/{id}"),
    ("POST /api/shares", "201", "id", "$response.body#/id", "/api/shares/{id}"),
];

fn add_links(doc: &mut OpenApi) {
    for (source, status, parameter, value, prefix) in LINKS {
        let mut targets = Vec::new();
        for (path, item) in &doc.paths.paths {
            // Only paths whose one parameter is the linked one.
            if !path.starts_with(prefix) || path.matches('{').count() != 1 {
                continue;
            }
            for operation in [&item.get, &item.put, &item.post, &item.delete, &item.patch].into_iter().flatten() {
                targets.extend(operation.operation_id.clone());
            }
        }
        let (method, source) = source.split_once(' ').expect("method and path");
        let item = doc.paths.paths.get_mut(source);
        let response = item.and_then(|item| if method == "GET" { item.get.as_mut() } else { item.post.as_mut() });
        let Some(RefOr::T(response)) = response.and_then(|op| op.responses.responses.get_mut(*status)) else {
            continue;
        };
        for target in targets {
            let link = LinkBuilder::new().operation_id(target.clone()).parameter(*parameter, *value).build();
            response.links.insert(target, link.into());
        }
    }
}

/// `GET /` is the home page for people and, with WebSocket upgrade headers, the Hocuspocus
/// endpoint (providers pointed at the bare base URL; see `sync::hocuspocus::root`). The page is
/// not a route of the document, so the operation is described here: `/hocuspocus`'s, plus the
/// page's 200.
fn document_root_upgrade(doc: &mut OpenApi) {
    let Some(mut item) = doc.paths.paths.get("/hocuspocus").cloned() else { return };
    let Some(get) = item.get.as_mut() else { return };
    get.operation_id = Some("hocuspocus_root".to_owned());
    get.summary = Some("Hocuspocus WebSocket upgrade on `/` (without upgrade headers: the home page)".to_owned());
    let page = ResponseBuilder::new().description("the home page (HTML), when the request is not an upgrade");
    let page = page.content("text/html", ContentBuilder::new().schema(Some(String::schema())).build());
    get.responses.responses.insert("200".to_owned(), page.build().into());
    doc.paths.paths.insert("/".to_owned(), item);
}

/// The 101 of every WebSocket endpoint: what the client must send and what it gets.
pub enum Upgrade {}
impl IntoResponses for Upgrade {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let what = "switched to WebSocket: send `Connection: Upgrade`, `Upgrade: websocket`, \
                    `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key` (RFC 6455); binary frames follow";
        BTreeMap::from([("101".to_owned(), ResponseBuilder::new().description(what).build().into())])
    }
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "this document", body = Object), Common))]
pub async fn document(Extension(doc): Extension<Arc<OpenApi>>) -> Json<Arc<OpenApi>> {
    Json(doc)
}
