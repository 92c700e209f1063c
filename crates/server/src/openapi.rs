//! The OpenAPI 3.1 document: security schemes, the shared error responses, and `GET /api/openapi.json`.
//!
//! Routes are registered through `utoipa_axum`'s `OpenApiRouter::routes(routes!(handler))`, so one
//! registration feeds both the router and this document; a route cannot be served undocumented
//! (the `openapi_drift` test checks that nothing is registered any other way outside the pages).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::{Extension, Json};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, PartialSchema, ToSchema};

/// Every error body: `error` for people (and Diaryx clients), `code` for programs (Verstak).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub code: &'a str,
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
    doc
}

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, description = "this document", body = Object), Common))]
pub async fn document(Extension(doc): Extension<Arc<OpenApi>>) -> Json<Arc<OpenApi>> {
    Json(doc)
}
