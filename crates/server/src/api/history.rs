//! Document history over HTTP: list a document's versions, take one with a label, read a
//! version's state, restore one. Access is the document HTTP API's (`api::docs`); a restore goes
//! through the document's room, which computes the update from its live document, so every
//! client sees an ordinary update that makes the document equal to the version.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use concord_store::{DocId, VersionRecord};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::{DocAuth, apply, locate, stored, writable};
use crate::app::AppState;
use crate::clock;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::sync::{Change, DocKey};

/// Longest label, in characters.
const MAX_LABEL_CHARS: usize = 200;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(read)).routes(routes!(restore))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VersionView {
    id: i64,
    created_at: i64,
    label: Option<String>,
    bytes: i64,
}

impl From<VersionRecord> for VersionView {
    fn from(v: VersionRecord) -> VersionView {
        VersionView { id: v.id, created_at: v.created_at, label: v.label, bytes: v.bytes }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct VersionList {
    versions: Vec<VersionView>,
}

/// `GET …/docs/{name}/versions` → `{"versions":[{"id","created_at","label","bytes"}]}`, newest
/// first.
#[utoipa::path(get, path = "/api/workspaces/{id}/docs/{name}/versions", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment")), responses((status = 200, description = "versions, newest first", body = VersionList), (status = 400, description = "invalid document name", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn list(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name)): Path<(String, String)>,
) -> Result<axum::Json<VersionList>, ApiError> {
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let versions = state.store.versions_of(&doc_id(&state, &key).await?).await?;
    Ok(axum::Json(VersionList { versions: versions.into_iter().map(VersionView::from).collect() }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewVersion {
    label: String,
}

/// `POST …/docs/{name}/versions {"label"}` → 201 with the version: the document as stored now.
/// 400 `invalid_label` for an empty, control-character or over-long label; retention applies as
/// to automatic versions.
#[utoipa::path(post, path = "/api/workspaces/{id}/docs/{name}/versions", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment")), request_body = NewVersion, responses((status = 201, description = "the version taken", body = VersionView), crate::openapi::JsonBody, crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn create(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<NewVersion>,
) -> Result<Response, ApiError> {
    writable(&opener)?;
    let label = body.label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_label", "label must be 1 to 200 printable characters"));
    }
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let (doc_id, room) = stored(&state, &key).await?;
    let snapshot = room.encode_state().map_err(ApiError::internal)?;
    let retention = state.config.sync.history_retention;
    let version = state.store.add_version(&doc_id, &snapshot, Some(label), clock::now(), retention).await?;
    Ok((StatusCode::CREATED, axum::Json(VersionView::from(version))).into_response())
}

/// The id of the stored document, or 404.
async fn doc_id(state: &AppState, key: &DocKey) -> Result<DocId, ApiError> {
    let doc = state.store.find_doc(&key.workspace_id, &key.name).await?;
    Ok(doc.ok_or_else(|| ApiError::not_found("Document not found"))?.id)
}

/// The state of version `version` of the document, or 404.
async fn version_state(state: &AppState, doc_id: &DocId, version: &str) -> Result<Vec<u8>, ApiError> {
    let id: i64 = version.parse().map_err(|_| ApiError::not_found("Version not found"))?;
    state.store.version_state(doc_id, id).await?.ok_or_else(|| ApiError::not_found("Version not found"))
}

/// `GET …/docs/{name}/versions/{version}` → `application/octet-stream`: the version's whole
/// state as one Yjs update (lib0 v1).
#[utoipa::path(get, path = "/api/workspaces/{id}/docs/{name}/versions/{version}", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment"), ("version" = String, Path, description = "version id")), responses((status = 200, description = "the version's state as one Yjs update", content_type = "application/octet-stream", body = Vec<u8>), (status = 400, description = "invalid document name", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn read(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let bytes = version_state(&state, &doc_id(&state, &key).await?, &version).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `POST …/docs/{name}/versions/{version}/restore` → 200 `{"changed","seq"}` once the update
/// that makes the document equal to the version is stored and relayed to every live client.
#[utoipa::path(post, path = "/api/workspaces/{id}/docs/{name}/versions/{version}/restore", tag = "documents", security(("device_token" = [])), params(("id" = String, Path, description = "workspace id"), ("name" = String, Path, description = "document name, percent-encoded as one segment"), ("version" = String, Path, description = "version id")), responses((status = 200, description = "restored: stored and relayed", body = super::docs::WriteView), (status = 400, description = "invalid document name", body = crate::openapi::ErrorBody), crate::openapi::Authed, crate::openapi::NotFound, crate::openapi::Common))]
async fn restore(
    State(state): State<AppState>,
    DocAuth(opener): DocAuth,
    Path((workspace_id, name, version)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    writable(&opener)?;
    let key = locate(&state, &opener, &workspace_id, &name).await?;
    let bytes = version_state(&state, &doc_id(&state, &key).await?, &version).await?;
    apply(&state, &key, Change::Restore(Bytes::from(bytes))).await
}
