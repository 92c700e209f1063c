//! Share links: the owner of a workspace creates tokens that open one of its documents, or all of
//! them, read-only or read-write, optionally until an expiry; lists them; revokes them, which
//! closes their open connections at once. Bearer auth of the owner's own device; a share token
//! manages nothing (it is not a device token, so `Auth` refuses it).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use concord_core::share::{Access, NewShareToken};
use concord_core::webhook;
use concord_core::yjs::{DocName, DocPlacement};
use concord_store::{NewShare, ShareRecord};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth};

/// Longest expiry a share may be given: ten years, so `now + expires_in_secs` never overflows
/// and a typo cannot make a link that outlives everything.
const MAX_EXPIRES_IN_SECS: i64 = 10 * 365 * 24 * 3600;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list))
        .routes(utoipa_axum::routes!(create))
        .routes(utoipa_axum::routes!(revoke))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewShareBody {
    workspace_id: String,
    /// One document (its full name, as clients open it); absent for the whole workspace.
    #[serde(default)]
    doc: Option<String>,
    access: String,
    #[serde(default)]
    expires_in_secs: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ShareView {
    id: String,
    workspace_id: String,
    doc: Option<String>,
    access: &'static str,
    created_at: i64,
    expires_at: Option<i64>,
    /// Only in the answer to its creation: the store keeps its hash alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl ShareView {
    fn of(share: ShareRecord, token: Option<String>) -> ShareView {
        ShareView {
            id: share.id,
            workspace_id: share.workspace_id,
            doc: share.doc_name,
            access: share.access.as_str(),
            created_at: share.created_at,
            expires_at: share.expires_at,
            token,
        }
    }
}

/// `POST /api/shares {"workspace_id","doc"?,"access","expires_in_secs"?}` → 201 with the token,
/// shown this once. 400 for a bad field (or a document name that belongs to another workspace),
/// 404 for a workspace that is not the caller's.
#[utoipa::path(post, path = "/api/shares", tag = "shares", security(("device_token" = [])), request_body = NewShareBody, responses((status = 201, description = "created", body = ShareView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Conflict, crate::openapi::Common))]
async fn create(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<NewShareBody>,
) -> Result<Response, ApiError> {
    let (share, token) = create_share(&state, &principal.user.id, body).await?;
    Ok((StatusCode::CREATED, axum::Json(ShareView::of(share, Some(token)))).into_response())
}

/// What a share's creation asks for, from the JSON API or the dashboard's form.
#[derive(Debug)]
pub(crate) struct ShareRequest {
    pub workspace_id: String,
    pub doc: Option<String>,
    pub access: String,
    pub expires_in_secs: Option<i64>,
}

impl From<NewShareBody> for ShareRequest {
    fn from(body: NewShareBody) -> ShareRequest {
        ShareRequest {
            workspace_id: body.workspace_id,
            doc: body.doc,
            access: body.access,
            expires_in_secs: body.expires_in_secs,
        }
    }
}

/// Creates a share of one of the user's workspaces (the rules of `POST /api/shares`); returns it
/// with its token, which is shown this once.
pub(crate) async fn create_share(
    state: &AppState,
    user_id: &str,
    body: impl Into<ShareRequest>,
) -> Result<(ShareRecord, String), ApiError> {
    let body: ShareRequest = body.into();
    let access = Access::parse(&body.access).map_err(|e| ApiError::bad_request("invalid_access", e.to_string()))?;
    let expires_in = body.expires_in_secs.filter(|s| !(1..=MAX_EXPIRES_IN_SECS).contains(s));
    if expires_in.is_some() {
        return Err(ApiError::bad_request("invalid_expiry", "expires_in_secs must be between 1 and 315360000"));
    }
    let workspaces = state.store.workspaces_of(user_id).await?;
    let Some(workspace) = workspaces.iter().find(|w| w.id == body.workspace_id) else {
        return Err(ApiError::not_found("Workspace not found"));
    };
    if let Some(doc) = &body.doc {
        let name = DocName::parse(doc).map_err(|e| ApiError::bad_request("invalid_doc", e.to_string()))?;
        // The name must open a document of this workspace, by the rule every connection uses.
        let placed = match name.placement(|id| workspaces.iter().any(|w| w.id == id)) {
            DocPlacement::Workspace(id) => id == workspace.id,
            DocPlacement::Default => workspace.name == crate::accounts::DEFAULT_WORKSPACE,
        };
        if !placed {
            return Err(ApiError::bad_request(
                "doc_not_in_workspace",
                "that document name opens a document of another workspace",
            ));
        }
    }
    let now = clock::now();
    let token = NewShareToken::generate();
    let share = NewShare {
        user_id,
        workspace_id: &workspace.id,
        doc_name: body.doc.as_deref(),
        access,
        token: &token,
        now,
        expires_at: body.expires_in_secs.map(|secs| now + secs),
    };
    // Deleted between the lookup and the insert: as if it had never been there.
    let share = state.store.create_share(share).await?.ok_or_else(|| ApiError::not_found("Workspace not found"))?;
    state.webhooks.share(webhook::SHARE_CREATED, &share);
    Ok((share, token.token.plaintext.clone()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ShareList {
    shares: Vec<ShareView>,
}

/// `GET /api/shares` → the caller's shares not revoked (expired ones included), by creation time.
#[utoipa::path(get, path = "/api/shares", tag = "shares", security(("device_token" = [])), responses((status = 200, description = "success", body = ShareList), crate::openapi::Authed, crate::openapi::Common))]
async fn list(State(state): State<AppState>, Auth(principal): Auth) -> Result<axum::Json<ShareList>, ApiError> {
    let shares = state.store.shares_of(&principal.user.id).await?;
    Ok(axum::Json(ShareList { shares: shares.into_iter().map(|s| ShareView::of(s, None)).collect() }))
}

/// `DELETE /api/shares/{id}` → 204, ending its open connections; 404 if it is not the caller's
/// or already revoked.
#[utoipa::path(delete, path = "/api/shares/{id}", tag = "shares", security(("device_token" = [])), params(("id" = String, Path)), responses((status = 204, description = "done"), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn revoke(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    revoke_share(&state, &principal.user.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes one of the user's shares and ends its connections; 404 if it is not theirs or is
/// already revoked.
pub(crate) async fn revoke_share(state: &AppState, user_id: &str, id: &str) -> Result<(), ApiError> {
    // Read first for the `share.revoked` event, which names the share's workspace.
    let share = state.store.shares_of(user_id).await?.into_iter().find(|s| s.id == id);
    if !state.store.revoke_share(user_id, id, clock::now()).await? {
        return Err(ApiError::not_found("Share not found"));
    }
    state.live.end_share(id);
    if let Some(share) = share {
        state.webhooks.share(webhook::SHARE_REVOKED, &share);
    }
    Ok(())
}
