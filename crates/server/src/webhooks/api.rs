//! The webhook API: a workspace's owner manages its hooks under `/api/workspaces/{id}/webhooks`
//! (bearer auth; another user's workspace is 404, as for its documents), an admin manages the
//! server-wide hooks under `/admin/api/webhooks`. A hook's secret is in the answer to its
//! creation and nowhere else; each hook has a log of its deliveries.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use concord_core::webhook::{self, EventsError};
use concord_store::{DeliveryRecord, HookOwner, NewWebhook, WebhookRecord};
use serde::{Deserialize, Serialize};

use super::deliver::{UrlError, check_url};
use crate::api::admin::Admin;
use crate::app::AppState;
use crate::audit::{Entry, Event, Ip};
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};

/// Deliveries a log answer shows: the newest, enough to see what a receiver has been answering.
const LOG_LIMIT: i64 = 100;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list, create))
        .routes(utoipa_axum::routes!(delete))
        .routes(utoipa_axum::routes!(deliveries))
        .routes(utoipa_axum::routes!(admin_list, admin_create))
        .routes(utoipa_axum::routes!(admin_delete))
        .routes(utoipa_axum::routes!(admin_deliveries))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewHookBody {
    /// Where deliveries are POSTed: an `http://` or `https://` URL.
    url: String,
    /// Any of `document.updated`, `oplog.pushed`, `share.created`, `share.revoked`.
    events: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HookView {
    id: String,
    /// `null` for a server-wide hook.
    workspace_id: Option<String>,
    url: String,
    events: Vec<String>,
    created_at: i64,
    /// Only in the answer to its creation: the key of `Concord-Signature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl HookView {
    fn of(hook: WebhookRecord, secret: Option<String>) -> HookView {
        HookView {
            id: hook.id,
            workspace_id: hook.workspace_id,
            url: hook.url,
            events: hook.events,
            created_at: hook.created_at,
            secret,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HookList {
    webhooks: Vec<HookView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeliveryView {
    /// The `Concord-Delivery` header: the same on every attempt.
    id: String,
    event: String,
    /// `pending` (to be tried, again), `delivered`, or `failed` (given up).
    status: String,
    attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    /// When a pending delivery is tried next.
    next_attempt_at: Option<i64>,
    finished_at: Option<i64>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> DeliveryView {
        DeliveryView {
            next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
            id: d.id,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct DeliveryList {
    deliveries: Vec<DeliveryView>,
}

/// The caller's workspace `id`, or 404 as for a workspace that does not exist.
async fn owned<'a>(state: &AppState, user_id: &'a str, id: &'a str) -> Result<HookOwner<'a>, ApiError> {
    let workspaces = state.store.workspaces_of(user_id).await?;
    if !workspaces.iter().any(|w| w.id == id) {
        return Err(ApiError::not_found("Workspace not found"));
    }
    Ok(HookOwner::Workspace { user_id, workspace_id: id })
}

async fn create_hook(state: &AppState, owner: HookOwner<'_>, body: NewHookBody) -> Result<Response, ApiError> {
    check_url(&body.url, state.config.webhooks.allow_private).map_err(|err| match err {
        UrlError::Invalid => ApiError::bad_request("invalid_url", err.to_string()),
        UrlError::Private => ApiError::bad_request("private_address", err.to_string()),
    })?;
    let events = webhook::parse_events(body.events.iter().map(String::as_str)).map_err(|err| match err {
        EventsError::Empty => ApiError::bad_request("invalid_events", err.to_string()),
        EventsError::Unknown(_) => ApiError::bad_request("unknown_event", err.to_string()),
    })?;
    let (id, salt) = (webhook::new_hook_id(), webhook::new_salt());
    let hook = NewWebhook { id: &id, owner, url: &body.url, events: &events, salt: &salt, now: clock::now() };
    // Deleted between the check and the insert: as if it had never been there.
    let hook = state.store.create_webhook(hook).await?.ok_or_else(|| ApiError::not_found("Workspace not found"))?;
    let secret = webhook::secret(&state.accounts.code_key, &hook.id, &hook.salt);
    Ok((StatusCode::CREATED, Json(HookView::of(hook, Some(secret)))).into_response())
}

async fn list_hooks(state: &AppState, owner: HookOwner<'_>) -> Result<Json<HookList>, ApiError> {
    let hooks = state.store.webhooks_of(owner).await?;
    Ok(Json(HookList { webhooks: hooks.into_iter().map(|h| HookView::of(h, None)).collect() }))
}

async fn delete_hook(state: &AppState, owner: HookOwner<'_>, id: &str) -> Result<StatusCode, ApiError> {
    if !state.store.delete_webhook(owner, id).await? {
        return Err(ApiError::not_found("Webhook not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn hook_log(state: &AppState, owner: HookOwner<'_>, id: &str) -> Result<Json<DeliveryList>, ApiError> {
    let log = state.store.deliveries_of(owner, id, LOG_LIMIT).await?;
    let log = log.ok_or_else(|| ApiError::not_found("Webhook not found"))?;
    Ok(Json(DeliveryList { deliveries: log.into_iter().map(DeliveryView::from).collect() }))
}

/// `POST /api/workspaces/{id}/webhooks {"url","events"}` → 201 with the secret, shown this once;
/// 400 `invalid_url`, `private_address`, `invalid_events` or `unknown_event`; 404 for a workspace
/// that is not the caller's.
#[utoipa::path(post, path = "/api/workspaces/{id}/webhooks", tag = "webhooks", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id")), request_body = NewHookBody, responses((status = 201, description = "created", body = HookView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewHookBody>,
) -> Result<Response, ApiError> {
    let owner = owned(&state, &principal.user.id, &id).await?;
    create_hook(&state, owner, body).await
}

/// `GET /api/workspaces/{id}/webhooks` → the workspace's hooks, without secrets.
#[utoipa::path(get, path = "/api/workspaces/{id}/webhooks", tag = "webhooks", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id")), responses((status = 200, description = "success", body = HookList), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn list(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<HookList>, ApiError> {
    let owner = owned(&state, &principal.user.id, &id).await?;
    list_hooks(&state, owner).await
}

/// `DELETE /api/workspaces/{id}/webhooks/{hook}` → 204, its pending deliveries dropped.
#[utoipa::path(delete, path = "/api/workspaces/{id}/webhooks/{hook}", tag = "webhooks", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("hook" = String, Path)), responses((status = 204, description = "deleted"), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn delete(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, hook)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let owner = owned(&state, &principal.user.id, &id).await?;
    delete_hook(&state, owner, &hook).await
}

/// `GET /api/workspaces/{id}/webhooks/{hook}/deliveries` → the newest 100 deliveries.
#[utoipa::path(get, path = "/api/workspaces/{id}/webhooks/{hook}/deliveries", tag = "webhooks", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("hook" = String, Path)), responses((status = 200, description = "success", body = DeliveryList), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn deliveries(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, hook)): Path<(String, String)>,
) -> Result<Json<DeliveryList>, ApiError> {
    let owner = owned(&state, &principal.user.id, &id).await?;
    hook_log(&state, owner, &hook).await
}

/// `POST /admin/api/webhooks {"url","events"}` → 201: a server-wide hook, receiving the events
/// of every workspace. Errors as for a workspace's hooks.
#[utoipa::path(post, path = "/admin/api/webhooks", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), request_body = NewHookBody, responses((status = 201, description = "created", body = HookView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Common))]
async fn admin_create(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    ApiJson(body): ApiJson<NewHookBody>,
) -> Result<Response, ApiError> {
    // A server-wide hook hears every workspace's events, so who added it, and where it sends them,
    // belongs in the audit log. Only the origin: a hook's path often is its receiver's secret.
    let origin = check_url(&body.url, true).map(|url| url.origin().ascii_serialization()).unwrap_or_default();
    let detail = format!("server-wide webhook to {origin} for {}", body.events.join(", "));
    let created = create_hook(&state, HookOwner::Server, body).await?;
    state.audit.record(Entry::new(Event::WebhookCreated, &ip, detail).actor(admin.label()));
    Ok(created)
}

/// `GET /admin/api/webhooks` → the server-wide hooks.
#[utoipa::path(get, path = "/admin/api/webhooks", tag = "admin", security(("device_token" = []), ("admin_session" = [])), responses((status = 200, description = "success", body = HookList), crate::openapi::Authed, crate::openapi::Common))]
async fn admin_list(State(state): State<AppState>, _: Admin) -> Result<Json<HookList>, ApiError> {
    list_hooks(&state, HookOwner::Server).await
}

/// `DELETE /admin/api/webhooks/{hook}` → 204.
#[utoipa::path(delete, path = "/admin/api/webhooks/{hook}", tag = "admin", security(("device_token" = []), ("admin_session" = [], "csrf" = [])), params(("hook" = String, Path)), responses((status = 204, description = "deleted"), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn admin_delete(
    State(state): State<AppState>,
    admin: Admin,
    ip: Ip,
    Path(hook): Path<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = delete_hook(&state, HookOwner::Server, &hook).await?;
    state.audit.record(
        Entry::new(Event::WebhookDeleted, &ip, format!("server-wide webhook {hook} deleted")).actor(admin.label()),
    );
    Ok(deleted)
}

/// `GET /admin/api/webhooks/{hook}/deliveries` → the newest 100 deliveries.
#[utoipa::path(get, path = "/admin/api/webhooks/{hook}/deliveries", tag = "admin", security(("device_token" = []), ("admin_session" = [])), params(("hook" = String, Path)), responses((status = 200, description = "success", body = DeliveryList), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn admin_deliveries(
    State(state): State<AppState>,
    _: Admin,
    Path(hook): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    hook_log(&state, HookOwner::Server, &hook).await
}
