//! Yjs document sync over WebSocket, and the workspace endpoints that own documents.
//!
//! - `hub`: open documents: room start and unload (connection caps and credential checks are
//!   `crate::live`'s).
//! - `room`: one task per open document: protocol (via `concord_core::yjs`), group commit,
//!   fan-out, compaction.
//! - `socket`: one task per connection: frame pump, ping/pong, limits, close codes.
//! - `writer`: the group-commit writer shared by all rooms.
//! - `queue`: the bounded queues between sockets and rooms, which hold no memory while empty.
//! - `hocuspocus`: the Hocuspocus endpoint, many documents per socket, over the same rooms.
//! - `opener`: who opens a document (a device or a share), for both protocols and `api::docs`.
//!
//! Architecture invariant: protocol decisions live in `concord_core::yjs`; this module only
//! moves bytes, time and storage around them.

mod hocuspocus;
mod hub;
pub(crate) mod opener;
mod queue;
mod room;
mod socket;
mod writer;
mod ws;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use concord_core::yjs::{DocName, DocNameError, DocPlacement, decode_url_component};
use concord_store::StoreError;
pub use hocuspocus::root as hocuspocus_root;
pub use hub::Hub;
pub(crate) use hub::{Deleting, DocKey};
use opener::Opener;
pub(crate) use room::{ApplyError, Change};
use serde::{Deserialize, Serialize};

use crate::accounts::DEFAULT_WORKSPACE;
use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, token_hash};

const MAX_WORKSPACE_NAME: usize = 100;

/// Bytes read from a WebSocket per system call, and what tungstenite's read buffer holds for the
/// socket's lifetime (it keeps its first capacity): at 4 KiB it was most of an idle connection's
/// memory (Y1). Typing and awareness frames are a few hundred bytes, one read each; a large
/// update takes one read per KiB into a buffer reserved for its whole length at once.
const READ_BUFFER_BYTES: usize = 1024;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(sync_by_query))
        .routes(utoipa_axum::routes!(sync_by_path))
        .routes(utoipa_axum::routes!(hocuspocus::upgrade))
        .routes(utoipa_axum::routes!(create_workspace))
        .routes(utoipa_axum::routes!(delete_workspace))
}

/// `GET /sync?doc=<name>&token=<t>`, the Diaryx client's URL. The name is decoded as in the path
/// form (see [`decode_url_component`]).
#[utoipa::path(get, path = "/sync", tag = "yjs sync", security(("device_token" = []), ("token_query" = [])), params(("doc" = String, Query, description = "document name")), responses(crate::openapi::Upgrade, (status = 400, description = "bad document name, or not a WebSocket upgrade", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn sync_by_query(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let raw = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_url_component(key).as_deref() == Ok("doc")).then_some(value)
        })
    });
    let name = raw.map(DocName::from_url);
    upgrade(state, name, request).await
}

/// `GET /sync/<name>?token=<t>`, the URL a y-websocket provider builds from `ws://host/sync` and
/// a room name. The name is the rest of the path, percent-decoded with `+` kept (see
/// [`decode_url_component`]).
#[utoipa::path(get, path = "/sync/{*name}", tag = "yjs sync", security(("device_token" = []), ("token_query" = [])), params(("name" = String, Path)), responses(crate::openapi::Upgrade, (status = 400, description = "bad document name, or not a WebSocket upgrade", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::Common))]
async fn sync_by_path(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let raw = request.uri().path().strip_prefix("/sync/").unwrap_or_default();
    let name = DocName::from_url(raw);
    upgrade(state, Some(name), request).await
}

/// Checks everything before upgrading, in the order clients can act on: the document name (400),
/// the token (401/403), the upgrade itself (400), the user's open connections (429). The lease
/// taken here is the connection's from then on; it is freed if the upgrade never completes.
async fn upgrade(
    state: AppState,
    name: Option<Result<DocName, DocNameError>>,
    request: Request,
) -> Result<Response, ApiError> {
    let name = name.ok_or_else(|| ApiError::bad_request("missing_doc", "the doc parameter is required"))?;
    let name = name.map_err(|e| ApiError::bad_request("invalid_doc", e.to_string()))?;
    let (mut parts, _body) = request.into_parts();
    let token = token_hash(&parts)?;
    let opener = Opener::resolve(&state, &token).await?;
    let ws = ws::Upgrade::from_parts(&mut parts)
        .ok_or_else(|| ApiError::bad_request("websocket_required", "this endpoint only accepts WebSocket upgrades"))?;
    let lease = opener.lease(&state, token).map_err(|over| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!("too many open documents for this user ({over}); close one first"),
        )
    })?;
    let key = DocKey { workspace_id: opener.place(&state, &name).await?, name: name.as_str().to_owned() };
    let access = opener.access();
    let max = state.sync.settings.max_frame_bytes;
    let hub = state.sync.clone();
    let shutdown = state.shutdown.clone();
    // tungstenite's default read buffer is 128 KiB, allocated and zeroed per connection: 5x
    // y-websocket's memory per connection and 13 % of fan-out CPU in `memset` (bench/README.md,
    // finding 1). It is only the read chunk; frames up to `max` still assemble.
    Ok(ws.on_upgrade(READ_BUFFER_BYTES, max, move |socket| socket::serve(hub, socket, key, access, lease, shutdown)))
}

/// The id of the workspace the document lives in (see [`DocName::placement`]).
async fn place(state: &AppState, user_id: &str, name: &DocName) -> Result<String, ApiError> {
    let workspaces = state.store.workspaces_of(user_id).await?;
    if let DocPlacement::Workspace(id) = name.placement(|id| workspaces.iter().any(|w| w.id == id)) {
        return Ok(id.to_owned());
    }
    match workspaces.into_iter().find(|w| w.name == DEFAULT_WORKSPACE) {
        Some(w) => Ok(w.id),
        None => Ok(state.store.ensure_workspace(user_id, DEFAULT_WORKSPACE, clock::now()).await?.id),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct NewWorkspace {
    name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CreatedWorkspace)]
struct WorkspaceView {
    id: String,
    name: String,
}

/// `POST /api/workspaces {"name"}` → 201 `{"id","name"}`; a name the user already has → 409.
#[utoipa::path(post, path = "/api/workspaces", tag = "workspaces", security(("device_token" = [])), request_body = NewWorkspace, responses((status = 201, description = "created", body = WorkspaceView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::Conflict, crate::openapi::Common))]
async fn create_workspace(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<NewWorkspace>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_WORKSPACE_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_name", "workspace name must be 1 to 100 printable characters"));
    }
    match state.store.create_workspace(&principal.user.id, name, clock::now()).await {
        Ok(w) => Ok((StatusCode::CREATED, axum::Json(WorkspaceView { id: w.id, name: w.name })).into_response()),
        Err(StoreError::Conflict(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, "workspace_exists", "a workspace with this name already exists"))
        }
        Err(err) => Err(err.into()),
    }
}

/// `DELETE /api/workspaces/{id}` → 204, deleting its documents and closing their sockets; 404 if
/// it is not the caller's.
#[utoipa::path(delete, path = "/api/workspaces/{id}", tag = "workspaces", security(("device_token" = [])), params(("id" = String, Path)), responses((status = 204, description = "done"), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn delete_workspace(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Only the caller's own workspace is held closed while it goes.
    if !state.store.workspaces_of(&principal.user.id).await?.iter().any(|w| w.id == id) {
        return Err(ApiError::not_found("Workspace not found"));
    }
    let delete = state.store.delete_workspace(&principal.user.id, &id);
    if !state.sync.deleting(Deleting::Workspaces(vec![id.clone()]), delete).await? {
        return Err(ApiError::not_found("Workspace not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
